"""The agent's reconnect backoff: exponential, capped, jittered."""

from __future__ import annotations

from gdos.wire.dialing import backoff_delay


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    for attempt in range(12):
        ceiling = min(30.0, 0.5 * 2**attempt)
        delays = [backoff_delay(attempt, 0.5, 30.0) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)


def test_backoff_is_jittered() -> None:
    delays = {backoff_delay(6, 0.5, 30.0) for _ in range(50)}
    assert len(delays) > 40  # not a lockstep for a thousand agents


def test_huge_attempt_counts_stay_at_the_cap() -> None:
    assert 15.0 <= backoff_delay(10_000, 0.5, 30.0) <= 30.0
