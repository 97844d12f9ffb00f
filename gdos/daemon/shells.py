"""Remote shell sessions: a control client's terminal relayed to a node's pty.

``shell.open`` records the session, asks the agent to start the program
(``pty.open``) and opens a stream to the client at once; everything the
agent says after that (opened, output, exit or refusal) reaches the client
on that stream, in order. A session ends on whichever side goes first: the
program exits (its status goes to the client and the store); the client
closes or disconnects (``pty.close``: the agent hangs up the process group);
the node goes offline or reconnects (the client hears the session is lost);
the idle timeout passes.

Output has credit on both legs: the agent has at most SHELL_OUTPUT_CREDIT
chunks in flight and is granted more only once the daemon has written
chunks to the client, whose stream credit throttles that write, so a slow
terminal slows the remote program and the daemon holds at most one window
per session. Input credit is end to end: the agent grants it as it writes
to the program, and the daemon passes it to the client unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gdos import cast
from gdos.daemon.config import DaemonConfig
from gdos.daemon.control import ControlConnection, Stream
from gdos.daemon.mesh import Mesh
from gdos.daemon.recording import SessionJournal
from gdos.daemon.recordings import Recordings
from gdos.daemon.registry import LiveNode, NodeRegistry
from gdos.daemon.store import Store
from gdos.errors import ErrorCode, GdosError
from gdos.model import Action, ShellStatus, refusal
from gdos.wire import protocol
from gdos.wire.flow import CreditRelay
from gdos.wire.protocol import Message

log = logging.getLogger("gdosd.shells")

OPEN_TIMEOUT = 15.0
MAX_WINDOW = 10_000
END = ("exit", "error")


@dataclass
class ShellSession:
    id: int
    node: str
    routing_id: bytes
    conn: ControlConnection
    stream: Stream
    request: dict[str, Any]
    relay: CreditRelay  # output chunks from the agent, until written to the client
    started: float = field(default_factory=time.time)
    status: str = ShellStatus.OPENING
    recorder: SessionJournal | None = None
    outbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    input_inflight: int = 0  # input chunks sent on that the agent has not granted back
    input_seq: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    last_activity: float = field(default_factory=time.monotonic)
    ended: bool = False
    early_input: list[bytes] = field(default_factory=list)  # typed before the recording began


class Shells:
    """Every live shell session of the daemon."""

    def __init__(
        self,
        config: DaemonConfig,
        store: Store,
        registry: NodeRegistry,
        mesh: Mesh,
        sessions_dir: Path,
    ) -> None:
        self.config, self.store, self.registry, self.mesh = config, store, registry, mesh
        self.live: dict[int, ShellSession] = {}
        self.recordings = Recordings(sessions_dir, store)
        mesh.handlers.register(
            {
                "pty.opened": self._on_opened,
                "pty.output": self._on_output,
                "pty.exit": self._on_exit,
                "pty.credit": self._on_input_credit,
            }
        )
        mesh.on_hello.append(self._on_hello)
        registry.on_offline.append(self._on_offline)
        stale = store.close_stale_shell_sessions("the daemon stopped during the session")
        if stale:
            log.info("%d shell session(s) of the previous run marked lost", stale)

    # -- client requests ------------------------------------------------------------
    def open(self, conn: ControlConnection, msg: Message, user: str) -> dict[str, Any]:
        body = msg.body
        if msg.id is None:
            raise GdosError(ErrorCode.BAD_MESSAGE, "shell.open needs a request id.")
        node = self.registry.get(body["node"])
        refused = refusal(node.state, Action.SHELL, node.name)
        if refused is not None:
            raise refused
        if not node.online or node.routing_id is None:
            raise GdosError(
                ErrorCode.NODE_OFFLINE,
                f"node {node.name} is offline; check 'gdos node show {node.name}'.",
            )
        request = _validated(body)
        session_id = self.store.create_shell_session(
            {
                "node": node.name,
                "user": user,
                "remote_user": request["user"],
                "argv": request["argv"],
                "cwd": request["cwd"],
                "tty": int(request["tty"]),
                "rows": request["rows"],
                "cols": request["cols"],
            }
        )
        stream = conn.open_stream(msg.id, protocol.SHELL_STREAM_CREDIT)
        session = ShellSession(
            session_id, node.name, node.routing_id, conn, stream, request, self._relay(session_id)
        )
        self.live[session_id] = session
        pty_open = {k: v for k, v in request.items() if k != "idle_timeout"}
        pty_open |= {"session": session_id, "credit": protocol.SHELL_OUTPUT_CREDIT}
        if not self.mesh.send(node, "pty.open", pty_open):
            conn.streams.pop(msg.id, None)
            self._finish(session, ShellStatus.FAILED, reason="node is not connected")
            raise GdosError(ErrorCode.NODE_OFFLINE, f"node {node.name} is not connected.")
        conn.spawn(self._pump(session))
        log.info("shell session %d: %s on %s", session_id, user, node.name)
        return {"session": session_id, "stream": msg.id}

    def _relay(self, session_id: int) -> CreditRelay:
        """The output credit of one session: granted back as the client takes output."""

        def grant(credit: int) -> None:
            session = self.live.get(session_id)
            if session is not None:
                body = {"session": session_id, "credit": credit}
                self.mesh.send_rid(session.routing_id, "pty.credit", body)

        return CreditRelay(protocol.SHELL_OUTPUT_CREDIT, grant)

    def _owned(self, conn: ControlConnection, body: dict[str, Any]) -> ShellSession | None:
        """The live session, if ``conn`` opened it (nobody types into another's shell)."""
        session = self.live.get(body["session"])
        return session if session is not None and session.conn is conn else None

    def input(self, conn: ControlConnection, body: dict[str, Any]) -> None:
        session = self._owned(conn, body)
        if session is None:
            return  # the session just ended; its stream says how
        data = body["data"]
        over = session.input_inflight >= protocol.SHELL_INPUT_CREDIT
        if over or len(data) > protocol.CHUNK_BYTES:
            log.warning("shell session %d: client sent input past its credit", session.id)
            self._close(session, ShellStatus.FAILED, "the client sent input past its credit")
            session.outbox.put_nowait(
                _error(ErrorCode.FLOW_VIOLATION, "input past its credit; session closed.")
            )
            return
        session.input_seq += 1
        session.input_inflight += 1
        session.bytes_in += len(data)
        session.last_activity = time.monotonic()
        if session.recorder is not None:
            session.recorder.input(data)
        else:
            session.early_input.append(data)  # at most one input window
        self.mesh.send_rid(
            session.routing_id,
            "pty.input",
            {"session": session.id, "seq": session.input_seq, "data": data},
        )

    def eof(self, conn: ControlConnection, body: dict[str, Any]) -> None:
        session = self._owned(conn, body)
        if session is not None:
            self.mesh.send_rid(session.routing_id, "pty.eof", {"session": session.id})

    def resize(self, conn: ControlConnection, body: dict[str, Any]) -> None:
        session = self._owned(conn, body)
        if session is None:
            return
        rows, cols = _window(body["rows"], body["cols"])
        if session.recorder is not None:
            session.recorder.resize(cols, rows)
        self.mesh.send_rid(
            session.routing_id, "pty.resize", {"session": session.id, "rows": rows, "cols": cols}
        )

    def close(self, conn: ControlConnection, body: dict[str, Any]) -> None:
        session = self._owned(conn, body)
        if session is not None:
            self._close(session, ShellStatus.CLOSED, "closed by the operator")
            session.outbox.put_nowait(
                {"type": "exit", "exit_code": None, "reason": "closed by the operator"}
            )

    async def _pump(self, session: ShellSession) -> None:
        """Write the session's events to its client; grant the agent output credit."""
        try:
            while True:
                event = await session.outbox.get()
                if event["type"] in END:
                    await session.stream.end(event)
                    return
                if not await session.stream.send(event):
                    return
                if event["type"] == "output":
                    session.relay.passed()
        finally:
            if not session.ended:
                self._close(session, ShellStatus.CLOSED, "the client left the session")

    # -- agent messages ---------------------------------------------------------------
    def _session(self, node: LiveNode, msg: Message) -> ShellSession | None:
        session = self.live.get(msg.body["session"])
        return session if session is not None and session.node == node.name else None

    def _on_opened(self, node: LiveNode, msg: Message) -> None:
        session = self._session(node, msg)
        if session is None:
            self.mesh.send(node, "pty.close", {"session": msg.body["session"]})
            return
        request = session.request
        shell = msg.body.get("shell") or ""
        head = cast.header(
            request["cols"],
            request["rows"],
            session.started,
            request.get("term") or "xterm",
            shell,
            title=f"{request['user'] or ''}@{node.name}".lstrip("@"),
            command=shlex.join(request["argv"]) if request["argv"] else None,
        )
        try:
            recorder = self.recordings.start(session.id, head, self.config.record_input)
        except OSError as exc:
            log.error("shell session %d: cannot record: %s", session.id, exc)
        else:
            for data in session.early_input:
                recorder.input(data)
            session.recorder = recorder
        session.early_input.clear()
        session.status = ShellStatus.RUNNING
        self.store.update_shell_session(session.id, {"status": ShellStatus.RUNNING})
        session.outbox.put_nowait({"type": "opened", "pid": msg.body["pid"], "shell": shell})

    def _on_output(self, node: LiveNode, msg: Message) -> None:
        session = self._session(node, msg)
        if session is None:
            self.mesh.send(node, "pty.close", {"session": msg.body["session"]})
            return
        if not session.relay.admit():
            log.warning("%s sent shell output past its credit; dropped", node.name)
            return
        data = msg.body["data"]
        stream = "stderr" if msg.body.get("stream") == "stderr" else "stdout"
        if session.recorder is not None:
            session.recorder.output(data, stream)
        session.bytes_out += len(data)
        session.last_activity = time.monotonic()
        session.outbox.put_nowait({"type": "output", "data": data, "stream": stream})

    def _on_exit(self, node: LiveNode, msg: Message) -> None:
        session = self._session(node, msg)
        if session is None:
            return
        body = msg.body
        reason = body.get("reason")
        if body.get("code"):
            message = f"{reason or 'refused'} (node {node.name})."
            self._finish(session, ShellStatus.REFUSED, reason=reason)
            session.outbox.put_nowait(_error(body["code"], message))
            return
        code = body.get("exit_code")
        self._finish(session, ShellStatus.EXITED, exit_code=code, reason=reason)
        session.outbox.put_nowait({"type": "exit", "exit_code": code, "reason": reason})

    def _on_input_credit(self, node: LiveNode, msg: Message) -> None:
        session = self._session(node, msg)
        if session is None:
            return
        credit = msg.body["credit"]
        session.input_inflight = max(0, session.input_inflight - credit)
        session.conn.spawn(
            session.conn.write("shell.credit", {"session": session.id, "credit": credit})
        )

    def _on_hello(self, node: LiveNode, msg: Message) -> None:
        """A node that connected again has dropped the sessions of its old connection."""
        for session in self._sessions_on(node.name):
            if session.routing_id != node.routing_id:
                self._lost(session, f"the agent on {node.name} reconnected")

    def _on_offline(self, node: LiveNode) -> None:
        for session in self._sessions_on(node.name):
            self.mesh.send_rid(session.routing_id, "pty.close", {"session": session.id})
            self._lost(session, f"node {node.name} went offline")

    def _sessions_on(self, name: str) -> list[ShellSession]:
        return [s for s in self.live.values() if s.node == name]

    def _lost(self, session: ShellSession, why: str) -> None:
        self._finish(session, ShellStatus.LOST, reason=why)
        session.outbox.put_nowait(
            _error(ErrorCode.SESSION_LOST, f"{why}; the shell session is over.")
        )

    # -- time limits and endings ------------------------------------------------------
    def sweep(self, now: float | None = None) -> None:
        """Close sessions past their idle timeout, or never started by the agent."""
        now = now or time.monotonic()
        for session in list(self.live.values()):
            idle = session.request.get("idle_timeout")
            if (
                session.status == ShellStatus.OPENING
                and time.time() - session.started > OPEN_TIMEOUT
            ):
                why = f"node {session.node} did not start the shell within {OPEN_TIMEOUT:g}s"
                self._close(session, ShellStatus.FAILED, why)
                session.outbox.put_nowait(_error(ErrorCode.NODE_OFFLINE, why + "."))
            elif idle and now - session.last_activity > idle:
                why = f"no input or output for {idle:g}s"
                self._close(session, ShellStatus.TIMED_OUT, why)
                session.outbox.put_nowait(
                    _error(ErrorCode.IDLE_TIMEOUT, f"{why}; the shell session was closed.")
                )

    def _close(self, session: ShellSession, status: str, reason: str) -> None:
        self.mesh.send_rid(
            session.routing_id, "pty.close", {"session": session.id, "reason": reason}
        )
        self._finish(session, status, reason=reason)

    def _finish(
        self,
        session: ShellSession,
        status: str,
        exit_code: int | None = None,
        reason: str | None = None,
    ) -> None:
        if session.ended:
            return
        session.ended, session.status = True, status
        session.relay.close()
        self.live.pop(session.id, None)
        if session.recorder is not None:
            session.recorder.close()
            self.recordings.finished(session.id)
        self.store.update_shell_session(
            session.id,
            {
                "status": status,
                "exit_code": exit_code,
                "reason": reason,
                "ended": time.time(),
                "bytes_in": session.bytes_in,
                "bytes_out": session.bytes_out,
            },
        )
        why = f" ({reason})" if reason else ""
        log.info("shell session %d on %s: %s%s", session.id, session.node, status, why)

    def close_all(self) -> None:
        """At shutdown: end every session; unconverted journals wait for the next start."""
        for session in list(self.live.values()):
            self._close(session, ShellStatus.LOST, "the daemon stopped")
        self.recordings.close()


def _error(code: ErrorCode | str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": str(code), "message": message}


def _window(rows: Any, cols: Any) -> tuple[int, int]:
    if not (1 <= rows <= MAX_WINDOW and 1 <= cols <= MAX_WINDOW):
        raise GdosError(ErrorCode.INVALID_ARGUMENT, "the window size must be 1 to 10000 cells.")
    return int(rows), int(cols)


def _validated(body: dict[str, Any]) -> dict[str, Any]:
    """The pty.open fields of a shell.open body, checked at the edge."""
    rows, cols = _window(body["rows"], body["cols"])
    argv = body.get("argv") or []
    texts = [*argv, body.get("user") or "", body.get("cwd") or "", body.get("term") or ""]
    if not all(isinstance(a, str) and a for a in argv) or any("\0" in t for t in texts):
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT, "the command, user, cwd and TERM must be plain strings."
        )
    idle = body.get("idle_timeout")
    if idle is not None and idle <= 0:
        raise GdosError(ErrorCode.INVALID_ARGUMENT, "--idle-timeout must be more than 0.")
    return {
        "rows": rows,
        "cols": cols,
        "tty": bool(body["tty"]),
        "argv": argv,
        "user": body.get("user") or None,
        "cwd": body.get("cwd") or None,
        "term": body.get("term") or "xterm",
        "idle_timeout": idle,
    }
