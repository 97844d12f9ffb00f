"""The gdos wire protocol, shared by the daemon, the agent and the client.

Every frame is one msgpack map::

    {"v": 1, "k": "<kind>", "id": <request id, optional>, "re": <id answered,
     optional>, "b": {<body>}}

``decode`` is strict: a frame that is not such a map, is larger than
``MAX_FRAME_BYTES``, has another version, an unknown kind, or a body whose
fields do not match the kind's schema raises ``ProtocolError`` with a stable
code. Receivers answer with an ``error`` frame and keep serving. Bulk bytes
(output chunks, file chunks, pty data) are msgpack ``bin``, never base64.

Each kind is declared once, as a typed body grouped by link and direction
(gdos/wire/kinds.py, gdos/wire/mesh_kinds.py, gdos/wire/control_kinds.py); this module derives
the checks and the sets of kinds each side accepts from those declarations.

Streams (exec output, pty sessions, logs, control streams) carry a stream id
and a sequence number, and the receiver grants credit in ``*.credit`` frames: a
sender never has more than its credit in flight, so a slow reader slows the
writer instead of growing a queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgpack

from gdos.errors import ErrorCode, GdosError
from gdos.wire import control_kinds, mesh_kinds  # noqa: F401  (they declare the kinds)
from gdos.wire.kinds import CHUNK_BYTES as CHUNK_BYTES
from gdos.wire.kinds import DECLARED as DECLARED
from gdos.wire.kinds import OUTPUT_CAP_BYTES as OUTPUT_CAP_BYTES
from gdos.wire.kinds import Declared, Link, Way
from gdos.wire.schema import PLAIN, SchemaError, Spec, check_fields, legacy

VERSION = 1
MAX_FRAME_BYTES = 4 * 1024 * 1024
INITIAL_CREDIT = 16
CONTROL_STREAM_CREDIT = 512
# Remote shell windows, in chunks of at most CHUNK_BYTES: output the agent may
# have in flight to the daemon, output the daemon may have in flight to the
# client, and input the client may have in flight to the agent (end to end).
SHELL_OUTPUT_CREDIT = 32
SHELL_STREAM_CREDIT = 64
SHELL_INPUT_CREDIT = 32
# Package bytes: chunks of PACKAGE_CHUNK_BYTES, at most PACKAGE_CREDIT of them in
# flight per fetch (the daemon -> agent window) and per upload (client -> daemon).
PACKAGE_CHUNK_BYTES = 256 * 1024
PACKAGE_CREDIT = 32
UPLOAD_CHUNK_BYTES = 1024 * 1024
# Mesh receive limits (gdos/daemon/guard.py). The largest legitimate agent
# frame is an exec.result carrying both captured outputs; libzmq buffers up to
# this much per connection, even during the handshake, so it is kept tight.
MESH_FRAME_BYTES = 2 * OUTPUT_CAP_BYTES + 64 * 1024
HELLO_MAX_BYTES = 64 * 1024  # all an unaccepted key may send, before any decoding
REPORT_MAX_ENTRIES = 500  # instances in one svc.report, and instances per node
# A control reply larger than one frame travels as reply.part frames of this
# size (gdos/daemon/control.py), up to MAX_REPLY_BYTES in all.
REPLY_PART_BYTES = 1024 * 1024
MAX_REPLY_BYTES = 256 * 1024 * 1024

# Every kind, declared once with its typed body (gdos/wire/kinds.py says how):
# kind -> (required fields, optional fields), each a Spec or a tuple of types.
KINDS: dict[str, tuple[dict[str, Declared], dict[str, Declared]]] = {
    k.name: (k.required, k.optional) for k in DECLARED.values()
}


def kinds_of(link: Link, way: Way) -> frozenset[str]:
    """The kinds that travel on ``link`` in direction ``way``."""
    return frozenset(k.name for k in DECLARED.values() if k.travels(link, way))


AGENT_SENDS = kinds_of(Link.MESH, Way.UP)  # all the mesh accepts from agents
DAEMON_TO_AGENT = kinds_of(Link.MESH, Way.DOWN)
CLIENT_SENDS = kinds_of(Link.CONTROL, Way.UP)
DAEMON_TO_CLIENT = kinds_of(Link.CONTROL, Way.DOWN)


def pushed_interval(value: Any, default: float) -> float:
    """An interval the daemon pushes in its config, or ``default`` when it is not sane.

    Agents apply these without restart, so a bad value must never make one
    heartbeat in a busy loop or fall silent for hours.
    """
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.05 <= value <= 3600:
        return float(value)
    return default


ROUTING_SEPARATOR = b"#"


def routing_id(name: str) -> bytes:
    """A fresh routing id for one agent connection: ``name#<random>``.

    The name part is stable for the node; the random part makes every
    connection distinct, so no peer can take over another's routing id (the
    daemon's ROUTER does not hand ids over, and checks the name part against
    the hello and the authenticated key).
    """
    import secrets

    return name.encode() + ROUTING_SEPARATOR + secrets.token_hex(6).encode()


def routing_name(rid: bytes) -> str:
    """The node name part of a routing id."""
    return rid.split(ROUTING_SEPARATOR, 1)[0].decode("utf-8", "replace")


class ProtocolError(GdosError):
    """A frame that cannot be accepted; ``code`` says why.

    When the frame was a well-formed map whose body the kind's schema refused,
    ``kind`` and ``body`` (unchecked: never store it) let the receiver answer
    what the frame was about, e.g. fail the one exec host whose result it was.
    """

    kind: str | None = None
    body: dict[str, Any] | None = None


Body = TypeVar("Body")


@dataclass(slots=True)
class Message(Generic[Body]):
    """One decoded frame. A handler names its kind's body type (``Message[ExecRun]``,
    the TypedDicts of gdos/wire/mesh_kinds.py and gdos/wire/control_kinds.py); a bare
    ``Message`` reads its body as ``Any``."""

    kind: str
    body: Body = field(default_factory=dict)  # type: ignore[assignment]
    id: int | None = None
    re: int | None = None


def encode(
    kind: str,
    body: Mapping[str, Any] | None = None,
    *,
    id: int | None = None,
    re: int | None = None,
    limit: int = MAX_FRAME_BYTES,
) -> bytes:
    """Pack one frame. Refuses (ProtocolError) a frame the peer would refuse:
    an unknown kind, a body that does not fit the kind's schema, or one larger
    than ``limit`` (a reply split into reply.part frames has a larger one)."""
    if kind not in KINDS:
        raise ProtocolError(ErrorCode.UNKNOWN_KIND, f"unknown message kind {kind!r}.")
    _check_body(kind, body or {})
    frame: dict[str, Any] = {"v": VERSION, "k": kind, "b": body or {}}
    if id is not None:
        frame["id"] = id
    if re is not None:
        frame["re"] = re
    data: bytes = msgpack.packb(frame, use_bin_type=True)
    if len(data) > limit:
        raise ProtocolError(
            ErrorCode.FRAME_TOO_LARGE,
            f"{kind} frame of {len(data)} bytes exceeds the {limit}-byte limit.",
        )
    return data


def error_frame(code: ErrorCode | str, message: str, *, re: int | None = None) -> bytes:
    """An ``error`` frame answering request ``re``."""
    return encode("error", {"code": str(code), "message": message}, re=re)


def decode(data: bytes, limit: int = MAX_FRAME_BYTES) -> Message[Any]:
    """Unpack and validate one frame; raises ProtocolError with a stable code."""
    if len(data) > limit:
        raise ProtocolError(
            ErrorCode.FRAME_TOO_LARGE,
            f"frame of {len(data)} bytes exceeds the {limit}-byte limit.",
        )
    try:
        frame = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(ErrorCode.BAD_FRAME, f"frame is not valid msgpack ({exc}).") from None
    if not isinstance(frame, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame is not a msgpack map.")
    version = frame.get("v")
    if type(version) is not int or version != VERSION:
        raise ProtocolError(
            ErrorCode.BAD_VERSION,
            f"protocol version {version!r} is not supported (this side speaks {VERSION}); "
            "run the same gdos version on both ends.",
        )
    kind = frame.get("k")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ProtocolError(ErrorCode.UNKNOWN_KIND, f"unknown message kind {kind!r}.")
    body = frame.get("b", {})
    if not isinstance(body, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{kind}: body is not a map.")
    try:
        _check_body(kind, body)
    except ProtocolError as exc:
        exc.kind, exc.body = kind, body
        raise
    msg_id = _optional_int(frame, "id", kind)
    re = _optional_int(frame, "re", kind)
    return Message(kind=kind, body=body, id=msg_id, re=re)


def _optional_int(frame: dict[str, Any], key: str, kind: str) -> int | None:
    value = frame.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{kind}: {key!r} must be an integer.")


def _fields(fields: dict[str, Declared]) -> dict[str, Spec]:
    return {name: f if isinstance(f, Spec) else legacy(f) for name, f in fields.items()}


def _derive(required: dict[str, Declared], optional: dict[str, Declared]) -> KindSpec:
    """A kind declared with any Spec is node-facing: its unknown fields are bounded too."""
    strict = any(isinstance(f, Spec) for f in (*required.values(), *optional.values()))
    return KindSpec(_fields(required), _fields(optional), PLAIN if strict else None)


@dataclass(frozen=True, slots=True)
class KindSpec:
    """The checked form of one KINDS entry: every field as a Spec."""

    required: dict[str, Spec]
    optional: dict[str, Spec]
    extra: Spec | None


# Derived once from KINDS (tests build bodies from these with Spec.example()).
SPECS: dict[str, KindSpec] = {kind: _derive(*fields) for kind, fields in KINDS.items()}


def _check_body(kind: str, body: Mapping[str, Any]) -> None:
    spec = SPECS[kind]
    try:
        check_fields(body, spec.required, spec.optional, extra=spec.extra)
    except SchemaError as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{kind}: field {exc}.") from None
