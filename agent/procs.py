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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gdos.errors import ErrorCode

if TYPE_CHECKING:
    import psutil

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


ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
USER_PATH = "/usr/local/bin:/usr/bin:/bin"
# Carried over from the agent: the locale and zone, never its secrets or GDOS_*.
LOGIN_KEEP = ("LANG", "LC_ALL", "TZ")


def login_env(account: Account, uid: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean, login-like environment for a program run as another account.

    Like ``su -`` or ``sudo -i``: the account's HOME, USER, LOGNAME, SHELL and
    a standard PATH (root's for uid 0), the locale, and then what the operator
    passed explicitly. The agent's own environment (GDOS_HOME, its PATH,
    anything a service manager gave it) is not inherited.
    """
    env = {key: os.environ[key] for key in LOGIN_KEEP if key in os.environ}
    env |= {
        "HOME": account.home,
        "USER": account.name,
        "LOGNAME": account.name,
        "SHELL": login_shell(account),
        "PATH": ROOT_PATH if uid == 0 else USER_PATH,
    }
    return env | (extra or {})


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies do not count).

    ``killpg(pgid, 0)`` also reaches zombies: a grandchild orphaned by the
    kill is reparented to init and stays a zombie until init reaps it, which
    a container's init may do seconds later. Waiting for those made a
    timeout overrun by up to the whole kill grace.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    import psutil

    return any(_runs_in_group(proc, pgid) for proc in psutil.process_iter(["status"]))


def _runs_in_group(proc: psutil.Process, pgid: int) -> bool:
    import psutil

    try:
        return proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid
    except (ProcessLookupError, psutil.Error):
        return False


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


# -- process identity and trees (used by the supervisor and, later, metrics) --
#
# A pid alone is not an identity: once a process is gone and reaped, the
# kernel may hand its number to an unrelated program. Everything that signals
# a process it did not just spawn therefore carries (pid, start) and checks
# both right before acting.
#
# The start is compared in clock ticks since boot (/proc/PID/stat field 22),
# never as wall-clock time: psutil's create_time is those ticks plus the boot
# time, and the kernel derives the boot time from the wall clock, so an NTP
# step, or slow drift across a whole second, moves every create_time at once.
# Compared as wall time, every supervised process would then look dead (and
# be started a second time beside itself). create_time stays for display
# and for "started since" searches.

CREATE_TIME_SLACK = 0.05  # psutil derives create_time from clock ticks; JSON round-trips it
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class ProcRef:
    """One process, identified by its pid and its start in clock ticks since boot.

    ``ticks`` is None where /proc cannot tell (another OS, or a pid.json an
    older agent wrote); then ``create_time`` is compared instead, with slack.
    """

    pid: int
    create_time: float
    ticks: int | None = None

    def same_process(self, other: ProcRef) -> bool:
        if self.pid != other.pid:
            return False
        if self.ticks is not None and other.ticks is not None:
            return self.ticks == other.ticks
        return abs(self.create_time - other.create_time) < CREATE_TIME_SLACK


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot; None if /proc cannot say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        # comm (field 2) may hold spaces and parentheses: fields resume after the last ")"
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def boot_id() -> str | None:
    """This boot's id: a pid.json written before a reboot names no live process."""
    try:
        return BOOT_ID_FILE.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def ref_of(process: psutil.Process) -> ProcRef:
    """The identity of a psutil process (raises psutil.Error when it is gone)."""
    return ProcRef(process.pid, process.create_time(), start_ticks(process.pid))


def proc_ref(pid: int, *, zombie_ok: bool = False) -> ProcRef | None:
    """The live process ``pid`` (None when gone, a zombie, or not inspectable)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if not zombie_ok and process.status() == psutil.STATUS_ZOMBIE:
            return None
        return ref_of(process)
    except (psutil.Error, ValueError):
        return None


def is_alive(ref: ProcRef) -> bool:
    """True when ``ref.pid`` still runs and is the same process (same start)."""
    now = proc_ref(ref.pid)
    return now is not None and now.same_process(ref)


def descendants(pid: int) -> list[ProcRef]:
    """Every live descendant of ``pid`` (children, grandchildren, ...)."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    refs = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE:
                refs.append(ref_of(child))
    return refs


def marked_processes(variable: str, value: str) -> list[ProcRef]:
    """Live processes whose environment has ``variable=value`` (inherited markers).

    Finds descendants that were orphaned (double fork) and so no longer
    hang under the process that started them. Processes of other users are
    skipped unless we may read their environment.
    """
    import psutil

    found = []
    for process in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if process.pid == os.getpid() or process.status() == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get(variable) == value:
                found.append(ref_of(process))
    return found


def name_matches(name: str, process_name: str, cmdline: list[str]) -> bool:
    """Whether a process answers to ``name``.

    The rule: the kernel's process name (``comm``, 15 chars) equals ``name``,
    or the basename of ``argv[0]`` does, or one whitespace-separated word of
    the command line (or its basename) does. The last form catches programs
    that rewrite their title into one string ("nginx: master process ...").
    A word given as the value of ``--process-name`` does not count: that is a
    ``gdos adopt`` naming the process, not the process.
    """
    if process_name == name or (cmdline and os.path.basename(cmdline[0]) == name):
        return True
    for before, arg in zip(["", *cmdline], cmdline, strict=False):
        if before == "--process-name" or arg.startswith("--process-name="):
            continue
        for word in arg.split():
            if word == name or os.path.basename(word) == name:
                return True
    return False


def find_by_name(
    name: str, since: float | None = None, exclude: int | None = None
) -> list[ProcRef]:
    """Live processes answering to ``name`` (see name_matches), oldest first.

    ``since``: only processes created at or after this create_time. Start times
    tick in 10 ms steps on Linux, so two processes started together tie; the
    later pid is taken as the newer (pids grow until they wrap).
    """
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline", "create_time", "status"]):
        info = process.info
        if info["pid"] in (os.getpid(), exclude) or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        created = info["create_time"]
        if created is None or (since is not None and created < since - CREATE_TIME_SLACK):
            continue
        if name_matches(name, info["name"] or "", info["cmdline"] or []):
            found.append(ProcRef(info["pid"], created, start_ticks(info["pid"])))
    return sorted(found, key=lambda ref: (ref.create_time, ref.pid))


def signal_ref(ref: ProcRef, sig: int) -> None:
    """Send ``sig`` to ``ref`` if it is still that very process."""
    if is_alive(ref):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(ref.pid, sig)


def signal_processes(targets: list[ProcRef], sig: int, groups: bool) -> None:
    """Signal each target still alive; with ``groups`` also its process group.

    The agent's own group, init's and 0 are never signalled as groups.
    """
    own_group = os.getpgrp()
    signalled: set[int] = set()
    for ref in targets:
        if groups and is_alive(ref):
            with contextlib.suppress(OSError):
                pgid = os.getpgid(ref.pid)
                if pgid not in signalled and pgid not in (own_group, 0, 1):
                    signalled.add(pgid)
                    os.killpg(pgid, sig)
        signal_ref(ref, sig)
