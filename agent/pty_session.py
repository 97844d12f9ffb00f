"""One remote shell on this node: a PTY (or pipes) bridged to the daemon.

With ``tty`` the program runs on a fresh pseudo-terminal that is the
controlling terminal of its own session, so job control, Ctrl-C (arriving
as ``\\x03``) and full-screen programs behave as they do over ssh; the window
size is set on open and on every resize. Without ``tty`` the program gets
three pipes, so binary streams stay byte-clean and the end of the client's
input closes the program's stdin.

Flow control runs both ways. Output is read from the master (or the pipes)
only while the daemon has granted credit, so a slow terminal blocks the
program in its write instead of filling memory. Input credit goes back only
once a chunk has been written to the program, so a program that stops
reading stops the operator's side too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import struct
import termios
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from gdos.agent.procs import kill_group, signal_group
from gdos.agent.pty_spawn import Spawned, SpawnRefused, spawn

from gdos.wire import fdio
from gdos.wire.flow import CreditGranter, CreditWindow
from gdos.wire.protocol import CHUNK_BYTES, SHELL_INPUT_CREDIT, SHELL_OUTPUT_CREDIT

log = logging.getLogger("gdos.agent.shell")

Send = Callable[[str, dict[str, Any]], None]

EXIT_DRAIN_IDLE = 0.5  # after the program exits, stop relaying after this much silence
EXIT_DRAIN_MAX = 5.0  # ... or after this long in all (a background job holding the output)
IDLE_POLL = 1.0  # how often a silent reader looks whether the program exited
EOF_CHAR = b"\x04"


class PtySession:
    """A program under a pty or on pipes, its output pumps and its input queue."""

    def __init__(self, request: dict[str, Any], send: Send) -> None:
        self.request, self.send = request, send
        self.id: int = request["session"]
        self.window = CreditWindow(max(1, int(request.get("credit", SHELL_OUTPUT_CREDIT))))
        self.granter = CreditGranter(SHELL_INPUT_CREDIT)
        self.proc: Spawned | None = None
        self.exited_at: float | None = None
        self.close_reason: str | None = None
        self.seq = 0
        self._inbox: deque[bytes] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._eof = False
        self._killer: asyncio.Future[None] | None = None

    # -- lifetime -------------------------------------------------------------
    async def run(self) -> None:
        """Spawn, relay until the program ends, then report how it ended."""
        try:
            self.proc = await spawn(self.request)
        except SpawnRefused as exc:
            self.send("pty.exit", {"session": self.id, **exc.body()})
            return
        proc = self.proc
        self.send("pty.opened", {"session": self.id, "pid": proc.pid, "shell": proc.shell})
        if self.close_reason:  # closed while it was starting
            self.close(self.close_reason)
        elif self._inbox:  # typed while the program was starting
            self._writer = asyncio.ensure_future(self._drain_inbox())
        elif self._eof:
            self._close_input()
        try:
            pumps = [asyncio.ensure_future(self._pump(fd, name)) for fd, name in proc.outputs]
            returncode = await proc.process.wait()
            self.exited_at = time.monotonic()
            await asyncio.gather(*pumps, return_exceptions=True)
            self.send("pty.exit", {"session": self.id, **self._outcome(returncode)})
        finally:
            self.window.close()
            if self._writer is not None:
                self._writer.cancel()
            proc.close_fds()

    def _outcome(self, returncode: int) -> dict[str, Any]:
        if returncode < 0:
            name = signal.Signals(-returncode).name
            reason = self.close_reason or f"killed by signal {name}"
            return {"exit_code": 128 - returncode, "reason": reason}
        return {"exit_code": returncode, "reason": self.close_reason}

    def close(self, reason: str) -> None:
        """End the session: hang up the program's process group, then kill it."""
        self.close_reason = self.close_reason or reason
        self.window.close()
        if self.proc is not None and self.proc.process.returncode is None:
            signal_group(self.proc.pid, signal.SIGHUP)  # now: the agent may be stopping
            signal_group(self.proc.pid, signal.SIGCONT)
            self._killer = asyncio.ensure_future(kill_group(self.proc.pid, first=None))

    # -- output ---------------------------------------------------------------
    def grant(self, credit: int) -> None:
        self.window.grant(credit)

    async def _pump(self, fd: int, stream: str) -> None:
        """Relay ``fd`` to the daemon until its end, reading a chunk only with credit.

        Credit is taken once data is there, so an idle stream (stderr, mostly)
        never sits on credit the other one needs.
        """
        while await self._readable(fd) and await self.window.acquire():
            data = fdio.read_now(fd, CHUNK_BYTES)
            if data is None:  # the readiness went stale: give the credit back
                self.window.grant(1)
                continue
            if not data:
                return
            self.seq += 1
            self.send(
                "pty.output", {"session": self.id, "seq": self.seq, "data": data, "stream": stream}
            )

    async def _readable(self, fd: int) -> bool:
        """Wait for data or the end; after the program exited, within the drain limits.

        Normally the end shows as EOF (pipes) or EIO (pty) once the program is
        gone; a background job still holding the descriptor must not keep the
        session open forever, hence the limits.
        """
        while True:
            if fdio.ready_now(fd):
                return True
            if self.exited_at is None:
                await fdio.wait_readable(fd, IDLE_POLL)
                continue
            if time.monotonic() - self.exited_at > EXIT_DRAIN_MAX:
                return False
            return await fdio.wait_readable(fd, EXIT_DRAIN_IDLE)

    # -- input ----------------------------------------------------------------
    def input(self, data: bytes) -> None:
        """Write a chunk to the program, now if it can take it, else in order later."""
        if len(self._inbox) >= SHELL_INPUT_CREDIT:
            log.warning("session %d: input past its credit; dropped", self.id)
            return
        if self.proc is None or (self._writer is not None and not self._writer.done()):
            self._inbox.append(data)  # not started yet, or earlier input still queued
            return
        fd = self.proc.input_fd
        written = 0
        if fd >= 0 and not self._eof:
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                written = 0
            except OSError:  # the program closed its input: discard
                written = len(data)
        else:
            written = len(data)
        if written == len(data):
            self._consumed()
            return
        self._inbox.append(data[written:])
        self._writer = asyncio.ensure_future(self._drain_inbox())

    async def _drain_inbox(self) -> None:
        while self._inbox:
            data = self._inbox[0]
            fd = self.proc.input_fd if self.proc else -1
            if fd >= 0:
                with contextlib.suppress(OSError):
                    await fdio.write_all(fd, data)
            self._inbox.popleft()
            self._consumed()
        if self._eof:
            self._close_input()

    def _consumed(self) -> None:
        grant = self.granter.consumed()
        if grant:
            self.send("pty.credit", {"session": self.id, "credit": grant})

    def eof(self) -> None:
        """The client's input ended: close stdin (pipes) or type the EOF character (pty)."""
        if self._eof:
            return
        if self.request["tty"]:
            self.input(EOF_CHAR)
            return
        self._eof = True
        if self.proc is not None and (self._writer is None or self._writer.done()):
            self._close_input()

    def _close_input(self) -> None:
        if self.proc is not None:
            self.proc.close_input()

    def resize(self, rows: int, cols: int) -> None:
        if self.proc is not None and self.proc.tty:
            set_winsize(self.proc.input_fd, rows, cols)


def set_winsize(fd: int, rows: int, cols: int) -> None:
    """TIOCSWINSZ; the kernel then sends SIGWINCH to the foreground process group."""
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
