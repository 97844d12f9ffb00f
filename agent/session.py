"""The agent's session with the daemon, without any I/O.

Both the real agent (agent/link.py) and every simulated agent of the mock
cluster (gdos/devtools/sim_agent.py) drive this same core, so the mock
cluster cannot drift from the agent: the hello body, the config and state
the daemon pushes, the refusal of work the node state forbids, exec results
kept until the daemon acknowledges them, the goodbye, and the one dispatch
table from message kind to handler all live here. The caller owns the
socket and the clock (it passes ``now``) and gives a ``Work`` object: what
this node actually does (real commands and services, or fakes).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

from gdos import __version__
from gdos.errors import ErrorCode
from gdos.identity.tokens import JoinToken, proof
from gdos.model import Action, HostStatus, NodeState, refusal
from gdos.wire import protocol
from gdos.wire.protocol import ProtocolError

log = logging.getLogger("gdos.agent")

Body = dict[str, Any]
Send = Callable[[str, Body], None]
Outcome = str | None  # WELCOME, CLOSE, or None: what the transport must do next
WELCOME, CLOSE = "welcome", "close"

HELLO_TIMEOUT = 5.0  # to connect and finish the handshake; then to wait for a welcome
HELLO_TIMEOUT_MAX = 30.0  # a busy daemon (thousands enrolling) is asked again, not redialled
SILENCE_FACTOR = 3.0  # heartbeat intervals without a frame before the link counts as lost
MIN_SILENCE = 10.0
HEARTBEAT_INTERVAL, METRICS_INTERVAL = 15.0, 5.0  # until the daemon pushes its own
BACKOFF_BASE = 0.5
BYE_LINGER_MS = 1000  # at most this long at exit to get the goodbye out
RESEND_AFTER = 30.0  # an unacknowledged result is sent again after this
MAX_REASON = 4096  # within the exec.result schema (gdos/wire/node_data.py ERROR_TEXT)
BYE_REASON = "the agent is stopping"

# The mesh kinds the daemon sends to an agent. A dispatch table naming any
# other kind (one the agent sends, a control kind, a typo) is refused at start-up.
RECEIVES = protocol.DAEMON_TO_AGENT  # declared once, in gdos/wire/mesh_kinds.py

WorkHandler = Callable[[Any, Body], None]  # (the work object, the message body)


class Work(Protocol):
    """What a node does behind the session: its handlers and three session events."""

    HANDLERS: ClassVar[Mapping[str, WorkHandler]]  # kinds the core leaves to the work

    def start_exec(self, body: Body) -> None:
        """Run an ``exec.run`` the core admitted; end it with ``Session.finish``."""

    def welcomed(self) -> None:
        """A welcome arrived (each one): reset stream credit, report what runs."""

    def set_node_state(self, state: NodeState) -> None:
        """The daemon pushed the node's state (a disabled node stops its instances)."""


class Session:
    """One agent's session state: identity, pushed config, results not yet stored."""

    __slots__ = (
        "address",
        "facts",
        "heartbeat_interval",
        "join",
        "metrics_interval",
        "name",
        "note",
        "on_welcome",
        "online",
        "public_key",
        "running",
        "send",
        "sent_at",
        "started",
        "state",
        "table",
        "unacked",
        "work",
    )

    def __init__(
        self,
        name: str,
        facts: Callable[[], Body],
        send: Send,
        work: Work,
        *,
        token: JoinToken | None = None,
        public_key: bytes | None = None,
        on_welcome: Callable[[], None] | None = None,
        note: Callable[[str], None] | None = None,
        address: str = "the daemon",
    ) -> None:
        self.name, self.facts, self.send, self.work = name, facts, send, work
        self.address = address  # only to say where we are connected
        self.table = dispatch_table(type(work))  # refuses a bad table before any frame
        self.join = token if public_key else None  # sent until the first welcome
        self.public_key = public_key
        self.on_welcome, self.note = on_welcome, note
        self.heartbeat_interval, self.metrics_interval = HEARTBEAT_INTERVAL, METRICS_INTERVAL
        self.state = NodeState.NORMAL
        self.online = False  # welcomed on the current connection
        self.started = time.time()
        self.running: set[int] = set()  # admitted exec tasks without a result yet
        self.unacked: dict[int, Body] = {}  # task -> result the daemon has not stored
        self.sent_at: dict[int, float] = {}  # task -> when its result was last sent

    # -- what the agent says -------------------------------------------------------
    def hello(self) -> None:
        body: Body = {"name": self.name, "version": __version__, "facts": self.facts()}
        if self.join is not None and self.public_key is not None:
            secret = proof(self.join.secret, self.public_key)
            body["join"] = {"token": self.join.token_id, "proof": secret}
        self.send("hello", body)

    def heartbeat(self, now: float) -> None:
        """The periodic beat; results still unacknowledged go again with it."""
        self.send("heartbeat", {"uptime": time.time() - self.started})
        self.resend_unacked(now)

    def bye(self) -> None:
        """Goodbye on a welcomed link: the daemon marks the node offline at once."""
        if self.online:
            self.send("bye", {"reason": BYE_REASON})

    def lost(self) -> None:
        """The connection is gone; the next one starts with a hello again."""
        self.online = False

    # -- timing the transport asks about -----------------------------------------------
    def silent_too_long(self, now: float, last_rx: float) -> bool:
        return now - last_rx > max(MIN_SILENCE, SILENCE_FACTOR * self.heartbeat_interval)

    @staticmethod
    def next_hello_wait(wait: float) -> float:
        """Connected but not answered: the daemon is busy; ask again, waiting longer."""
        return min(wait * 2, HELLO_TIMEOUT_MAX)

    # -- exec results, kept until stored ------------------------------------------------
    def finish(self, task: int, result: Body, now: float | None = None) -> None:
        reason = result.get("reason")
        if isinstance(reason, str) and len(reason) > MAX_REASON:  # e.g. a huge argv[0]
            result["reason"] = reason[: MAX_REASON - 1] + "…"
        self.running.discard(task)
        self.unacked[task] = result
        self.sent_at[task] = time.monotonic() if now is None else now
        self.send("exec.result", result)

    def resend_unacked(self, now: float, every: float = RESEND_AFTER) -> None:
        """Send again results not acknowledged for ``every`` seconds.

        The daemon acknowledges only what it stored; one that could not
        store a result (full disk, over its memory budget) gets it again.
        """
        for task, body in self.unacked.items():
            if now - self.sent_at.get(task, 0.0) >= every:
                self.sent_at[task] = now
                self.send("exec.result", body)

    # -- what the daemon says ---------------------------------------------------------
    def receive(self, data: bytes) -> Outcome:
        try:
            msg = protocol.decode(data)
        except ProtocolError as exc:
            self._say(logging.WARNING, f"bad frame from the daemon: {exc}")
            return None
        return self.dispatch(msg.kind, msg.body)

    def dispatch(self, kind: str, body: Body) -> Outcome:
        handler = self.table.get(kind)
        if handler is None:
            self._say(logging.WARNING, f"unexpected {kind} from the daemon")
            return None
        try:
            return handler(self, body)
        except Exception as exc:  # one odd frame must not stop the agent
            if self.note is None:
                log.exception("handling %s failed", kind)
            else:
                self.note(f"handling {kind} failed: {exc!r}")
            return None

    def _say(self, level: int, text: str) -> None:
        """Log, or hand warnings to ``note`` (the mock cluster counts them)."""
        if self.note is None:
            log.log(level, text)
        elif level >= logging.WARNING:
            self.note(text)

    def _apply_config(self, body: Body) -> None:
        config = body["config"]
        self.heartbeat_interval = protocol.pushed_interval(
            config.get("heartbeat_interval"), HEARTBEAT_INTERVAL
        )
        self.metrics_interval = protocol.pushed_interval(
            config.get("metrics_interval"), METRICS_INTERVAL
        )
        self.state = NodeState(body["state"])
        self.work.set_node_state(self.state)

    def _on_welcome(self, body: Body) -> Outcome:
        self._apply_config(body)
        # Enrolled: the key is accepted now, so the join proof is never sent again
        # (a key the operator deletes must come back only as pending).
        self.join = None
        self.online = True
        if self.on_welcome is not None:
            self.on_welcome()
        self._say(logging.INFO, f"connected to {self.address} as {self.name} (state {self.state})")
        self.work.welcomed()
        self.resend_unacked(time.monotonic(), every=0.0)
        return WELCOME

    def _on_heartbeat_ack(self, body: Body) -> Outcome:
        self._apply_config(body)
        return None

    def _on_config(self, body: Body) -> Outcome:
        self._apply_config(body)
        self._say(logging.INFO, f"state is now {self.state}")
        return None

    def _on_rehello(self, body: Body) -> Outcome:
        self.hello()
        return None

    def _on_revoked(self, body: Body) -> Outcome:
        self._say(logging.ERROR, f"the daemon revoked this agent: {body['reason']}")
        return CLOSE

    def _on_error(self, body: Body) -> Outcome:
        self._say(logging.ERROR, f"error[{body['code']}]: {body['message']}")
        return CLOSE if body["code"] == ErrorCode.KEY_NOT_ACCEPTED else None

    def _on_exec_run(self, body: Body) -> Outcome:
        """Admit a command once: a repeat gets the stored result, a refused one its reason."""
        task = body["task"]
        if task in self.running:
            return None
        if task in self.unacked:
            self.send("exec.result", self.unacked[task])
            return None
        error = refusal(
            self.state,
            Action.EXEC,
            self.name,
            allow_drained=bool(body.get("allow_drained")),
            by_agent=True,
        )
        if error is not None:
            now = time.time()
            result = {"task": task, "status": HostStatus.UNREACHABLE, "started": now, "ended": now}
            self.finish(task, {**result, "reason": error.message})
            return None
        self.running.add(task)
        self.work.start_exec(body)
        return None

    def _on_exec_result_ack(self, body: Body) -> Outcome:
        self.unacked.pop(body["task"], None)
        self.sent_at.pop(body["task"], None)
        return None


Route = Callable[[Session, Body], Outcome]

# The kinds the session itself answers, whatever the work behind it.
_CORE: dict[str, Route] = {
    "welcome": Session._on_welcome,
    "heartbeat.ack": Session._on_heartbeat_ack,
    "config": Session._on_config,
    "rehello": Session._on_rehello,
    "revoked": Session._on_revoked,
    "error": Session._on_error,
    "exec.run": Session._on_exec_run,
    "exec.result.ack": Session._on_exec_result_ack,
}
CORE_KINDS = frozenset(_CORE)


def _to_work(handler: WorkHandler) -> Route:
    def route(session: Session, body: Body) -> Outcome:
        handler(session.work, body)
        return None

    return route


@functools.cache
def dispatch_table(work_type: type) -> Mapping[str, Route]:
    """The one table from kind to handler: the core's kinds plus the work's.

    Built once per kind of work and checked then, so a handler for a kind
    that does not exist, that the daemon never sends to an agent, or that
    the core already answers stops the agent at start-up, not at the frame.
    """
    table = dict(_CORE)
    handlers: Mapping[str, WorkHandler] = work_type.HANDLERS  # type: ignore[attr-defined]
    for kind, handler in handlers.items():
        if kind not in protocol.KINDS:
            raise ValueError(f"no message kind {kind!r} in gdos/wire/protocol.py")
        if kind not in RECEIVES:
            raise ValueError(f"{kind!r} is not a kind the daemon sends to an agent")
        if kind in table:
            raise ValueError(f"{kind!r} is answered by the session core")
        table[kind] = _to_work(handler)
    return MappingProxyType(table)
