"""Bridging the local terminal (or pipes) to a remote shell session.

stdin is read one chunk at a time, each sent once the session has input
credit. Output is written with ordinary blocking writes, so a slow terminal
holds back the stream's credit and the remote program waits instead of a
queue growing. The terminal is raw only while the session runs and is
restored on every way out: exit, Ctrl-C (sent on as ``\\x03``), a lost
daemon or node, a signal, an exception. Messages are printed only after
that, so they never land on a raw terminal.

Exit code: the remote program's status (128+N when killed by signal N);
255 when the session ended without one (lost, closed, idle), like ssh;
the usual codes when the session was refused before it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
from dataclasses import dataclass
from typing import Any

from gdos.cli.output import output
from gdos.cli.terminal import RawMode, window_size
from gdos.client.control import Client
from gdos.client.shell import RemoteShell
from gdos.errors import ErrorCode, ExitCode, GdosError
from gdos.wire import fdio, protocol

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Outcome:
    code: int
    message: str | None = None


async def run_session(
    client: Client,
    node: str,
    *,
    argv: list[str],
    user: str | None,
    cwd: str | None,
    force_tty: bool,
    idle_timeout: float | None,
) -> int:
    """Open the session, bridge it until it ends, print why if it did not simply exit."""
    local_tty = os.isatty(0)
    rows, cols = window_size()
    shell = await RemoteShell.open(
        client,
        node,
        rows=rows,
        cols=cols,
        tty=local_tty or force_tty,
        argv=argv,
        user=user,
        cwd=cwd,
        term=os.environ.get("TERM") or "xterm",
        idle_timeout=idle_timeout,
    )
    bridge = Bridge(shell, node, resize=local_tty or force_tty)
    raw = RawMode(0) if local_tty else contextlib.nullcontext()
    with raw:
        outcome = await bridge.run()
    if outcome.message:
        output().note(outcome.message)
    return outcome.code


class Bridge:
    def __init__(self, shell: RemoteShell, node: str, resize: bool) -> None:
        self.shell, self.node, self.resize = shell, node, resize
        self.opened = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> Outcome:
        loop = asyncio.get_running_loop()
        stopped: asyncio.Future[int] = loop.create_future()

        def stop(sig: int) -> None:
            if not stopped.done():
                stopped.set_result(128 + sig)

        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop, sig)
        if self.resize:
            loop.add_signal_handler(signal.SIGWINCH, self._on_winch)
        reader = asyncio.create_task(self._pump_stdin())
        output = asyncio.create_task(self._consume())
        try:
            waiters: list[asyncio.Future[Any]] = [output, stopped]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if output.done():
                return self._outcome(output)
            with contextlib.suppress(GdosError):
                await asyncio.wait_for(self.shell.close(), 2)
            return Outcome(stopped.result())
        finally:
            self.shell.forget()
            for sig in (*STOP_SIGNALS, signal.SIGWINCH):
                loop.remove_signal_handler(sig)
            for task in (reader, output, *self._tasks):
                task.cancel()

    def _outcome(self, output: asyncio.Task[Outcome]) -> Outcome:
        error = output.exception()
        if error is None:
            return output.result()
        if not isinstance(error, GdosError):
            raise error
        if error.code == ErrorCode.DAEMON_UNAVAILABLE and self.opened:
            error = GdosError(
                ErrorCode.DAEMON_UNAVAILABLE,
                f"lost the connection to the gdos daemon; the shell session on {self.node} "
                "is over.",
            )
        return Outcome(int(ExitCode.SESSION_LOST) if self.opened else error.exit_code, str(error))

    def _on_winch(self) -> None:
        rows, cols = window_size()
        task = asyncio.ensure_future(self.shell.resize(rows, cols))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)  # type: ignore[arg-type]
        if not task.cancelled():
            task.exception()  # a lost daemon shows on the output stream

    async def _consume(self) -> Outcome:
        """Write the session's output; the last event says how it ended."""
        async for event in self.shell.events:
            kind = event["type"]
            if kind == "output":
                fd = 2 if event.get("stream") == "stderr" else 1
                if not await _write_all(fd, event["data"]):
                    return Outcome(128 + signal.SIGPIPE)
            elif kind == "opened":
                self.opened = True
            elif kind == "exit":
                code = event.get("exit_code")
                reason = event.get("reason")
                message = f"gdos shell: {reason}" if reason else None
                return Outcome(int(ExitCode.SESSION_LOST) if code is None else code, message)
            elif kind == "error":
                raise GdosError(event["code"], event["message"])
        raise GdosError(ErrorCode.SESSION_LOST, "the daemon ended the session without a status.")

    async def _pump_stdin(self) -> None:
        """Local input to the session, a chunk per credit; its end closes remote stdin."""
        try:
            regular = stat.S_ISREG(os.fstat(0).st_mode)
        except OSError:
            regular = False
        while True:
            try:
                if not regular:
                    await fdio.wait_readable(0)
            except PermissionError:  # not pollable (a file, /dev/null): reads never wait long
                regular = True
            try:
                data = os.read(0, protocol.CHUNK_BYTES)
            except OSError:  # stdin closed or the terminal hung up
                data = b""
            try:
                if not data:
                    await self.shell.eof()
                    return
                if not await self.shell.write(data):
                    return
            except GdosError:
                return  # the daemon is gone; the output side reports it


async def _write_all(fd: int, data: bytes) -> bool:
    """Write everything; False when the reader went away (EPIPE)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # stdout inherited non-blocking
            await fdio.wait_writable(fd)
        except BrokenPipeError:
            return False
    return True
