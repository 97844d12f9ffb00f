"""Credit-based flow control for streams.

A sender may have at most ``credit`` frames in flight; the receiver grants more
as it consumes them. The sender awaits ``acquire`` before each frame, so a slow
reader makes the writer wait instead of letting a queue grow.
"""

from __future__ import annotations

import asyncio


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
