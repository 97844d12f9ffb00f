"""What the agent's programs share: whose account they run as, and how they end.

Exec commands and shell sessions both start a program in its own process
group, possibly as another user, and end it by signalling the whole group
(grandchildren included), escalating to SIGKILL after a grace period. One
module so the two can never disagree on who may run as whom.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import time
from dataclasses import dataclass
from typing import Any

from gdos.errors import ErrorCode

KILL_GRACE = 2.0


class SpawnRefused(Exception):
    """The program could not be started; ``body`` is the pty.exit to send."""

    def __init__(self, message: str, code: ErrorCode | None, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.exit_code = message, code, exit_code

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"reason": self.message, "exit_code": self.exit_code}
        if self.code is not None:
            body["code"] = str(self.code)
        return body


@dataclass
class Account:
    name: str
    home: str
    shell: str
    spawn_kwargs: dict[str, Any]


def resolve_account(user: str | None) -> Account:
    """The account to run as: ``user`` (agent must be root), else the agent's own."""
    if user:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise SpawnRefused(f"no user {user!r} on this node", ErrorCode.USER_UNKNOWN) from None
        if entry.pw_uid != os.geteuid() and os.geteuid() != 0:
            raise SpawnRefused(
                "--user needs the agent to run as root", ErrorCode.NOT_PERMITTED
            ) from None
        kwargs: dict[str, Any] = {}
        if entry.pw_uid != os.geteuid():
            kwargs = {
                "user": entry.pw_uid,
                "group": entry.pw_gid,
                "extra_groups": os.getgrouplist(user, entry.pw_gid),
            }
        return Account(user, entry.pw_dir, entry.pw_shell, kwargs)
    try:
        entry = pwd.getpwuid(os.geteuid())
        return Account(entry.pw_name, entry.pw_dir, entry.pw_shell, {})
    except KeyError:  # no passwd entry (some containers)
        name = os.environ.get("USER", str(os.geteuid()))
        return Account(name, os.environ.get("HOME", "/"), os.environ.get("SHELL", ""), {})


def login_shell(account: Account) -> str:
    shell = account.shell
    return shell if shell and os.access(shell, os.X_OK) else "/bin/sh"


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


async def kill_group(
    pgid: int, first: int | None = signal.SIGTERM, grace: float = KILL_GRACE
) -> None:
    """Send ``first`` to the group, then SIGKILL whatever is left after ``grace``."""
    if first is not None:
        signal_group(pgid, first)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and group_alive(pgid):
        await asyncio.sleep(0.05)
    signal_group(pgid, signal.SIGKILL)
