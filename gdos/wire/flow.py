"""Credit-based flow control for streams.

A sender may have at most ``credit`` frames in flight; the receiver grants more
as it consumes them. The sender awaits ``acquire`` before each frame, so a slow
reader makes the writer wait instead of letting a queue grow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class CreditWindow:
    """The sender's side of a credit-controlled stream."""

    def __init__(self, credit: int) -> None:
        self._credit = credit
        self._changed = asyncio.Event()
        self._closed = False

    @property
    def credit(self) -> int:
        return self._credit

    def grant(self, credit: int) -> None:
        """Add credit granted by the receiver (ignored when not positive)."""
        if credit > 0:
            self._credit += credit
            self._changed.set()

    def close(self) -> None:
        """Wake any waiter; later ``acquire`` calls return False at once."""
        self._closed = True
        self._changed.set()

    async def acquire(self) -> bool:
        """Take one credit, waiting for a grant; False when the stream closed."""
        while self._credit <= 0:
            if self._closed:
                return False
            self._changed.clear()
            await self._changed.wait()
        if self._closed:
            return False
        self._credit -= 1
        return True


class CreditGranter:
    """The receiver's side: re-grant credit in batches once half is consumed."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._consumed = 0

    def consumed(self) -> int:
        """Count one consumed frame; returns credit to grant now (0 for none)."""
        self._consumed += 1
        if self._consumed >= max(1, self.window // 2):
            grant, self._consumed = self._consumed, 0
            return grant
        return 0


class CreditRelay:
    """One stream's credit where frames are received and passed on (or consumed).

    The sender upstream was given ``window`` credits. Each frame it sends is
    ``admit``-ted first: one past the window is refused (the caller drops it,
    so a misbehaving sender never grows a queue here). Once the frame has been
    passed on downstream (written to a client whose own stream credit
    throttles that write, or to disk), ``passed`` re-grants credit upstream in
    batches of half the window. So the relay holds at most one window per
    stream, and a slow reader slows the sender instead of filling memory.
    After ``close`` nothing more is granted (the sender is gone or told to stop).
    """

    def __init__(self, window: int, grant: Callable[[int], object]) -> None:
        self.window = window
        self.outstanding = 0  # admitted frames not yet passed on
        self.closed = False
        self._grant = grant
        self._granter = CreditGranter(window)

    def admit(self) -> bool:
        """Count one arriving frame; False when it overruns the window (drop it)."""
        if self.outstanding >= self.window:
            return False
        self.outstanding += 1
        return True

    def passed(self) -> None:
        """One admitted frame went on: re-grant upstream once half a window has."""
        self.outstanding = max(0, self.outstanding - 1)
        grant = self._granter.consumed()
        if grant and not self.closed:
            self._grant(grant)

    def passed_after(self, copies: int) -> Callable[[], None]:
        """An ack for each of ``copies`` readers of one frame: it passed once all acked."""
        remaining = [copies]

        def ack() -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                self.passed()

        return ack

    def close(self) -> None:
        self.closed = True
