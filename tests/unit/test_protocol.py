"""The wire protocol: every kind round-trips, every bad frame is refused by code.

Bodies are built from ``protocol.KINDS`` itself, so a kind added to the
schema is covered without touching this file.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest

from gdos.errors import ErrorCode, ExitCode
from gdos.wire import protocol
from gdos.wire.protocol import KINDS, MAX_FRAME_BYTES, SPECS, Message, ProtocolError, decode, encode
from gdos.wire.transport import frame_bytes, read_message


def minimal_body(kind: str) -> dict[str, Any]:
    return {name: spec.example() for name, spec in SPECS[kind].required.items()}


def full_body(kind: str) -> dict[str, Any]:
    fields = {**SPECS[kind].required, **SPECS[kind].optional}
    return {name: spec.example() for name, spec in fields.items()}


def pack(frame: Any) -> bytes:
    return bytes(msgpack.packb(frame, use_bin_type=True))


def frame(kind: Any = "ping", body: Any = None, **top: Any) -> dict[str, Any]:
    """A raw frame as a peer might send it (``top`` overrides or adds keys)."""
    raw = {"v": protocol.VERSION, "k": kind, "b": {} if body is None else body}
    raw.update(top)
    return raw


def refused(data: bytes) -> str:
    with pytest.raises(ProtocolError) as info:
        decode(data)
    return str(info.value.code)


# -- round trips -------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_round_trips_with_a_minimal_body(kind: str) -> None:
    body = minimal_body(kind)
    assert decode(encode(kind, body, id=3, re=2)) == Message(kind, body, id=3, re=2)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_round_trips_with_every_optional_field(kind: str) -> None:
    body = full_body(kind)
    assert decode(encode(kind, body)) == Message(kind, body)


def test_ids_are_optional() -> None:
    msg = decode(encode("ping"))
    assert (msg.kind, msg.body, msg.id, msg.re) == ("ping", {}, None, None)


def test_bin_fields_stay_bytes_and_strings_stay_str() -> None:
    data = bytes(range(256))
    msg = decode(encode("exec.output", {"task": 1, "stream": "stdout", "seq": 0, "data": data}))
    assert msg.body["data"] == data
    assert isinstance(msg.body["data"], bytes)
    assert isinstance(msg.body["stream"], str)


def test_bytes_nested_in_a_map_stay_bytes() -> None:
    event = {"type": "output", "data": b"\xff\xfe", "node": "web-1"}
    msg = decode(encode("stream.data", {"stream": 1, "seq": 0, "event": event}))
    assert msg.body["event"] == event


def test_error_frame_answers_a_request() -> None:
    msg = decode(protocol.error_frame(ErrorCode.NODE_UNKNOWN, "no such node", re=9))
    assert msg == Message("error", {"code": "node_unknown", "message": "no such node"}, re=9)


def test_unknown_extra_fields_are_ignored() -> None:
    raw = frame("exec.cancel", {"task": 1, "added_later": [1, 2]}, added_later="yes")
    msg = decode(pack(raw))
    assert msg.kind == "exec.cancel"
    assert msg.body["task"] == 1


def test_a_frame_without_body_has_an_empty_one() -> None:
    assert decode(pack({"v": protocol.VERSION, "k": "ping"})).body == {}


def test_protocol_error_reads_like_every_gdos_error() -> None:
    with pytest.raises(ProtocolError) as info:
        decode(b"\xc1")
    assert str(info.value).startswith("error[bad_frame]: ")
    assert info.value.exit_code == ExitCode.ERROR


# -- refused frames -----------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # a byte msgpack never uses
        b"\xc1\x9f\x00 not msgpack at all \xff",
        pack(frame())[:-1],  # truncated
        pack(frame("exec.cancel", {"task": 1}))[:5],
        pack(frame()) + b"\x00trailing",
        pack({1: "integer keys"}),
    ],
    ids=["empty", "reserved-byte", "garbage", "truncated", "cut", "trailing", "int-key"],
)
def test_not_msgpack_is_a_bad_frame(data: bytes) -> None:
    assert refused(data) == ErrorCode.BAD_FRAME


@pytest.mark.parametrize("value", [[1, 2, 3], 42, "ping", None, b"bytes"])
def test_msgpack_that_is_not_a_map_is_a_bad_frame(value: Any) -> None:
    assert refused(pack(value)) == ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    "version", [2, 0, -1, "1", None, [1]], ids=["2", "0", "-1", "str", "nil", "list"]
)
def test_other_versions_are_refused(version: Any) -> None:
    assert refused(pack(frame(v=version))) == ErrorCode.BAD_VERSION


@pytest.mark.parametrize("version", [True, 1.0], ids=["true", "float"])
def test_a_version_that_only_compares_equal_is_refused(version: Any) -> None:
    assert refused(pack(frame(v=version))) == ErrorCode.BAD_VERSION


def test_missing_version_is_refused() -> None:
    raw = frame()
    del raw["v"]
    assert refused(pack(raw)) == ErrorCode.BAD_VERSION


def test_missing_kind_is_refused() -> None:
    raw = frame()
    del raw["k"]
    assert refused(pack(raw)) == ErrorCode.UNKNOWN_KIND


@pytest.mark.parametrize("kind", ["nope", "", "PING", 5, b"ping", None, ["ping"], {"k": "ping"}])
def test_unknown_or_non_string_kinds_are_refused(kind: Any) -> None:
    assert refused(pack(frame(kind))) == ErrorCode.UNKNOWN_KIND


@pytest.mark.parametrize("body", [[], "body", 1, None, b"\x80"])
def test_a_body_that_is_not_a_map_is_refused(body: Any) -> None:
    raw = frame()
    raw["b"] = body
    assert refused(pack(raw)) == ErrorCode.BAD_MESSAGE


@pytest.mark.parametrize("kind", sorted(k for k, (required, _) in KINDS.items() if required))
def test_each_missing_required_field_is_refused(kind: str) -> None:
    for name in KINDS[kind][0]:
        body = minimal_body(kind)
        del body[name]
        assert refused(pack(frame(kind, body))) == ErrorCode.BAD_MESSAGE, name


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("exec.cancel", "task", "1"),  # str for int
        ("exec.cancel", "task", True),  # bool is not an int here
        ("exec.cancel", "task", 1.0),  # float for int
        ("exec.cancel", "task", None),
        ("exec.output", "data", 5),  # int for bin
        ("exec.output", "data", "text"),  # str for bin
        ("exec.output", "stream", b"stdout"),  # bin for str
        ("exec.run", "timeout", "10"),  # str for a number
        ("exec.run", "timeout", False),  # bool for a number
        ("exec.run", "argv", "ls -la"),  # str for list
        ("hello", "facts", []),  # list for map
        ("exec.run", "shell", 1),  # int for bool (optional field)
        ("exec.result", "exit_code", "0"),  # str for optional int
        ("token.create", "uses", True),  # bool for optional int
    ],
)
def test_a_field_of_the_wrong_type_is_refused(kind: str, field: str, value: Any) -> None:
    body = {**minimal_body(kind), field: value}
    assert refused(pack(frame(kind, body))) == ErrorCode.BAD_MESSAGE


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("exec.result", "exit_code", None),
        ("exec.result", "reason", None),
        ("exec.run", "timeout", 10),  # int where a number is wanted
        ("exec.run", "timeout", 2.5),
        ("exec.run", "cwd", None),
    ],
)
def test_types_the_schema_allows_are_accepted(kind: str, field: str, value: Any) -> None:
    body = {**minimal_body(kind), field: value}
    assert decode(pack(frame(kind, body))).body[field] == value


@pytest.mark.parametrize("key", ["id", "re"])
@pytest.mark.parametrize("value", ["1", 1.5, True, [1], b"\x01"])
def test_ids_must_be_integers(key: str, value: Any) -> None:
    assert refused(pack(frame(**{key: value}))) == ErrorCode.BAD_MESSAGE


def test_an_oversized_frame_is_refused_before_unpacking() -> None:
    assert refused(b"\x00" * (MAX_FRAME_BYTES + 1)) == ErrorCode.FRAME_TOO_LARGE


def test_an_oversized_frame_is_refused_when_encoding() -> None:
    body = {"upload": 1, "offset": 0, "data": b"x" * MAX_FRAME_BYTES}
    with pytest.raises(ProtocolError) as info:
        encode("package.chunk", body)
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE


def test_the_largest_chunk_fits_in_a_frame() -> None:
    body = {"task": 1, "stream": "stdout", "seq": 0, "data": b"x" * protocol.CHUNK_BYTES}
    assert decode(encode("exec.output", body)).body["data"] == body["data"]


# -- framing on the control socket ---------------------------------------------


def read_from(*chunks: bytes, eof: bool = True) -> Message | None:
    """``read_message`` on a stream that received ``chunks`` (then EOF)."""

    async def go() -> Message | None:
        reader = asyncio.StreamReader()
        for chunk in chunks:
            reader.feed_data(chunk)
        if eof:
            reader.feed_eof()
        return await asyncio.wait_for(read_message(reader), 5)

    return asyncio.run(go())


def read_refused(*chunks: bytes, eof: bool = True) -> str:
    with pytest.raises(ProtocolError) as info:
        read_from(*chunks, eof=eof)
    return str(info.value.code)


def test_a_clean_end_of_stream_is_none() -> None:
    assert read_from() is None


def test_frames_are_read_one_by_one() -> None:
    async def go() -> list[Message | None]:
        reader = asyncio.StreamReader()
        reader.feed_data(frame_bytes(encode("ping", id=1)) + frame_bytes(encode("ok", re=1)))
        reader.feed_eof()
        return [await read_message(reader) for _ in range(3)]

    assert asyncio.run(go()) == [Message("ping", id=1), Message("ok", re=1), None]


def test_a_partial_header_is_a_bad_frame() -> None:
    assert read_refused(b"\x00\x00") == ErrorCode.BAD_FRAME


def test_a_partial_frame_is_a_bad_frame() -> None:
    whole = frame_bytes(encode("ping"))
    assert read_refused(whole[:-1]) == ErrorCode.BAD_FRAME


def test_a_framed_payload_that_is_not_msgpack_is_a_bad_frame() -> None:
    assert read_refused(frame_bytes(b"\xc1\xc1")) == ErrorCode.BAD_FRAME


def test_a_framed_payload_with_a_bad_body_is_refused() -> None:
    assert read_refused(frame_bytes(pack(frame("exec.cancel")))) == ErrorCode.BAD_MESSAGE


def test_an_oversized_length_is_refused_without_reading_the_body() -> None:
    async def go() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data((MAX_FRAME_BYTES + 1).to_bytes(4, "big") + b"body")
        # no EOF: reading the announced body would wait for ever
        with pytest.raises(ProtocolError) as info:
            await asyncio.wait_for(read_message(reader), 5)
        assert info.value.code == ErrorCode.FRAME_TOO_LARGE
        return await reader.read(4)

    assert asyncio.run(go()) == b"body"


def test_the_largest_length_is_still_read() -> None:
    # MAX_FRAME_BYTES itself is allowed, so the reader waits for the body (and
    # finds the stream closed inside it) rather than refusing the length.
    assert read_refused(MAX_FRAME_BYTES.to_bytes(4, "big"), b"x") == ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1.0),
        (0.5, 0.5),
        (3600, 3600.0),
        (0.0, 15.0),
        (0.01, 15.0),
        (86400, 15.0),
        (True, 15.0),
        ("5", 15.0),
        (None, 15.0),
    ],
)
def test_pushed_intervals_are_applied_only_when_sane(value: object, expected: float) -> None:
    assert protocol.pushed_interval(value, 15.0) == expected


# -- declarations (gdos/wire/kinds.py) -------------------------------------------------


def test_the_direction_sets_come_from_the_declarations() -> None:
    from gdos.wire.kinds import DECLARED, Link, Way

    assert {
        k.name for k in DECLARED.values() if k.travels(Link.MESH, Way.UP)
    } == protocol.AGENT_SENDS
    assert {"hello", "exec.result", "pty.credit", "error"} <= protocol.AGENT_SENDS
    assert {"exec.run", "pty.credit", "welcome"} <= protocol.DAEMON_TO_AGENT
    assert {"node.show", "stream.credit"} <= protocol.CLIENT_SENDS
    assert {"stream.data", "ok", "reply.part"} <= protocol.DAEMON_TO_CLIENT
    assert {"error"} == protocol.AGENT_SENDS & protocol.CLIENT_SENDS  # only replies cross
    every = protocol.AGENT_SENDS | protocol.DAEMON_TO_AGENT | protocol.CLIENT_SENDS
    assert every | protocol.DAEMON_TO_CLIENT == set(KINDS)  # no kind travels nowhere


def test_a_body_type_is_the_schema_of_its_kind() -> None:
    from gdos.wire.control_kinds import NodeSetState
    from gdos.wire.mesh_kinds import ExecStarted

    required, optional = KINDS["node.set_state"]
    assert (set(required), set(optional)) == ({"name", "state"}, {"reason"})
    assert required["name"] == (str,) and optional["reason"] == (str, type(None))
    assert protocol.DECLARED["node.set_state"].body is NodeSetState
    assert KINDS["exec.started"][0]["pid"].hi == 2**31 - 1  # Annotated[int, nd.PID]
    assert protocol.DECLARED["exec.started"].body is ExecStarted


def test_a_kind_cannot_be_declared_twice_nor_with_an_unchecked_field() -> None:
    from typing import TypedDict

    from gdos.wire.kinds import Link, Way, kind

    class Body(TypedDict):
        name: str

    with pytest.raises(ValueError, match="declared twice"):
        kind("ping", Link.CONTROL, Way.UP)(Body)

    # functional syntax: evaluated, where a class here would have string annotations
    loose = TypedDict("loose", {"names": set[str]})  # noqa: UP013  (no schema for a set)
    with pytest.raises(TypeError, match="needs Annotated"):
        kind("test.loose", Link.CONTROL, Way.UP)(loose)
    with pytest.raises(TypeError, match="evaluated annotations"):  # this file's are strings
        kind("test.body", Link.CONTROL, Way.UP)(Body)
    assert not {"test.loose", "test.body"} & set(protocol.DECLARED)
