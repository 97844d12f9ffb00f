"""The mesh link's message kinds (agent <-> daemon), one typed body each.

``up`` kinds come from agents, which are trusted to speak for themselves
only: every field is declared by a Spec (gdos/wire/node_data.py has the nested
records), so its type, range and size are checked at decode. ``down`` kinds
come from the daemon. How to declare a kind: gdos/wire/kinds.py.
"""

from typing import Annotated, Any, NotRequired, TypedDict

from gdos.wire import node_data as nd
from gdos.wire.kinds import (
    CHUNK_BYTES,
    ID,
    OUT_STREAM,
    OUTPUT_CAP_BYTES,
    Credit,
    Id,
    Link,
    OptCode,
    OptErrorText,
    Seq,
    Way,
    empty,
    kind,
    record,
)
from gdos.wire.schema import Bin, Bool, Int, ListOf, Opt, Str

MESH, UP, DOWN, BOTH = Link.MESH, Way.UP, Way.DOWN, Way.BOTH

# A signal death is negative; anything beyond 32 bits is not an exit status.
ExitCode = Annotated[int | None, Opt(Int(-(2**31), 2**31 - 1))]
Output = Annotated[bytes, Bin(OUTPUT_CAP_BYTES)]
Chunk = Annotated[bytes, Bin(CHUNK_BYTES)]
Flag = Annotated[bool, Bool()]
Time = Annotated[float, nd.TIME]
OutStream = Annotated[str, OUT_STREAM]
Instance = Annotated[dict[str, Any], nd.INSTANCE_STATE]
# agent/logreader.py batches count 8 bytes per line within 60 KiB: room for more.
LOG_BATCH_LINES = 16_384
LOG_LINE = Bin(64 * 1024)


class ExecResult(TypedDict):
    task: Id
    status: Annotated[str, nd.EXEC_STATUS]
    started: Time
    ended: Time
    exit_code: NotRequired[ExitCode]
    stdout: NotRequired[Output]
    stderr: NotRequired[Output]
    stdout_truncated: NotRequired[Flag]
    stderr_truncated: NotRequired[Flag]
    reason: NotRequired[OptErrorText]


EXEC_RESULT = record(ExecResult)

# -- sessions ---------------------------------------------------------------------------


@kind("hello", MESH, UP)
class Hello(TypedDict):
    name: Annotated[str, nd.SHORT]
    version: Annotated[str, nd.SHORT]
    facts: Annotated[dict[str, Any], nd.FACTS]
    join: NotRequired[Annotated[dict[str, Any], nd.JOIN]]
    results: NotRequired[Annotated[list[ExecResult], ListOf(EXEC_RESULT, 64)]]


@kind("heartbeat", MESH, UP)
class Heartbeat(TypedDict):
    uptime: NotRequired[Annotated[float, nd.DURATION]]


@kind("bye", MESH, UP)  # the agent is stopping: offline now, not after silence
class Bye(TypedDict):
    reason: NotRequired[Annotated[str, Str(1024)]]


@kind("metrics", MESH, UP)
class Metrics(TypedDict):
    sample: Annotated[dict[str, Any], nd.METRICS_SAMPLE]


@kind("welcome", MESH, DOWN)
@kind("heartbeat.ack", MESH, DOWN)
@kind("config", MESH, DOWN)
class Config(TypedDict):
    config: dict[str, Any]
    state: str


empty("rehello", MESH, DOWN)


@kind("revoked", MESH, DOWN)
class Revoked(TypedDict):
    reason: str


# -- exec ---------------------------------------------------------------------------------


@kind("exec.started", MESH, UP)
class ExecStarted(TypedDict):
    task: Id
    pid: Annotated[int, nd.PID]


@kind("exec.output", MESH, UP)
class ExecOutput(TypedDict):
    task: Id
    stream: OutStream
    seq: Seq
    data: Chunk


kind("exec.result", MESH, UP)(ExecResult)


class ExecOptions(TypedDict):
    """How a command runs, as the operator asked it: the same in ``exec.start``
    (client -> daemon) and ``exec.run`` (daemon -> agent)."""

    shell: NotRequired[bool]
    env: NotRequired[dict[str, Any]]
    cwd: NotRequired[str | None]
    user: NotRequired[str | None]
    allow_drained: NotRequired[bool]


@kind("exec.run", MESH, DOWN)
class ExecRun(ExecOptions):
    task: int
    argv: list[Any]
    timeout: float
    credit: NotRequired[int]


@kind("exec.cancel", MESH, DOWN)
@kind("exec.result.ack", MESH, DOWN)
class ExecTask(TypedDict):
    task: int


@kind("exec.credit", MESH, DOWN)
class ExecCredit(TypedDict):
    task: int
    credit: int


# -- remote shell. Credit flows back to whoever sends the data: agent -> daemon
# pty.credit grants input, daemon -> agent pty.credit grants output. -----------------------


@kind("pty.open", MESH, DOWN)
class PtyOpen(TypedDict):
    session: int
    rows: int
    cols: int
    tty: bool
    argv: NotRequired[list[Any]]
    user: NotRequired[str | None]
    cwd: NotRequired[str | None]
    term: NotRequired[str | None]
    credit: NotRequired[int]


@kind("pty.input", MESH, DOWN)
class PtyInput(TypedDict):
    session: int
    seq: int
    data: bytes


@kind("pty.eof", MESH, DOWN)
class PtySession(TypedDict):
    session: int


@kind("pty.resize", MESH, DOWN)
class PtyResize(TypedDict):
    session: int
    rows: int
    cols: int


@kind("pty.close", MESH, DOWN)
class PtyClose(TypedDict):
    session: int
    reason: NotRequired[str | None]


@kind("pty.credit", MESH, BOTH)
class PtyCredit(TypedDict):
    session: Id
    credit: Credit


@kind("pty.opened", MESH, UP)
class PtyOpened(TypedDict):
    session: Id
    pid: Annotated[int, nd.PID]
    shell: NotRequired[Annotated[str | None, Opt(nd.PATH)]]


@kind("pty.output", MESH, UP)
class PtyOutput(TypedDict):
    session: Id
    seq: Seq
    data: Chunk
    stream: NotRequired[OutStream]


@kind("pty.exit", MESH, UP)
class PtyExit(TypedDict):
    session: Id
    exit_code: NotRequired[ExitCode]
    reason: NotRequired[OptErrorText]
    code: NotRequired[OptCode]


# -- services. The daemon sends an operation (op id) and the agent answers svc.done
# once it settled; svc.state reports every instance state change and svc.report the
# whole list after each welcome, so the daemon converges. ----------------------------------


@kind("svc.deploy", MESH, DOWN)
class SvcDeploy(TypedDict):
    op: int
    spec: dict[str, Any]


@kind("svc.adopt", MESH, DOWN)
class SvcAdopt(SvcDeploy):
    replace: NotRequired[bool]


@kind("svc.action", MESH, DOWN)
class SvcAction(TypedDict):
    op: int
    instance: str
    action: str


@kind("svc.done", MESH, UP)
class SvcDone(TypedDict):
    op: Id
    ok: Flag
    state: NotRequired[Instance]
    code: NotRequired[OptCode]
    message: NotRequired[OptErrorText]


@kind("svc.state", MESH, UP)
class SvcState(TypedDict):
    state: Instance
    seq: NotRequired[Id]


@kind("svc.report", MESH, UP)
class SvcReport(TypedDict):
    instances: Annotated[list[dict[str, Any]], ListOf(nd.INSTANCE_STATE, nd.MAX_INSTANCES)]
    ops: NotRequired[Annotated[list[int], ListOf(ID, nd.MAX_INSTANCES)]]
    seq: NotRequired[Id]


# store, then acknowledge: an answer is dropped once acked; svc.state.ack says
# every state and report up to seq is stored.
@kind("svc.done.ack", MESH, DOWN)
class SvcDoneAck(TypedDict):
    op: int


@kind("svc.state.ack", MESH, DOWN)
class SvcStateAck(TypedDict):
    seq: int


# -- package bytes: the agent asks from an offset (resuming after a reconnect) and
# grants credit; the daemon sends chunks within it. ------------------------------------------


@kind("pkg.fetch", MESH, UP)
class PkgFetch(TypedDict):
    fetch: Id
    sha256: Annotated[str, nd.SHORT]
    offset: Annotated[int, nd.BYTES]
    credit: Credit


@kind("pkg.credit", MESH, UP)
class PkgCredit(TypedDict):
    fetch: Id
    credit: Credit


@kind("pkg.cancel", MESH, UP)
class PkgCancel(TypedDict):
    fetch: Id


@kind("pkg.chunk", MESH, DOWN)
class PkgChunk(TypedDict):
    fetch: int
    offset: int
    data: bytes


@kind("pkg.error", MESH, DOWN)
class PkgError(TypedDict):
    fetch: int
    code: str
    message: str


# -- logs (agent/logs.py, gdos/daemon/logs.py): the daemon opens a stream with credit;
# the agent sends batches of lines within it and ends it once. ------------------------------


@kind("log.open", MESH, DOWN)
class LogOpen(TypedDict):
    stream: int
    credit: int
    instance: NotRequired[str | None]
    file: NotRequired[str | None]
    path: NotRequired[str | None]
    lines: NotRequired[int]
    grep: NotRequired[str | None]
    since: NotRequired[float | None]
    follow: NotRequired[bool]
    stamps: NotRequired[bool]


@kind("log.credit", MESH, DOWN)
class LogCredit(TypedDict):
    stream: int
    credit: int


@kind("log.close", MESH, DOWN)
class LogClose(TypedDict):
    stream: int


@kind("log.data", MESH, UP)
class LogData(TypedDict):
    stream: Id
    seq: Seq
    lines: Annotated[list[bytes], ListOf(LOG_LINE, LOG_BATCH_LINES)]
    ts: NotRequired[Time]
    stamps: NotRequired[Annotated[list[float | None], ListOf(Opt(nd.TIME), LOG_BATCH_LINES)]]


@kind("log.end", MESH, UP)
class LogEnd(TypedDict):
    stream: Id
    code: NotRequired[OptCode]
    message: NotRequired[OptErrorText]
