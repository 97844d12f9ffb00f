"""The agent's link to the daemon: one DEALER socket, redialled with backoff.

A session starts with ``hello`` (facts, and a join-token proof while
enrolling) and lives while the daemon answers. Heartbeats and metrics go out
on the intervals the daemon pushes. When the link is lost (disconnect event,
no answer for too long, refused key) the socket is closed and dialled again
after an exponential backoff with jitter. Exec results are kept until the
daemon acknowledges them (it does once they are stored), sent again after
every reconnect and every RESEND_AFTER seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from gdos.agent.executor import ExecRun
from gdos.agent.logs import DEFAULT_ROOTS, LogAccess, LogStreams
from gdos.agent.metrics import MetricsSampler
from gdos.agent.services import ServiceHost
from gdos.agent.shells import ShellSessions
from zmq.utils.monitor import parse_monitor_message

from gdos import __version__, protocol
from gdos.dialing import backoff_delay
from gdos.errors import ErrorCode
from gdos.keys import KeyPair, fingerprint
from gdos.metric_catalog import MetricSample
from gdos.protocol import Message, ProtocolError
from gdos.tokens import JoinToken, proof

log = logging.getLogger("gdos.agent")

_MONITOR_IDS = itertools.count(1)
HELLO_TIMEOUT = 5.0  # to connect and finish the handshake; then to wait for a welcome
HELLO_TIMEOUT_MAX = 30.0  # a busy daemon (thousands enrolling) is asked again, not redialled
SILENCE_FACTOR = 3.0
MIN_SILENCE = 10.0
BYE_LINGER_MS = 1000  # at most this long at exit to get the goodbye out
RESEND_AFTER = 30.0  # an unacknowledged result is sent again after this
END_RUNS_WAIT = 5.0  # at exit, for running commands to be killed and their results sent


# Within the exec.result schema (gdos/node_data.py ERROR_TEXT), with room to spare.
MAX_REASON = 4096


@dataclass
class LinkConfig:
    name: str
    address: str
    server_key: str | None  # None: --insecure
    keypair: KeyPair | None
    state_dir: Path
    token: JoinToken | None = None  # sent until the first welcome: a join proof is used once
    on_welcome: Callable[[], None] | None = None  # remembers the enrolled name (enrollment.py)
    backoff_base: float = 0.5
    service_log_bytes: int = 10 * 1024 * 1024
    service_log_keep: int = 5
    backoff_max: float = 30.0
    log_roots: tuple[Path, ...] = DEFAULT_ROOTS  # --log-root: folders `gdos logs --path` may read


class Link:
    def __init__(self, config: LinkConfig, facts: dict[str, Any]) -> None:
        self.config, self.facts = config, facts
        self.ctx = zmq.asyncio.Context()
        self.socket: zmq.asyncio.Socket | None = None
        self.sampler = MetricsSampler()
        self.heartbeat_interval, self.metrics_interval = 15.0, 5.0
        self.state = "normal"
        self.runs: dict[int, ExecRun] = {}
        self.unacked: dict[int, dict[str, Any]] = {}
        self.sent_at: dict[int, float] = {}  # task -> when its result was last sent (monotonic)
        self.started = time.time()
        self._last_refusal = ""
        self._stop = asyncio.Event()
        self._background: set[asyncio.Future[Any]] = set()
        self.shells = ShellSessions(self._send, self._spawn)
        self.services = ServiceHost(
            config.state_dir,
            self._send,
            self._spawn,
            log_max_bytes=config.service_log_bytes,
            log_backups=config.service_log_keep,
            log_roots=config.log_roots,
        )
        self.logs = LogStreams(self._send, LogAccess(config.log_roots, self.services.supervisor))

    # -- outer loop -----------------------------------------------------------
    async def run(self) -> None:
        await self.services.recover()
        attempt = 0
        while not self._stop.is_set():
            try:
                welcomed = await self._session()
            except (zmq.ZMQError, OSError):  # a socket that could not be made: try again later
                log.exception("connection attempt to %s failed", self.config.address)
                welcomed = False
            self.shells.close_all("the agent lost its connection to the daemon")
            self.logs.close_all()
            self.services.link_lost()
            attempt = 0 if welcomed else attempt + 1
            delay = backoff_delay(attempt, self.config.backoff_base, self.config.backoff_max)
            log.debug("redialling in %.2fs", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        for run in list(self.runs.values()):
            await run.cancel()
        await self.services.close()  # services keep running without the agent
        # The closed DEALER keeps its own linger: term waits up to BYE_LINGER_MS for the bye.
        self.ctx.destroy(linger=0)

    def stop(self) -> None:
        self._stop.set()

    def _spawn(self, coro: Any) -> None:
        """Run ``coro`` in the background, keeping a reference until it ends."""
        future = asyncio.ensure_future(coro)
        self._background.add(future)
        future.add_done_callback(self._background.discard)

    def _make_socket(self) -> zmq.asyncio.Socket:
        s = self.ctx.socket(zmq.DEALER)
        s.linger = 0
        s.routing_id = protocol.routing_id(self.config.name)
        s.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES + 4096)
        s.setsockopt(zmq.SNDHWM, 10_000)
        s.setsockopt(zmq.RECONNECT_IVL, 200)
        s.setsockopt(zmq.HEARTBEAT_IVL, 10_000)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 30_000)
        if self.config.keypair is not None and self.config.server_key:
            s.curve_serverkey = self.config.server_key.encode()
            s.curve_publickey = self.config.keypair.public
            s.curve_secretkey = self.config.keypair.secret
        return s

    async def _session(self) -> bool:
        """One connection; returns True when the daemon welcomed us."""
        sock = self.socket = self._make_socket()
        monitor: zmq.asyncio.Socket | None = None
        try:
            # pyzmq names a monitor after the socket's descriptor, which the next
            # socket reuses while the old monitor may still be closing: use our own.
            monitor = sock.get_monitor_socket(
                addr=f"inproc://gdos-link-monitor-{next(_MONITOR_IDS)}",
                events=zmq.EVENT_HANDSHAKE_SUCCEEDED
                | zmq.EVENT_DISCONNECTED
                | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
            )
            sock.connect(self.config.address)
            # the hello goes out once the handshake succeeds (see _converse)
            return await self._converse(sock, monitor)
        finally:
            if monitor is not None:
                sock.disable_monitor()
                monitor.close(linger=0)
            # Stopping: linger so the goodbye leaves before the context ends.
            sock.close(linger=BYE_LINGER_MS if self._stop.is_set() else 0)
            self.socket = None

    async def _converse(self, sock: zmq.asyncio.Socket, monitor: zmq.asyncio.Socket) -> bool:
        welcomed = linked = False
        last_rx = time.monotonic()
        hello_wait = HELLO_TIMEOUT
        hello_deadline = last_rx + hello_wait
        next_hb = next_metrics = 0.0
        recv = asyncio.ensure_future(sock.recv())
        event = asyncio.ensure_future(monitor.recv_multipart())
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if not welcomed and now > hello_deadline:
                    if not linked:
                        log.warning(
                            "could not reach %s within %.0fs", self.config.address, hello_wait
                        )
                        return False
                    # Connected but not answered: the daemon is busy. Redialling would
                    # only add to its queue; ask again on this connection, waiting longer.
                    hello_wait = min(hello_wait * 2, HELLO_TIMEOUT_MAX)
                    log.info("no welcome yet from %s; asking again", self.config.address)
                    self._send("hello", self._hello_body())
                    hello_deadline = now + hello_wait
                silence = max(MIN_SILENCE, SILENCE_FACTOR * self.heartbeat_interval)
                if welcomed and now - last_rx > silence:
                    log.warning("daemon silent for %.0fs; reconnecting", now - last_rx)
                    return True
                if welcomed and now >= next_hb:
                    self._send("heartbeat", {"uptime": time.time() - self.started})
                    self._resend_unacked(now)
                    next_hb = now + self.heartbeat_interval
                if welcomed and now >= next_metrics:
                    self._send("metrics", {"sample": self._metrics_sample()})
                    next_metrics = now + self.metrics_interval
                wake = (
                    min(t for t in (next_hb, next_metrics, hello_deadline) if t > now)
                    if not welcomed
                    else min(next_hb, next_metrics)
                )
                done, _ = await asyncio.wait(
                    {recv, event, stopping},
                    timeout=max(0.05, wake - now),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if event in done:
                    outcome = self._link_event(event.result())
                    if outcome == "over":
                        return welcomed
                    if outcome == "linked" and not welcomed:
                        linked = True
                        self._send("hello", self._hello_body())
                        hello_deadline = time.monotonic() + hello_wait
                    event = asyncio.ensure_future(monitor.recv_multipart())
                if recv in done:
                    last_rx = time.monotonic()
                    result = self._receive(recv.result())
                    recv = asyncio.ensure_future(sock.recv())
                    if result == "welcome":
                        welcomed, next_hb, next_metrics = True, 0.0, 0.0
                        self._after_welcome()
                    elif result == "close":
                        return welcomed
        finally:
            for future in (recv, event, stopping):
                future.cancel()
        if welcomed:  # stopping: results of the commands we end, then goodbye
            await self._end_runs()
            self._send("bye", {"reason": "the agent is stopping"})
        return welcomed

    async def _end_runs(self) -> None:
        """Cancel running commands and wait (bounded) until their results are sent."""
        for run in list(self.runs.values()):
            self._spawn(run.cancel())
        deadline = time.monotonic() + END_RUNS_WAIT
        while self.runs and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def _link_event(self, frames: list[bytes]) -> str:
        """'linked' once the handshake is done, 'over' when the connection is lost."""
        info = parse_monitor_message(frames)
        kind = info["event"]
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            return "linked"
        if kind == zmq.EVENT_DISCONNECTED:
            log.info("disconnected from %s", self.config.address)
            return "over"
        if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self._refused(
                "the daemon refused this agent's key (pending or rejected); "
                f"on the daemon run 'gdos key accept {self._fingerprint()}'"
            )
            return "over"
        self._refused(
            "handshake with the daemon failed: check the daemon key, and that "
            "--insecure is given on both sides or neither"
        )
        return "over"

    def _fingerprint(self) -> str:
        keypair = self.config.keypair
        return fingerprint(keypair.public) if keypair is not None else self.config.name

    def _refused(self, text: str) -> None:
        if text != self._last_refusal:
            log.error("error[%s]: %s", ErrorCode.KEY_NOT_ACCEPTED, text)
            self._last_refusal = text

    # -- messages ---------------------------------------------------------------
    def _hello_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.config.name,
            "version": __version__,
            "facts": self.facts,
        }
        token, keypair = self.config.token, self.config.keypair
        if token is not None and keypair is not None:
            body["join"] = {"token": token.token_id, "proof": proof(token.secret, keypair.public)}
        return body

    def _after_welcome(self) -> None:
        self._last_refusal = ""
        for run in self.runs.values():
            run.reset_credit()
        self._resend_unacked(time.monotonic(), every=0.0)
        self.services.welcomed()

    def _metrics_sample(self) -> MetricSample:
        """The node's load plus each instance's (agent/metrics.py)."""
        return self.sampler.sample(self.services.supervisor.snapshot())

    def _send(self, kind: str, body: dict[str, Any]) -> None:
        if self.socket is None:
            return
        try:
            data = protocol.encode(kind, body)
        except ProtocolError as exc:  # a value outside the schema: the daemon would refuse it
            log.error("not sending %s: %s", kind, exc)
            return
        future: Any = self.socket.send(data, flags=zmq.DONTWAIT, copy=False)
        if future.done() and future.exception() is not None:
            log.debug("could not send %s now", kind)

    def _receive(self, data: bytes) -> str | None:
        try:
            msg = protocol.decode(data)
        except ProtocolError as exc:
            log.warning("bad frame from the daemon: %s", exc)
            return None
        handler = getattr(self, "_on_" + msg.kind.replace(".", "_"), None)
        if handler is None:
            log.warning("unexpected %s from the daemon", msg.kind)
            return None
        result: str | None = handler(msg)
        return result

    def _apply_config(self, msg: Message) -> None:
        config = msg.body["config"]
        self.heartbeat_interval = protocol.pushed_interval(config.get("heartbeat_interval"), 15.0)
        self.metrics_interval = protocol.pushed_interval(config.get("metrics_interval"), 5.0)
        self.state = msg.body["state"]
        self.services.set_node_state(self.state)

    def _on_welcome(self, msg: Message) -> str:
        self._apply_config(msg)
        # Enrolled: the key is accepted now, so the join proof is never sent again
        # (a key the operator deletes must come back only as pending).
        self.config.token = None
        if self.config.on_welcome is not None:
            self.config.on_welcome()
        log.info(
            "connected to %s as %s (state %s)", self.config.address, self.config.name, self.state
        )
        return "welcome"

    def _on_heartbeat_ack(self, msg: Message) -> None:
        self._apply_config(msg)

    def _on_config(self, msg: Message) -> None:
        self._apply_config(msg)
        log.info("state is now %s", self.state)

    def _on_rehello(self, msg: Message) -> None:
        self._send("hello", self._hello_body())

    def _on_revoked(self, msg: Message) -> str:
        log.error("the daemon revoked this agent: %s", msg.body["reason"])
        return "close"

    def _on_error(self, msg: Message) -> str | None:
        log.error("error[%s]: %s", msg.body["code"], msg.body["message"])
        return "close" if msg.body["code"] == ErrorCode.KEY_NOT_ACCEPTED else None

    def _on_exec_run(self, msg: Message) -> None:
        body = msg.body
        refusal = self._refusal(bool(body.get("allow_drained")))
        if refusal or body["task"] in self.runs:
            if refusal:
                now = time.time()
                self._finish(
                    body["task"],
                    {
                        "task": body["task"],
                        "status": "unreachable",
                        "started": now,
                        "ended": now,
                        "reason": refusal,
                    },
                )
            return
        run = ExecRun(body, self._send)
        self.runs[run.task_id] = run
        self._spawn(self._execute(run))

    def _refusal(self, allow_drained: bool) -> str | None:
        if self.state == "disabled":
            return "node is disabled; the agent refuses work"
        if self.state == "maintenance" and not allow_drained:
            return "node is in maintenance; the agent takes no new work"
        return None

    async def _execute(self, run: ExecRun) -> None:
        try:
            result = await run.run()
        except Exception as exc:  # the agent must answer whatever happens
            log.exception("exec of task %d failed", run.task_id)
            now = time.time()
            result = {
                "task": run.task_id,
                "status": "failed",
                "started": run.started,
                "ended": now,
                "reason": f"agent error: {exc}",
            }
        if self._stop.is_set() and result.get("status") == "canceled":
            result["reason"] = "the agent was stopped while the command ran; process group killed"
        self.runs.pop(run.task_id, None)
        self._finish(run.task_id, result)

    def _finish(self, task_id: int, result: dict[str, Any]) -> None:
        reason = result.get("reason")
        if isinstance(reason, str) and len(reason) > MAX_REASON:  # e.g. a huge argv[0]
            result["reason"] = reason[: MAX_REASON - 1] + "…"
        self.unacked[task_id] = result
        self.sent_at[task_id] = time.monotonic()
        self._send("exec.result", result)

    def _resend_unacked(self, now: float, every: float = RESEND_AFTER) -> None:
        """Send again results not acknowledged for ``every`` seconds.

        The daemon acknowledges only what it stored; one that could not
        store a result (full disk, over its memory budget) gets it again.
        """
        for task_id, body in self.unacked.items():
            if now - self.sent_at.get(task_id, 0.0) >= every:
                self.sent_at[task_id] = now
                self._send("exec.result", body)

    def _on_exec_cancel(self, msg: Message) -> None:
        run = self.runs.get(msg.body["task"])
        if run is not None:
            self._spawn(run.cancel())

    def _on_exec_credit(self, msg: Message) -> None:
        run = self.runs.get(msg.body["task"])
        if run is not None:
            run.window.grant(msg.body["credit"])

    def _on_exec_result_ack(self, msg: Message) -> None:
        self.unacked.pop(msg.body["task"], None)
        self.sent_at.pop(msg.body["task"], None)

    # -- remote shell (agent/shells.py) -----------------------------------------
    def _on_pty_open(self, msg: Message) -> None:
        self.shells.open(msg.body, self.state)

    def _on_pty_input(self, msg: Message) -> None:
        self.shells.input(msg.body)

    def _on_pty_eof(self, msg: Message) -> None:
        self.shells.eof(msg.body)

    def _on_pty_resize(self, msg: Message) -> None:
        self.shells.resize(msg.body)

    def _on_pty_credit(self, msg: Message) -> None:
        self.shells.credit(msg.body)

    def _on_pty_close(self, msg: Message) -> None:
        self.shells.close(msg.body)

    # -- services and packages (agent/services.py) -------------------------------
    def _on_svc_deploy(self, msg: Message) -> None:
        self.services.on_deploy(msg.body)

    def _on_svc_action(self, msg: Message) -> None:
        self.services.on_action(msg.body)

    def _on_svc_adopt(self, msg: Message) -> None:
        self.services.on_adopt(msg.body)

    def _on_svc_done_ack(self, msg: Message) -> None:
        self.services.on_done_ack(msg.body)

    def _on_svc_state_ack(self, msg: Message) -> None:
        self.services.on_state_ack(msg.body)

    def _on_pkg_chunk(self, msg: Message) -> None:
        self.services.cache.on_chunk(msg.body)

    def _on_pkg_error(self, msg: Message) -> None:
        self.services.cache.on_error(msg.body)

    # -- logs (agent/logs.py) -------------------------------------------------------
    def _on_log_open(self, msg: Message) -> None:
        self.logs.open(msg.body)

    def _on_log_credit(self, msg: Message) -> None:
        self.logs.credit(msg.body)

    def _on_log_close(self, msg: Message) -> None:
        self.logs.close(msg.body)
