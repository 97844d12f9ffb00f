"""Running the daemon: in the foreground, or started and stopped in the background.

A pid file in the runtime folder guards against two daemons on one
``GDOS_HOME``; ``start`` returns only once the control socket answers, or
fails with the tail of the daemon's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gdos.errors import ErrorCode, GdosError
from gdos.paths import Paths, ensure_private_dir

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def read_pid(paths: Paths) -> int | None:
    """The pid of a live daemon from the pid file, else None."""
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


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
    existing = read_pid(paths)
    if existing is not None and existing != os.getpid():
        raise GdosError(
            ErrorCode.DAEMON_RUNNING,
            f"a daemon already runs with pid {existing}; stop it with "
            "'gdos daemon stop' or use another GDOS_HOME.",
        )
    from gdos.daemon.server import Daemon

    paths.pid_file.write_text(str(os.getpid()))
    try:
        daemon = Daemon(config, paths)  # type: ignore[arg-type]
        asyncio.run(daemon.run())
    finally:
        with contextlib.suppress(FileNotFoundError):
            if paths.pid_file.read_text().strip() == str(os.getpid()):
                paths.pid_file.unlink()


def start_background(run_args: list[str], paths: Paths, wait: float = 15.0) -> int:
    """Start ``gdos daemon run RUN_ARGS`` detached; return its pid once it answers."""
    existing = read_pid(paths)
    if existing is not None:
        raise GdosError(ErrorCode.DAEMON_RUNNING, f"the daemon already runs with pid {existing}.")
    ensure_private_dir(paths.log_dir)
    log = open(paths.daemon_log, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            sys.executable,
            *("-m", "gdos.cli.main", "daemon", "run", *run_args),
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


def stop_background(paths: Paths, wait: float = 15.0) -> int:
    """SIGTERM the daemon and wait for it to exit; returns its pid."""
    pid = read_pid(paths)
    if pid is None:
        raise GdosError(
            ErrorCode.DAEMON_UNAVAILABLE,
            "no daemon is running for this GDOS_HOME; nothing to stop.",
        )
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if read_pid(paths) is None or not _alive(pid):
            return pid
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours still answers kill(0); reap it if it is ours
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    return True


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
