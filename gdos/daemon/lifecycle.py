"""Running the daemon: in the foreground, or started and stopped in the background.

A pid file in the runtime folder, locked by the daemon for its whole life,
guards against two daemons on one ``GDOS_HOME`` and tells a live daemon from
a stale file whose pid was reused. ``start`` returns only once the control
socket answers, or fails with the daemon's own error (or its log's tail);
``stop`` returns only once the daemon's process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from gdos.errors import ErrorCode, GdosError
from gdos.paths import Paths, ensure_private_dir

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
KILL_WAIT = 5.0  # after SIGKILL, how long to wait for the process to be gone


def running_pid(paths: Paths) -> int | None:
    """The pid of the gdosd that holds this GDOS_HOME's pid file, else None.

    The running daemon keeps an exclusive lock on its pid file for its whole
    life (``hold_pid_file``), so a pid file nobody locks is stale, whatever
    process now has that pid: it is removed and None returned.
    """
    try:
        fd = os.open(paths.pid_file, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid_in(paths.pid_file)  # a live daemon holds it
        stale = _pid_in(paths.pid_file)
        if stale is not None and _runs_gdosd(stale):
            raise GdosError(
                ErrorCode.DAEMON_RUNNING,
                f"pid {stale} runs 'gdos daemon run' but does not hold the lock on "
                f"{paths.pid_file} (started by an older gdos?); stop it with 'kill {stale}', "
                "then try again.",
            )
        with contextlib.suppress(FileNotFoundError):
            paths.pid_file.unlink()
        logging.getLogger("gdos").debug("removed stale pid file naming pid %s", stale)
        return None
    finally:
        os.close(fd)


def stale_pid(paths: Paths) -> int | None:
    """The pid a stale pid file names (before ``running_pid`` removes it)."""
    if not paths.pid_file.exists() or _locked(paths.pid_file):
        return None
    return _pid_in(paths.pid_file)


def _locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def hold_pid_file(paths: Paths) -> int:
    """Claim this GDOS_HOME: lock the pid file and write our pid; returns the open fd.

    The lock lasts until the process exits (or execs: the fd is close-on-exec,
    and a re-executed daemon claims it again), so no other process can be
    mistaken for this daemon through a reused pid.
    """
    fd = os.open(paths.pid_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise GdosError(
            ErrorCode.DAEMON_RUNNING,
            f"a daemon already runs with pid {_pid_in(paths.pid_file)}; stop it with "
            "'gdos daemon stop' or use another GDOS_HOME.",
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def run_foreground(
    config: object, paths: Paths, log_level: str = "INFO", log_file: Path | None = None
) -> None:
    """Run the daemon in this process until SIGTERM or SIGINT."""
    from gdos.daemon import logfile

    logfile.setup(
        log_level,
        log_file,
        getattr(config, "log_max_bytes", 50 * 1024**2),
        getattr(config, "log_keep", 5),
    )
    ensure_private_dir(paths.runtime_dir)
    from gdos.daemon.server import Daemon

    lock = hold_pid_file(paths)
    try:
        daemon = Daemon(config, paths)  # type: ignore[arg-type]
        asyncio.run(daemon.run())
    finally:
        with contextlib.suppress(FileNotFoundError):
            paths.pid_file.unlink()  # still ours: we hold its lock
        os.close(lock)


def start_background(run_args: list[str], paths: Paths, wait: float = 15.0) -> int:
    """Start ``gdos daemon run RUN_ARGS`` detached; return its pid once it answers."""
    existing = running_pid(paths)
    if existing is not None:
        raise GdosError(ErrorCode.DAEMON_RUNNING, f"the daemon already runs with pid {existing}.")
    ensure_private_dir(paths.log_dir)
    log_start = paths.daemon_log.stat().st_size if paths.daemon_log.exists() else 0
    log = open(paths.daemon_log, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            sys.executable,
            *("-P", "-m", "gdos.cli.main", "daemon", "run", *run_args),
            *([] if "--log-file" in run_args else ["--log-file", str(paths.daemon_log)]),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            refusal = _refusal(paths.daemon_log, log_start)
            if refusal is not None:
                raise refusal  # the daemon's own one-line error, e.g. address_in_use
            raise GdosError(
                ErrorCode.DAEMON_UNAVAILABLE,
                f"the daemon exited at start (code {proc.returncode}):\n{tail(paths.daemon_log)}",
            )
        if _answers(paths.control_socket):
            return proc.pid
        time.sleep(0.05)
    raise GdosError(
        ErrorCode.DAEMON_UNAVAILABLE,
        f"the daemon did not answer within {wait:g}s; see {paths.daemon_log}.",
    )


def _refusal(log_path: Path, offset: int) -> GdosError | None:
    """The last ``error[code]: sentence`` line the daemon wrote since ``offset``."""
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        match = re.match(r"error\[([a-z_]+)\]: (.+)", line.strip())
        if match:
            return GdosError(match[1], match[2])
    return None


@dataclass(frozen=True)
class Stopped:
    pid: int
    killed: bool  # it did not exit within the wait and got SIGKILL


def stop_background(paths: Paths, wait: float = 15.0) -> Stopped:
    """SIGTERM this GDOS_HOME's daemon and return once it has exited.

    Only a process that holds the pid file's lock and runs ``gdos daemon
    run`` is signalled; a stale pid file (its pid maybe reused by another
    process) is removed and reported instead.
    """
    stale = stale_pid(paths)
    pid = running_pid(paths)
    if pid is None:
        note = ""
        if stale is not None:
            owner = "now belongs to another process" if _exists(stale) else "has exited"
            note = f" (removed a stale pid file: pid {stale} {owner}, left alone)"
        raise GdosError(
            ErrorCode.DAEMON_UNAVAILABLE,
            f"no daemon is running for this GDOS_HOME; nothing to stop{note}.",
        )
    proc = _gdosd_process(pid)
    os.kill(pid, signal.SIGTERM)
    if _exited(proc, wait):
        return Stopped(pid, killed=False)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _exited(proc, KILL_WAIT):
        raise GdosError(
            ErrorCode.INTERNAL, f"gdosd (pid {pid}) did not exit even after SIGKILL; check it."
        )
    return Stopped(pid, killed=True)


def _gdosd_process(pid: int) -> psutil.Process:
    """The daemon's process, checked to be ``gdos ... daemon run`` before any signal."""
    try:
        proc = psutil.Process(pid)
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied) as exc:
        raise GdosError(
            ErrorCode.DAEMON_UNAVAILABLE, f"cannot inspect the daemon's pid {pid}: {exc}."
        ) from None
    joined = " ".join(cmdline)
    if not _looks_like_gdosd(cmdline):
        raise GdosError(
            ErrorCode.UNSAFE_PATH,
            f"the pid file names pid {pid}, which runs {joined[:200]!r}, not gdosd; "
            "not signalling it.",
        )
    return proc


def _runs_gdosd(pid: int) -> bool:
    """Whether ``pid`` runs ``gdos daemon run`` for this GDOS_HOME (as far as we can see)."""
    try:
        proc = psutil.Process(pid)
        if not _looks_like_gdosd(proc.cmdline()):
            return False
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    try:
        return proc.environ().get("GDOS_HOME") == os.environ.get("GDOS_HOME")
    except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
        return True  # cannot tell: better refuse than start a second daemon


def _looks_like_gdosd(cmdline: list[str]) -> bool:
    return "gdos" in " ".join(cmdline) and "daemon" in cmdline and "run" in cmdline


def _exited(proc: psutil.Process, wait: float) -> bool:
    """Wait up to ``wait`` seconds for ``proc`` to be gone (a zombie counts as gone)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _exists(pid: int) -> bool:
    return psutil.pid_exists(pid)


def _answers(socket_path: Path) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(socket_path))
            return True
        except OSError:
            return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
