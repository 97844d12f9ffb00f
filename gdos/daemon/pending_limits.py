"""Bounds on keys that wait for an operator (``pending``).

A key with no valid join proof is recorded as pending so an operator can
accept it. Anyone with the daemon's public key can make keys for free, so
pending rows are bounded twice: in total (the oldest pending key expires
when a new one needs room) and per source address (a token bucket: a burst
of ``per_address_per_minute`` new pending keys, refilled at that rate).
Keys accepted by a join token are not counted: they are not pending.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

MAX_ADDRESSES = 10_000  # buckets kept; the least recently used is forgotten


@dataclass(frozen=True)
class PendingLimits:
    max_pending: int = 1000
    per_address_per_minute: float = 20.0


class AddressRate:
    """A token bucket per source address, in bounded memory."""

    def __init__(self, per_minute: float) -> None:
        self.burst = max(1.0, per_minute)
        self.per_second = per_minute / 60.0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, address: str) -> bool:
        """Take one token for ``address``; False when it has none left."""
        now = time.monotonic()
        tokens, then = self._buckets.pop(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.per_second)
        allowed = tokens >= 1.0
        self._buckets[address] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > MAX_ADDRESSES:
            self._buckets.popitem(last=False)
        return allowed
