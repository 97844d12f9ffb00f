"""Quotas, log throttling and split replies: the pure parts of the hostile-peer limits."""

from __future__ import annotations

import logging

import pytest

from gdos.daemon.guard import QuotaLimits, Quotas, RepeatFilter, Throttle, TokenBucket
from gdos.errors import ErrorCode
from gdos.wire import protocol
from gdos.wire.protocol import Message, ProtocolError
from gdos.wire.replies import PartJoiner, encode_reply


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5)
    now = bucket.stamp
    assert all(bucket.take(1, now) for _ in range(5))
    assert not bucket.take(1, now)
    assert bucket.take(1, now + 0.2)  # 0.2 s at 10/s refills two


def test_quota_of_one_identity_does_not_touch_another() -> None:
    quotas, limits = Quotas(), QuotaLimits(1, 3, 1_000_000, 1_000_000)
    assert [quotas.allow("a", 10, limits) for _ in range(4)] == [True, True, True, False]
    assert quotas.allow("b", 10, limits)
    assert quotas.dropped == 1
    big = QuotaLimits(100, 100, 100, 100)
    assert not quotas.allow("c", 101, big)  # bytes over the burst


def test_throttle_counts_what_it_held_back() -> None:
    throttle = Throttle(interval=3600)
    assert throttle.check("x") == 0
    assert [throttle.check("x") for _ in range(3)] == [None, None, None]
    assert throttle.check("y") == 0
    throttle._seen["x"] = (throttle._seen["x"][0] - 7200, 3)  # the interval passed
    assert throttle.check("x") == 3


def test_repeat_filter_lets_one_warning_per_text_through() -> None:
    flt = RepeatFilter(interval=3600)

    def record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.LogRecord("gdosd", level, __file__, 1, msg, None, None)

    assert flt.filter(record("accept() out of system resource"))
    assert not flt.filter(record("accept() out of system resource"))
    assert flt.filter(record("another"))
    assert flt.filter(record("info lines are never held", logging.INFO))
    assert flt.filter(record("info lines are never held", logging.INFO))
    refused = logging.LogRecord(
        "gdosd.auth", logging.INFO, __file__, 1, "refused a key from %s", ("10.0.0.9",), None
    )
    assert flt.filter(refused)
    assert not flt.filter(refused)  # a peer can repeat it at will: held back


def test_a_reply_larger_than_a_frame_is_split_and_joined() -> None:
    body = {"rows": ["x" * 1000] * 10_000}  # ~10 MB
    frames = encode_reply("ok", body, re=7)
    assert len(frames) > 1 and all(len(f) <= protocol.MAX_FRAME_BYTES for f in frames)
    joiner, whole = PartJoiner(), None
    for frame in frames:
        whole = joiner.add(protocol.decode(frame))
    assert isinstance(whole, Message) and whole.kind == "ok" and whole.re == 7
    assert whole.body == body


def test_a_small_reply_is_one_frame_and_a_notification_is_never_split() -> None:
    assert len(encode_reply("ok", {"a": 1}, re=1)) == 1
    with pytest.raises(ProtocolError) as raised:
        encode_reply("stream.data", {"stream": 1, "seq": 1, "event": {"x": "y" * 5_000_000}}, None)
    assert raised.value.code == ErrorCode.FRAME_TOO_LARGE


def test_connections_in_handshake_never_outlive_the_handshake_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gdos.daemon import guard

    clock = [100.0]
    monkeypatch.setattr(guard.time, "monotonic", lambda: clock[0])
    counts = guard.ConnectionCounts(window=10)
    for fd in (5, 6, 7):
        counts.opened(fd)
    counts.handshakes_done += 1  # one of them finished its handshake
    assert counts.handshaking == 2
    counts.closed(6)
    assert counts.handshaking == 2 and len(counts.open_fds) == 2
    clock[0] += 11  # a missed handshake event cannot keep them counted
    assert counts.handshaking == 0
    counts.opened(7)  # reused without a disconnect event
    assert counts.handshaking == 1 and counts.young == 1
