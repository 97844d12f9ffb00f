"""Repeated failures in the audit trail: one row per source and reason per interval.

Anyone with the daemon's public key can try to join thousands of times; one
audit row per try would let them grow the database without bound. The audit
table is append-only, so a count cannot be updated in place. Instead the
first failure of a kind (source address, action, result, reason) is written
at once, with ``count: 1``; the next ones within ``interval`` are only
counted, and when the interval ends one more row carries their number
(``count``), the time span and a few of the targets they named. A kind seen
once costs one row; a flood costs two rows per kind per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Record = Callable[[str | None, str, str | None, str, Any], None]
DEFAULT_INTERVAL = 60.0
MAX_KINDS = 10_000  # open kinds; beyond this every open count is written early
SAMPLE_TARGETS = 10


@dataclass
class _Open:
    user: str | None
    since: float
    last: float = 0.0
    more: int = 0
    targets: list[str] = field(default_factory=list)


class FailureDigest:
    """Counts repeated failures and appends them as few rows (see module doc)."""

    def __init__(self, record: Record, interval: float = DEFAULT_INTERVAL) -> None:
        self._record = record
        self.interval = interval
        self._open: dict[tuple[str, str, str, str], _Open] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(
        self,
        user: str | None,
        action: str,
        target: str | None,
        result: str,
        source: str,
        reason: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """One failure; written now if it is the first of its kind this interval."""
        now = time.time()
        kind = (source, action, result, reason)
        bucket = self._open.get(kind)
        if bucket is None:
            if len(self._open) >= MAX_KINDS:
                self.flush(everything=True)
            self._open[kind] = _Open(user, since=now, last=now)
            row = {**(detail or {}), "source": source, "reason": reason, "count": 1}
            self._record(user, action, target, result, row)
            self._arm()
            return
        bucket.more += 1
        bucket.last = now
        if target and len(bucket.targets) < SAMPLE_TARGETS and target not in bucket.targets:
            bucket.targets.append(target)

    def flush(self, everything: bool = False) -> None:
        """Append the counts of every kind whose interval ended (or of all)."""
        now = time.time()
        for kind, bucket in list(self._open.items()):
            if not everything and now - bucket.since < self.interval:
                continue
            del self._open[kind]
            if bucket.more == 0:
                continue
            source, action, result, reason = kind
            detail = {
                "source": source,
                "reason": reason,
                "count": bucket.more,
                "since": bucket.since,
                "until": bucket.last,
                "targets": bucket.targets,
            }
            target = bucket.targets[0] if bucket.targets else None
            self._record(bucket.user, action, target, result, detail)

    def close(self) -> None:
        """Write every open count (the daemon is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush(everything=True)

    def _arm(self) -> None:
        if self._timer is not None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: flushed on close
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.flush()
        if self._open:
            self._arm()
