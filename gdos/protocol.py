"""The gdos wire protocol, shared by the daemon, the agent and the client.

Every frame is one msgpack map::

    {"v": 1, "k": "<kind>", "id": <request id, optional>, "re": <id answered,
     optional>, "b": {<body>}}

``decode`` is strict: a frame that is not such a map, is larger than
``MAX_FRAME_BYTES``, has another version, an unknown kind, or a body whose
fields do not match the kind's schema raises ``ProtocolError`` with a stable
code. Receivers answer with an ``error`` frame and keep serving. Bulk bytes
(output chunks, file chunks, pty data) are msgpack ``bin``, never base64.

Streams (exec output and pty sessions now; logs and metrics later) carry a stream id and a
sequence number, and the receiver grants credit in ``*.credit`` frames: a
sender never has more than its credit in flight, so a slow reader slows the
writer instead of growing a queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from gdos import node_data as nd
from gdos.errors import ErrorCode, GdosError
from gdos.schema import (
    PLAIN,
    Bin,
    Bool,
    Int,
    ListOf,
    Opt,
    Record,
    SchemaError,
    Spec,
    Str,
    check_fields,
    legacy,
)

VERSION = 1
MAX_FRAME_BYTES = 4 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
OUTPUT_CAP_BYTES = 1024 * 1024
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

Schema = dict[str, tuple[type, ...] | Spec]

NUM = (int, float)
STR = (str,)
INT = (int,)
BOOL = (bool,)
BIN = (bytes,)
MAP = (dict,)
LIST = (list,)
OPT_STR = (str, type(None))
OPT_NUM = (int, float, type(None))
OPT_INT = (int, type(None))

# What a node may send, bounded (gdos/node_data.py has the nested records).
SEQ = Int(0, 2**63 - 1)
ID = Int(0, 2**63 - 1)
CREDIT = Int(0, 2**31 - 1)
OUT_STREAM = Str(16, frozenset({"stdout", "stderr"}))
EXEC_RESULT = Record(
    required={"task": ID, "status": nd.EXEC_STATUS, "started": nd.TIME, "ended": nd.TIME},
    optional={
        # A signal death is negative; anything beyond 32 bits is not an exit status.
        "exit_code": Opt(Int(-(2**31), 2**31 - 1)),
        "stdout": Bin(OUTPUT_CAP_BYTES),
        "stderr": Bin(OUTPUT_CAP_BYTES),
        "stdout_truncated": Bool(),
        "stderr_truncated": Bool(),
        "reason": Opt(nd.ERROR_TEXT),
    },
)
LOG_LINE = Bin(64 * 1024)
# agent/logreader.py batches count 8 bytes per line within 60 KiB: room for more.
LOG_BATCH_LINES = 16_384

# kind -> (required fields, optional fields). A field is declared by a Spec
# (gdos/schema.py: types, ranges, sizes, nested fields) or, for control kinds
# that only the local operator sends, by a tuple of types (ints still within
# 64 bits, floats finite). Unknown extra fields are allowed, bounded, so a
# newer peer may add fields without breaking an older one.
KINDS: dict[str, tuple[Schema, Schema]] = {
    # replies, both links
    "ok": ({}, {}),
    "error": ({"code": nd.CODE, "message": Str(64 * 1024)}, {}),
    "reply.part": ({"data": BIN, "more": BOOL}, {}),
    # mesh: agent -> daemon
    "hello": (
        {"name": nd.SHORT, "version": nd.SHORT, "facts": nd.FACTS},
        {"join": nd.JOIN, "results": ListOf(EXEC_RESULT, 64)},
    ),
    "heartbeat": ({}, {"uptime": nd.DURATION}),
    "bye": ({}, {"reason": Str(1024)}),  # the agent is stopping: offline now, not after silence
    "metrics": ({"sample": nd.METRICS_SAMPLE}, {}),
    "exec.started": ({"task": ID, "pid": nd.PID}, {}),
    "exec.output": (
        {"task": ID, "stream": OUT_STREAM, "seq": SEQ, "data": Bin(CHUNK_BYTES)},
        {},
    ),
    "exec.result": (dict(EXEC_RESULT.required), dict(EXEC_RESULT.optional)),
    # mesh: daemon -> agent
    "welcome": ({"config": MAP, "state": STR}, {}),
    "heartbeat.ack": ({"config": MAP, "state": STR}, {}),
    "config": ({"config": MAP, "state": STR}, {}),
    "rehello": ({}, {}),
    "revoked": ({"reason": STR}, {}),
    "exec.run": (
        {"task": INT, "argv": LIST, "timeout": NUM},
        {
            "shell": BOOL,
            "env": MAP,
            "cwd": OPT_STR,
            "user": OPT_STR,
            "credit": INT,
            "allow_drained": BOOL,
        },
    ),
    "exec.cancel": ({"task": INT}, {}),
    "exec.credit": ({"task": INT, "credit": INT}, {}),
    "exec.result.ack": ({"task": INT}, {}),
    # remote shell, mesh. Credit flows back to whoever sends the data: agent ->
    # daemon pty.credit grants input, daemon -> agent pty.credit grants output.
    "pty.open": (
        {"session": INT, "rows": INT, "cols": INT, "tty": BOOL},
        {"argv": LIST, "user": OPT_STR, "cwd": OPT_STR, "term": OPT_STR, "credit": INT},
    ),
    "pty.input": ({"session": INT, "seq": INT, "data": BIN}, {}),
    "pty.eof": ({"session": INT}, {}),
    "pty.resize": ({"session": INT, "rows": INT, "cols": INT}, {}),
    "pty.close": ({"session": INT}, {"reason": OPT_STR}),
    "pty.credit": ({"session": ID, "credit": CREDIT}, {}),
    "pty.opened": ({"session": ID, "pid": nd.PID}, {"shell": Opt(nd.PATH)}),
    "pty.output": ({"session": ID, "seq": SEQ, "data": Bin(CHUNK_BYTES)}, {"stream": OUT_STREAM}),
    "pty.exit": (
        {"session": ID},
        {
            "exit_code": Opt(Int(-(2**31), 2**31 - 1)),
            "reason": Opt(nd.ERROR_TEXT),
            "code": Opt(nd.CODE),
        },
    ),
    # services, mesh. The daemon sends an operation (op id) and the agent answers
    # svc.done once it settled; svc.state reports every instance state change and
    # svc.report the whole list after each welcome, so the daemon converges.
    "svc.deploy": ({"op": INT, "spec": MAP}, {}),
    "svc.action": ({"op": INT, "instance": STR, "action": STR}, {}),
    "svc.adopt": ({"op": INT, "spec": MAP}, {"replace": BOOL}),
    "svc.done": (
        {"op": ID, "ok": Bool()},
        {"state": nd.INSTANCE_STATE, "code": Opt(nd.CODE), "message": Opt(nd.ERROR_TEXT)},
    ),
    "svc.state": ({"state": nd.INSTANCE_STATE}, {"seq": ID}),
    "svc.report": (
        {"instances": ListOf(nd.INSTANCE_STATE, nd.MAX_INSTANCES)},
        {"ops": ListOf(ID, nd.MAX_INSTANCES), "seq": ID},
    ),
    # store, then acknowledge (daemon -> agent): an answer is dropped once acked;
    # svc.state.ack says every state and report up to seq is stored.
    "svc.done.ack": ({"op": INT}, {}),
    "svc.state.ack": ({"seq": INT}, {}),
    # package bytes, mesh: the agent asks from an offset (resuming after a
    # reconnect) and grants credit; the daemon sends chunks within it.
    "pkg.fetch": ({"fetch": ID, "sha256": nd.SHORT, "offset": nd.BYTES, "credit": CREDIT}, {}),
    "pkg.credit": ({"fetch": ID, "credit": CREDIT}, {}),
    "pkg.cancel": ({"fetch": ID}, {}),
    "pkg.chunk": ({"fetch": INT, "offset": INT, "data": BIN}, {}),
    "pkg.error": ({"fetch": INT, "code": STR, "message": STR}, {}),
    # logs, mesh (agent/logs.py, gdos/daemon/logs.py): the daemon opens a stream
    # with credit; the agent sends batches of lines within it and ends it once.
    "log.open": (
        {"stream": INT, "credit": INT},
        {
            "instance": OPT_STR,
            "file": OPT_STR,
            "path": OPT_STR,
            "lines": INT,
            "grep": OPT_STR,
            "since": OPT_NUM,
            "follow": BOOL,
            "stamps": BOOL,
        },
    ),
    "log.credit": ({"stream": INT, "credit": INT}, {}),
    "log.close": ({"stream": INT}, {}),
    "log.data": (
        {"stream": ID, "seq": SEQ, "lines": ListOf(LOG_LINE, LOG_BATCH_LINES)},
        {"ts": nd.TIME, "stamps": ListOf(Opt(nd.TIME), LOG_BATCH_LINES)},
    ),
    "log.end": ({"stream": ID}, {"code": Opt(nd.CODE), "message": Opt(nd.ERROR_TEXT)}),
    # control: client -> daemon
    "ping": ({}, {}),
    "node.list": ({}, {}),
    "node.names": ({}, {"prefix": STR}),
    "node.show": ({"name": STR}, {}),
    "node.rm": ({"name": STR}, {}),
    "node.set_state": ({"name": STR, "state": STR}, {"reason": OPT_STR}),
    "node.watch": ({}, {"interval": NUM}),
    "key.list": ({}, {}),
    "key.accept": ({}, {"name": STR, "all": BOOL}),
    "key.reject": ({"name": STR}, {}),
    "key.delete": ({"name": STR}, {}),
    "token.create": ({}, {"ttl": NUM, "uses": OPT_INT, "address": OPT_STR}),
    "token.list": ({}, {}),
    "exec.start": (
        {"argv": LIST},
        {
            "targets": LIST,
            "all": BOOL,
            "match": OPT_STR,
            "shell": BOOL,
            "env": MAP,
            "cwd": OPT_STR,
            "user": OPT_STR,
            "timeout": NUM,
            "allow_drained": BOOL,
            "follow": BOOL,
        },
    ),
    "task.list": ({}, {"limit": INT}),
    "task.show": ({"id": INT}, {}),
    "task.cancel": ({"id": INT}, {}),
    "stream.data": ({"stream": INT, "seq": INT, "event": MAP}, {}),
    "stream.end": ({"stream": INT, "seq": INT}, {"event": MAP}),
    "stream.credit": ({"stream": INT, "credit": INT}, {}),
    "stream.cancel": ({"stream": INT}, {}),
    # remote shell, control: the output comes on the stream shell.open opens;
    # shell.credit (daemon -> client) grants input credit.
    "shell.open": (
        {"node": STR, "rows": INT, "cols": INT, "tty": BOOL},
        {
            "argv": LIST,
            "user": OPT_STR,
            "cwd": OPT_STR,
            "term": OPT_STR,
            "idle_timeout": OPT_NUM,
        },
    ),
    "shell.input": ({"session": INT, "data": BIN}, {}),
    "shell.eof": ({"session": INT}, {}),
    "shell.resize": ({"session": INT, "rows": INT, "cols": INT}, {}),
    "shell.close": ({"session": INT}, {}),
    "shell.credit": ({"session": INT, "credit": INT}, {}),
    "shell.sessions": ({}, {"limit": INT}),
    "shell.cast": ({"session": INT}, {}),
    # packages, control: an upload is begun, sent in offset-addressed chunks, and
    # ended with the client's sha256, which the daemon checks before storing.
    "package.upload": ({"size": INT}, {"filename": STR}),
    "package.chunk": ({"upload": INT, "offset": INT, "data": BIN}, {}),
    "package.commit": ({"upload": INT, "sha256": STR}, {}),
    "package.list": ({}, {"name": STR}),
    "package.show": ({"name": STR}, {"version": OPT_STR}),
    "package.rm": ({"name": STR, "version": STR}, {}),
    # systems, modules, instances, control
    "system.create": ({"name": STR}, {}),
    "system.add": (
        {"system": STR, "module": STR, "package": STR},
        {
            "version": OPT_STR,
            "after": (list, type(None)),
            "args": (list, type(None)),
            "env": (dict, type(None)),
            "probe": (dict, type(None)),
            "replace": BOOL,
        },
    ),
    "system.show": ({"name": STR}, {}),
    "system.list": ({}, {}),
    "system.rm": ({"name": STR}, {"module": OPT_STR}),
    "svc.run": (
        {"action": STR, "target": STR},
        {"nodes": LIST, "match": OPT_STR, "wait": BOOL},
    ),
    "svc.status": ({}, {"target": OPT_STR}),
    "svc.watch": ({}, {"interval": NUM}),
    # metrics, control (gdos/daemon/metrics_api.py)
    "metrics.latest": ({}, {}),
    "metrics.history": ({"node": STR}, {"instance": OPT_STR, "metrics": LIST, "since": NUM}),
    "metrics.watch": ({}, {"instances": BOOL, "interval": NUM}),
    "svc.events": ({}, {"target": OPT_STR, "limit": INT, "after": OPT_INT}),
    # observe, control (gdos/daemon/observe_api.py): audit trail, alerts, backups
    "audit.list": ({}, {"since": OPT_NUM, "user": OPT_STR, "action": OPT_STR, "limit": INT}),
    "alert.rule.add": (
        {"name": STR, "metric": STR, "op": STR, "value": NUM},
        {
            "for_seconds": NUM,
            "node": OPT_STR,
            "instance": OPT_STR,
            "severity": OPT_STR,
            "command": OPT_STR,
            "webhook": OPT_STR,
        },
    ),
    "alert.rule.list": ({}, {}),
    "alert.rule.rm": ({"name": STR}, {}),
    "alert.list": ({}, {"active": BOOL, "limit": INT}),
    "backup.create": ({}, {"path": OPT_STR}),
    "backup.list": ({}, {}),
    "backup.restore": ({"path": STR}, {}),
    # logs, control: events come on the stream logs.open opens
    "logs.open": (
        {"targets": LIST},
        {
            "file": OPT_STR,
            "path": OPT_STR,
            "lines": INT,
            "grep": OPT_STR,
            "since": OPT_NUM,
            "follow": BOOL,
            "stamps": BOOL,
        },
    ),
    "svc.adopt.start": (
        {"node": STR, "name": STR},
        {
            "pid": OPT_INT,
            "pid_file": OPT_STR,
            "process_name": OPT_STR,
            "choose": OPT_STR,
            "start_cmd": OPT_STR,
            "stop_cmd": OPT_STR,
            "logs": MAP,
            "replace": BOOL,
        },
    ),
}


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


@dataclass(slots=True)
class Message:
    """One decoded frame."""

    kind: str
    body: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    re: int | None = None


def encode(
    kind: str,
    body: dict[str, Any] | None = None,
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


def decode(data: bytes, limit: int = MAX_FRAME_BYTES) -> Message:
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


def _fields(fields: Schema) -> dict[str, Spec]:
    return {name: f if isinstance(f, Spec) else legacy(f) for name, f in fields.items()}


def _derive(required: Schema, optional: Schema) -> KindSpec:
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


def _check_body(kind: str, body: dict[str, Any]) -> None:
    spec = SPECS[kind]
    try:
        check_fields(body, spec.required, spec.optional, extra=spec.extra)
    except SchemaError as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{kind}: field {exc}.") from None
