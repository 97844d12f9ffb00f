"""The control link's message kinds (client <-> daemon), one typed body each.

Only the local operator speaks on this link (an owner-only unix socket), so
fields are declared by type (ints still within 64 bits, floats finite) and
undeclared fields pass unchecked. ``up`` kinds are requests (and stream
credit); ``down`` kinds are what the daemon pushes on a stream. The daemon
answers a request with ``ok`` or ``error``. How to declare a kind: gdos/wire/kinds.py.
"""

from typing import Any, NotRequired, TypedDict

from gdos.wire.kinds import Link, Way, empty, kind
from gdos.wire.mesh_kinds import ExecOptions

CONTROL, UP, DOWN = Link.CONTROL, Way.UP, Way.DOWN

# Kinds whose body is empty, or one shared shape.
empty("ping", CONTROL, UP)
empty("node.list", CONTROL, UP)
empty("key.list", CONTROL, UP)
empty("token.list", CONTROL, UP)
empty("system.list", CONTROL, UP)
empty("metrics.latest", CONTROL, UP)
empty("alert.rule.list", CONTROL, UP)
empty("backup.list", CONTROL, UP)


@kind("node.show", CONTROL, UP)
@kind("node.rm", CONTROL, UP)
@kind("key.reject", CONTROL, UP)
@kind("key.delete", CONTROL, UP)
@kind("system.create", CONTROL, UP)
@kind("system.show", CONTROL, UP)
@kind("alert.rule.rm", CONTROL, UP)
class Named(TypedDict):
    name: str


@kind("task.list", CONTROL, UP)
@kind("shell.sessions", CONTROL, UP)
class Limited(TypedDict):
    limit: NotRequired[int]


@kind("node.watch", CONTROL, UP)
@kind("svc.watch", CONTROL, UP)
class Interval(TypedDict):
    interval: NotRequired[float]


# -- nodes, keys, tokens ----------------------------------------------------------------


@kind("node.names", CONTROL, UP)
class NodeNames(TypedDict):
    prefix: NotRequired[str]


@kind("node.set_state", CONTROL, UP)
class NodeSetState(TypedDict):
    name: str
    state: str
    reason: NotRequired[str | None]


@kind("key.accept", CONTROL, UP)
class KeyAccept(TypedDict):
    name: NotRequired[str]
    all: NotRequired[bool]


@kind("token.create", CONTROL, UP)
class TokenCreate(TypedDict):
    ttl: NotRequired[float]
    uses: NotRequired[int | None]
    address: NotRequired[str | None]


# -- exec and tasks --------------------------------------------------------------------


@kind("exec.start", CONTROL, UP)
class ExecStart(ExecOptions):
    argv: list[Any]
    targets: NotRequired[list[Any]]
    all: NotRequired[bool]
    match: NotRequired[str | None]
    timeout: NotRequired[float]
    follow: NotRequired[bool]


@kind("task.show", CONTROL, UP)
@kind("task.cancel", CONTROL, UP)
class TaskId(TypedDict):
    id: int


# -- streams: events the daemon pushes within the credit the client grants -------------


@kind("stream.data", CONTROL, DOWN)
class StreamData(TypedDict):
    stream: int
    seq: int
    event: dict[str, Any]


@kind("stream.end", CONTROL, DOWN)
class StreamEnd(TypedDict):
    stream: int
    seq: int
    event: NotRequired[dict[str, Any]]


@kind("stream.credit", CONTROL, UP)
class StreamCredit(TypedDict):
    stream: int
    credit: int


@kind("stream.cancel", CONTROL, UP)
class StreamCancel(TypedDict):
    stream: int


# -- remote shell: the output comes on the stream shell.open opens; shell.credit
# (daemon -> client) grants input credit. ---------------------------------------------


@kind("shell.open", CONTROL, UP)
class ShellOpen(TypedDict):
    node: str
    rows: int
    cols: int
    tty: bool
    argv: NotRequired[list[Any]]
    user: NotRequired[str | None]
    cwd: NotRequired[str | None]
    term: NotRequired[str | None]
    idle_timeout: NotRequired[float | None]


@kind("shell.input", CONTROL, UP)
class ShellInput(TypedDict):
    session: int
    data: bytes


@kind("shell.eof", CONTROL, UP)
@kind("shell.close", CONTROL, UP)
@kind("shell.cast", CONTROL, UP)
class ShellSession(TypedDict):
    session: int


@kind("shell.resize", CONTROL, UP)
class ShellResize(TypedDict):
    session: int
    rows: int
    cols: int


@kind("shell.credit", CONTROL, DOWN)
class ShellCredit(TypedDict):
    session: int
    credit: int


# -- packages: an upload is begun, sent in offset-addressed chunks, and ended with the
# client's sha256, which the daemon checks before storing. ------------------------------


@kind("package.upload", CONTROL, UP)
class PackageUpload(TypedDict):
    size: int
    filename: NotRequired[str]


@kind("package.chunk", CONTROL, UP)
class PackageChunk(TypedDict):
    upload: int
    offset: int
    data: bytes


@kind("package.commit", CONTROL, UP)
class PackageCommit(TypedDict):
    upload: int
    sha256: str


@kind("package.list", CONTROL, UP)
class PackageList(TypedDict):
    name: NotRequired[str]


@kind("package.show", CONTROL, UP)
class PackageShow(TypedDict):
    name: str
    version: NotRequired[str | None]


@kind("package.rm", CONTROL, UP)
class PackageRm(TypedDict):
    name: str
    version: str


# -- systems, modules, instances ---------------------------------------------------------


@kind("system.add", CONTROL, UP)
class SystemAdd(TypedDict):
    system: str
    module: str
    package: str
    version: NotRequired[str | None]
    after: NotRequired[list[Any] | None]
    args: NotRequired[list[Any] | None]
    env: NotRequired[dict[str, Any] | None]
    probe: NotRequired[dict[str, Any] | None]
    replace: NotRequired[bool]


@kind("system.rm", CONTROL, UP)
class SystemRm(TypedDict):
    name: str
    module: NotRequired[str | None]


@kind("svc.run", CONTROL, UP)
class SvcRun(TypedDict):
    action: str
    target: str
    nodes: NotRequired[list[Any]]
    match: NotRequired[str | None]
    wait: NotRequired[bool]


@kind("svc.status", CONTROL, UP)
class SvcStatus(TypedDict):
    target: NotRequired[str | None]


@kind("svc.events", CONTROL, UP)
class SvcEvents(TypedDict):
    target: NotRequired[str | None]
    limit: NotRequired[int]
    after: NotRequired[int | None]


@kind("svc.adopt.start", CONTROL, UP)
class SvcAdoptStart(TypedDict):
    node: str
    name: str
    pid: NotRequired[int | None]
    pid_file: NotRequired[str | None]
    process_name: NotRequired[str | None]
    choose: NotRequired[str | None]
    start_cmd: NotRequired[str | None]
    stop_cmd: NotRequired[str | None]
    logs: NotRequired[dict[str, Any]]
    replace: NotRequired[bool]


# -- metrics (gdos/daemon/metrics_api.py) --------------------------------------------------


@kind("metrics.history", CONTROL, UP)
class MetricsHistory(TypedDict):
    node: str
    instance: NotRequired[str | None]
    metrics: NotRequired[list[Any]]
    since: NotRequired[float]


@kind("metrics.watch", CONTROL, UP)
class MetricsWatch(TypedDict):
    instances: NotRequired[bool]
    interval: NotRequired[float]


# -- observe (gdos/daemon/observe_api.py): audit trail, alerts, backups ---------------------


@kind("audit.list", CONTROL, UP)
class AuditList(TypedDict):
    since: NotRequired[float | None]
    user: NotRequired[str | None]
    action: NotRequired[str | None]
    limit: NotRequired[int]


@kind("alert.rule.add", CONTROL, UP)
class AlertRuleAdd(TypedDict):
    name: str
    metric: str
    op: str
    value: float
    for_seconds: NotRequired[float]
    node: NotRequired[str | None]
    instance: NotRequired[str | None]
    severity: NotRequired[str | None]
    command: NotRequired[str | None]
    webhook: NotRequired[str | None]


@kind("alert.list", CONTROL, UP)
class AlertList(TypedDict):
    active: NotRequired[bool]
    limit: NotRequired[int]


@kind("backup.create", CONTROL, UP)
class BackupCreate(TypedDict):
    path: NotRequired[str | None]


@kind("backup.restore", CONTROL, UP)
class BackupRestore(TypedDict):
    path: str


# -- logs: events come on the stream logs.open opens -----------------------------------


@kind("logs.open", CONTROL, UP)
class LogsOpen(TypedDict):
    targets: list[Any]
    file: NotRequired[str | None]
    path: NotRequired[str | None]
    lines: NotRequired[int]
    grep: NotRequired[str | None]
    since: NotRequired[float | None]
    follow: NotRequired[bool]
    stamps: NotRequired[bool]
