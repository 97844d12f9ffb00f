"""Join tokens, name validation and stream credit: small pieces every link relies on."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import pytest

from gdos.errors import ErrorCode, ExitCode, GdosError
from gdos.identity import tokens
from gdos.identity.tokens import JoinToken
from gdos.names import check_name, natural_key
from gdos.wire.flow import CreditGranter, CreditRelay, CreditWindow

# The example CURVE keys of the ZeroMQ CURVE RFC (z85, 40 characters).
SERVER_KEY = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
CLIENT_A = b"Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
CLIENT_B = b"HH]%aCGUdM8G[$Tkbj!aJu#zo>u6$vT$M*L2%zeC"


def make_token(**overrides: Any) -> JoinToken:
    fields: dict[str, Any] = {
        "address": "tcp://10.0.0.1:7420",
        "server_key": SERVER_KEY,
        "token_id": "t-1",
        "secret": b"\x00secret\xff" * 4,
        "expires_at": 1_900_000_000.5,
    }
    fields.update(overrides)
    return JoinToken(**fields)


def raw_token(payload: Any) -> str:
    """A token string around an arbitrary msgpack payload."""
    packed = msgpack.packb(payload, use_bin_type=True)
    return tokens.PREFIX + base64.urlsafe_b64encode(packed).decode().rstrip("=")


def good_payload() -> dict[str, Any]:
    t = make_token()
    return {"a": t.address, "k": t.server_key, "i": t.token_id, "s": t.secret, "e": t.expires_at}


def assert_invalid(text: str) -> None:
    with pytest.raises(GdosError) as info:
        tokens.decode(text)
    assert info.value.code == ErrorCode.TOKEN_INVALID
    assert "gdos token create" in info.value.message


# -- join tokens ----------------------------------------------------------------


def test_token_round_trips() -> None:
    token = make_token()
    text = token.encode()
    assert text.startswith("gdos1.")
    assert tokens.decode(text) == token


def test_token_is_one_shell_word() -> None:
    text = make_token().encode()
    assert all(c.isalnum() or c in "._-" for c in text)


def test_token_survives_surrounding_whitespace_only_when_stripped() -> None:
    assert tokens.decode(make_token().encode().strip()) == make_token()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "gdos1.",
        "gdos2." + make_token().encode()[len("gdos1.") :],
        make_token().encode()[len("gdos1.") :],
        "GDOS1." + make_token().encode()[len("gdos1.") :],
        "gdos1.!!!not base64!!!",
        "gdos1." + base64.urlsafe_b64encode(b"\xc1\xc1\xc1").decode(),
        "gdos1." + base64.urlsafe_b64encode(b"plain text, not msgpack").decode(),
    ],
    ids=["empty", "prefix-only", "wrong-prefix", "no-prefix", "upper", "base64", "msgpack", "text"],
)
def test_malformed_token_strings_are_refused(text: str) -> None:
    assert_invalid(text)


@pytest.mark.parametrize("payload", [[1, 2], "a string", 42, None])
def test_a_payload_that_is_not_a_map_is_refused(payload: Any) -> None:
    assert_invalid(raw_token(payload))


@pytest.mark.parametrize("field", ["a", "k", "i", "s", "e"])
def test_each_missing_field_is_refused(field: str) -> None:
    payload = good_payload()
    del payload[field]
    assert_invalid(raw_token(payload))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("k", "too-short"),
        ("k", "x" * 39 + " "),  # right length, not z85
        ("k", SERVER_KEY + "A"),
        ("a", "ipc:///tmp/gdos.sock"),
        ("a", "10.0.0.1:7420"),
        ("a", ""),
        ("e", "tomorrow"),
        ("s", "a str, not bin"),
        ("s", 12345),
    ],
)
def test_bad_field_values_are_refused(field: str, value: Any) -> None:
    payload = good_payload()
    payload[field] = value
    assert_invalid(raw_token(payload))


def test_a_malformed_token_exits_with_an_error() -> None:
    with pytest.raises(GdosError) as info:
        tokens.decode("nope")
    assert info.value.exit_code == ExitCode.ERROR
    assert str(info.value).startswith("error[token_invalid]: ")


def test_expiry() -> None:
    token = make_token(expires_at=1000.0)
    assert not token.expired(now=999.9)
    assert token.expired(now=1000.0)
    assert token.expired(now=1000.1)


def test_expiry_at_time_zero() -> None:
    assert not make_token(expires_at=10.0).expired(now=0.0)


def test_a_token_of_the_past_is_expired_now_and_one_of_the_future_is_not() -> None:
    assert make_token(expires_at=1.0).expired()
    assert not make_token(expires_at=4_000_000_000.0).expired()


def test_proof_binds_the_secret_to_the_client_key() -> None:
    secret = make_token().secret
    given = tokens.proof(secret, CLIENT_A)
    assert tokens.check_proof(secret, CLIENT_A, given)
    assert not tokens.check_proof(secret, CLIENT_B, given)


def test_proof_needs_the_secret() -> None:
    given = tokens.proof(b"the secret", CLIENT_A)
    assert not tokens.check_proof(b"another secret", CLIENT_A, given)


def test_proof_is_stable_and_a_tampered_one_fails() -> None:
    secret = b"s" * 32
    given = tokens.proof(secret, CLIENT_A)
    assert given == tokens.proof(secret, CLIENT_A)
    tampered = ("B" if given[0] != "B" else "C") + given[1:]
    assert not tokens.check_proof(secret, CLIENT_A, tampered)
    assert not tokens.check_proof(secret, CLIENT_A, "")


# -- names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["web-1", "a.b_c", "a", "A9", "node.example.com", "x" * 63, "1-first-digit"]
)
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../x",
        "..",
        ".hidden",
        "a/b",
        "a\\b",
        "-x",
        "_x",
        "x" * 64,
        "a|b",
        "a b",
        " web",
        pytest.param("web\n"),
        "web\x00",
        "wéb",
        "a;b",
        "$(id)",
    ],
)
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(GdosError) as info:
        check_name(name)
    assert info.value.code == ErrorCode.INVALID_ARGUMENT
    assert info.value.exit_code == ExitCode.USAGE


def test_a_name_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(GdosError):
        check_name(5)  # type: ignore[arg-type]


def test_the_refusal_names_what_was_checked() -> None:
    with pytest.raises(GdosError) as info:
        check_name("a/b", what="service name")
    assert "service name 'a/b'" in info.value.message


# -- credit windows ---------------------------------------------------------------


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 5))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_acquire_takes_credit_without_waiting() -> None:
    async def test() -> None:
        window = CreditWindow(2)
        assert await window.acquire()
        assert await window.acquire()
        assert window.credit == 0

    run(test)


def test_acquire_waits_until_credit_is_granted() -> None:
    async def test() -> None:
        window = CreditWindow(0)
        waiter = asyncio.create_task(window.acquire())
        await settle()
        assert not waiter.done()
        window.grant(1)
        assert await waiter is True
        assert window.credit == 0

    run(test)


def test_a_grant_that_is_not_positive_is_ignored() -> None:
    async def test() -> None:
        window = CreditWindow(0)
        waiter = asyncio.create_task(window.acquire())
        window.grant(0)
        window.grant(-3)
        await settle()
        assert not waiter.done()
        assert window.credit == 0
        window.close()
        assert await waiter is False

    run(test)


def test_one_grant_serves_as_many_waiters_as_it_has_credit() -> None:
    async def test() -> None:
        window = CreditWindow(0)
        waiters = [asyncio.create_task(window.acquire()) for _ in range(3)]
        await settle()
        window.grant(2)
        await settle()
        assert sum(w.done() for w in waiters) == 2
        window.grant(1)
        assert await asyncio.gather(*waiters) == [True, True, True]
        assert window.credit == 0

    run(test)


def test_close_wakes_waiters_with_false() -> None:
    async def test() -> None:
        window = CreditWindow(0)
        waiters = [asyncio.create_task(window.acquire()) for _ in range(2)]
        await settle()
        window.close()
        assert await asyncio.gather(*waiters) == [False, False]

    run(test)


def test_acquire_after_close_is_false_even_with_credit() -> None:
    async def test() -> None:
        window = CreditWindow(5)
        window.close()
        assert await window.acquire() is False
        assert window.credit == 5

    run(test)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (16, [0] * 7 + [8] + [0] * 7 + [8]),
        (4, [0, 2, 0, 2]),
        (3, [1, 1, 1]),
        (1, [1, 1, 1]),
        (0, [1, 1]),
    ],
)
def test_granter_returns_credit_in_batches_of_half_the_window(
    window: int, expected: list[int]
) -> None:
    granter = CreditGranter(window)
    assert [granter.consumed() for _ in expected] == expected


def test_granter_keeps_the_sender_inside_its_window() -> None:
    """Sender and receiver together: credit in flight never exceeds the window."""

    async def test() -> None:
        window_size = 8
        window = CreditWindow(window_size)
        granter = CreditGranter(window_size)
        queue: asyncio.Queue[int] = asyncio.Queue()
        most = 0

        async def sender() -> None:
            for i in range(100):
                assert await window.acquire()
                queue.put_nowait(i)

        async def receiver() -> None:
            nonlocal most
            for _ in range(100):
                most = max(most, queue.qsize())
                await queue.get()
                await asyncio.sleep(0)
                window.grant(granter.consumed())

        await asyncio.gather(sender(), receiver())
        assert 0 < most <= window_size

    run(test)


def test_relay_refuses_a_frame_past_the_window_and_regrants_in_half_windows() -> None:
    grants: list[int] = []
    relay = CreditRelay(4, grants.append)
    assert [relay.admit() for _ in range(5)] == [True] * 4 + [False]
    assert relay.outstanding == 4
    relay.passed()
    assert grants == [] and relay.outstanding == 3
    relay.passed()
    assert grants == [2]
    assert relay.admit() and relay.admit() and not relay.admit()


def test_relay_grants_nothing_once_closed() -> None:
    grants: list[int] = []
    relay = CreditRelay(2, grants.append)
    assert relay.admit() and relay.admit()
    relay.close()
    relay.passed()
    relay.passed()
    assert grants == [] and relay.outstanding == 0


def test_relay_frame_passes_once_every_reader_acked_it() -> None:
    grants: list[int] = []
    relay = CreditRelay(1, grants.append)
    assert relay.admit()
    ack = relay.passed_after(3)
    ack()
    ack()
    assert grants == [] and not relay.admit()
    ack()
    assert grants == [1] and relay.admit()


def test_relay_between_sender_and_slow_reader_holds_at_most_one_window() -> None:
    """Sender -> relay -> slow reader: the relay's queue never outgrows the window."""

    async def test() -> None:
        window = CreditWindow(6)
        relay = CreditRelay(6, window.grant)
        queue: asyncio.Queue[int] = asyncio.Queue()
        most = 0

        async def sender() -> None:
            for i in range(100):
                assert await window.acquire()
                assert relay.admit()
                queue.put_nowait(i)

        async def reader() -> None:
            nonlocal most
            for expected in range(100):
                most = max(most, queue.qsize())
                assert await queue.get() == expected
                await asyncio.sleep(0)
                relay.passed()

        await asyncio.gather(sender(), reader())
        assert 0 < most <= 6 and relay.outstanding == 0

    run(test)


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["g10", "g2", "g11", "g1", "web-10", "web-9", "db"]
    assert sorted(names, key=natural_key) == ["db", "g1", "g2", "g10", "g11", "web-9", "web-10"]


def test_natural_key_ignores_case_and_breaks_ties_by_the_name() -> None:
    assert sorted(["b", "A", "a", "g01", "g1"], key=natural_key) == ["A", "a", "b", "g01", "g1"]
    assert sorted(["x1y10", "x1y2", "x2"], key=natural_key) == ["x1y2", "x1y10", "x2"]
