"""Starting a shell session's program: account, environment, pty or pipes.

Kept apart from the relaying in ``pty_session`` because this is where the
node's security decisions are: which account the program runs as (``--user``
needs the agent to run as root), which login shell, which folder. Every
refusal carries a stable error code and a sentence the operator sees as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import termios
from dataclasses import dataclass, field
from typing import Any

from gdos.agent.procs import Account, SpawnRefused, login_env, login_shell, resolve_account

from gdos.errors import ErrorCode

__all__ = ["Account", "SpawnRefused", "Spawned", "login_shell", "resolve_account", "spawn"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Spawned:
    """A started program and the agent's ends of its terminal or pipes."""

    process: asyncio.subprocess.Process
    tty: bool
    input_fd: int  # pty master, or the write end of the stdin pipe
    outputs: list[tuple[int, str]]  # (fd, stream name) to relay
    shell: str
    fds: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.process.pid

    def close_input(self) -> None:
        """Close the program's stdin pipe (never the pty master, output uses it too)."""
        if not self.tty and self.input_fd >= 0:
            self._close(self.input_fd)
            self.input_fd = -1

    def close_fds(self) -> None:
        for fd in list(self.fds):
            self._close(fd)

    def _close(self, fd: int) -> None:
        if fd in self.fds:
            self.fds.discard(fd)
            with contextlib.suppress(OSError):
                os.close(fd)


async def spawn(request: dict[str, Any]) -> Spawned:
    """Start the program of a ``pty.open`` request; raises SpawnRefused."""
    account = resolve_account(request.get("user"))
    shell = login_shell(account)
    home = account.home if os.path.isdir(account.home) else "/"
    cwd = request.get("cwd") or home
    if not os.path.isdir(cwd):
        raise SpawnRefused(
            f"working directory {cwd} does not exist on this node", ErrorCode.INVALID_ARGUMENT
        )
    session = {"TERM": request.get("term") or "xterm", "GDOS_SESSION": str(request["session"])}
    if request.get("user"):  # another account: its clean login environment, not the agent's
        env = login_env(account, int(account.spawn_kwargs.get("user", os.geteuid())), session)
    else:
        env = {
            **os.environ,
            "HOME": account.home,
            "USER": account.name,
            "LOGNAME": account.name,
            "SHELL": shell,
            "PATH": os.environ.get("PATH") or DEFAULT_PATH,
            **session,
        }
    argv = [str(a) for a in request.get("argv") or []]
    program = argv[0] if argv else shell
    args = argv or ["-" + os.path.basename(shell)]  # a login shell, as sshd starts it
    tty = bool(request["tty"])
    ends = _open_pty(request["rows"], request["cols"]) if tty else _open_pipes()
    child_fds, parent = ends
    try:
        process = await asyncio.create_subprocess_exec(
            *args,
            executable=program,
            stdin=child_fds[0],
            stdout=child_fds[1],
            stderr=child_fds[2],
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_take_controlling_terminal if tty else None,
            **account.spawn_kwargs,
        )
    except FileNotFoundError:
        _close_all(parent)
        raise SpawnRefused(f"command not found: {program}", None, 127) from None
    except PermissionError:
        _close_all(parent)
        raise SpawnRefused(f"permission denied: {program}", None, 126) from None
    except OSError as exc:
        _close_all(parent)
        raise SpawnRefused(
            f"could not start {program}: {exc.strerror}", ErrorCode.SPAWN_FAILED
        ) from None
    finally:
        _close_all(set(child_fds))
    for fd in parent:
        os.set_blocking(fd, False)
    if tty:
        (master,) = parent
        return Spawned(process, True, master, [(master, "stdout")], shell, {master})
    stdin_w, stdout_r, stderr_r = parent
    outputs = [(stdout_r, "stdout"), (stderr_r, "stderr")]
    return Spawned(process, False, stdin_w, outputs, shell, set(parent))


def _open_pty(rows: int, cols: int) -> tuple[tuple[int, int, int], list[int]]:
    master, slave = os.openpty()  # O_NOCTTY: never the agent's own terminal
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return (slave, slave, slave), [master]


def _open_pipes() -> tuple[tuple[int, int, int], list[int]]:
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    return (stdin_r, stdout_w, stderr_w), [stdin_w, stdout_r, stderr_r]


def _take_controlling_terminal() -> None:
    """In the child, after setsid: make the pty slave (stdin) its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _close_all(fds: set[int] | list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
