"""What the agent remembers about its enrollment, so a restart needs no arguments.

``daemon.json`` in the agent's state folder holds the daemon's address and
public key, the node name this agent's key introduced itself with, that
key's fingerprint, and whether the daemon ever welcomed it under that name.
The daemon binds an accepted key to one node name, so once welcomed the
name is fixed for that key: a different ``--name`` is refused with what to
do instead of looping on ``key_not_accepted``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdos.errors import ErrorCode, GdosError
from gdos.identity import keys, tokens
from gdos.names import check_name
from gdos.wire.dialing import normalize_address

log = logging.getLogger("gdos.agent")
FILE = "daemon.json"


@dataclass
class Enrollment:
    """The daemon to dial and the name to dial as."""

    address: str
    server_key: str | None  # None: --insecure
    name: str
    agent_key: str | None  # fingerprint of this agent's public key; None: --insecure
    welcomed: bool = False

    def save(self, state_dir: Path) -> None:
        """Write atomically: a crash leaves the old record or the new one."""
        target = state_dir / FILE
        scratch = target.with_suffix(".tmp")
        scratch.write_text(
            json.dumps(
                {
                    "address": self.address,
                    "key": self.server_key,
                    "name": self.name,
                    "agent_key": self.agent_key,
                    "welcomed": self.welcomed,
                }
            )
        )
        os.replace(scratch, target)


def load(state_dir: Path) -> dict[str, Any]:
    """The last record, or {} when there is none (or it is unreadable)."""
    try:
        saved = json.loads((state_dir / FILE).read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def resolve(
    token: tokens.JoinToken | None,
    daemon: str | None,
    daemon_key: str | None,
    insecure: bool,
    saved: dict[str, Any],
) -> tuple[str, str | None]:
    """(address, daemon key) from the token or options, else from the last record."""
    key: str | None
    if token is not None:
        if token.expired():
            raise GdosError(
                ErrorCode.TOKEN_EXPIRED,
                "the join token has expired; make a new one with 'gdos token create'.",
            )
        address, key = token.address, token.server_key
    elif daemon:
        address, key = normalize_address(daemon), daemon_key
    elif saved.get("address"):
        address, key = str(saved["address"]), saved.get("key")
    else:
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            "give a join token (--join-file PATH, --join - or GDOS_JOIN_TOKEN), or "
            "--daemon HOST:PORT with --daemon-key KEY.",
        )
    if insecure:
        return address, None
    if not key or not keys.is_z85_key(key):
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            "--daemon-key must be the daemon's 40-character public key "
            "(see 'gdos daemon status'), or pass --insecure on both sides.",
        )
    return address, key


def choose_name(
    given: str | None,
    saved: dict[str, Any],
    address: str,
    server_key: str | None,
    agent_key: str | None,
) -> tuple[str, bool]:
    """(name, welcomed before) for this key at this daemon.

    The remembered name counts only for the same agent key and daemon key.
    Once the daemon welcomed that name, another ``--name`` is refused; before
    that, it is used with a warning (the daemon may hold the old name pending).
    """
    same = (
        saved.get("agent_key") == agent_key
        and saved.get("key") == server_key
        and isinstance(saved.get("name"), str)
    )
    remembered = str(saved["name"]) if same else None
    welcomed = bool(same and saved.get("welcomed"))
    if given and remembered and given != remembered:
        if welcomed and agent_key is not None:  # --insecure binds no name to a key
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT,
                f"this agent's key ({agent_key}) is enrolled as {remembered!r} with the daemon "
                f"at {address}; it cannot run as {given!r}. Start it without --name (or with "
                f"--name {remembered}); to rename the node, give it a new identity with another "
                "--state-dir and a new join token.",
            )
        log.warning(
            "this agent's key introduced itself as %r before; dialling as %r now "
            "(if the daemon lists %r as pending, delete that key: 'gdos key delete %s')",
            remembered,
            given,
            remembered,
            agent_key,
        )
        welcomed = False
    name = given or remembered or socket.gethostname().split(".")[0]
    return check_name(name), welcomed and name == remembered
