"""The agent's transport to the daemon: one DEALER socket, redialled with backoff.

Everything said on the link is the session core's (agent/session.py: hello,
welcome and config, exec results kept until acknowledged, the dispatch
table), and the work behind it is agent/work.py's; this module only dials,
watches the connection, times heartbeats and metrics on the intervals the
daemon pushes, and redials. When the link is lost (disconnect event, no
answer for too long, refused key) the socket is closed and dialled again
after an exponential backoff with jitter.
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
from gdos.agent.logs import DEFAULT_ROOTS
from gdos.agent.session import (
    BACKOFF_BASE,
    BYE_LINGER_MS,
    CLOSE,
    HELLO_TIMEOUT,
    WELCOME,
    Session,
)
from gdos.agent.work import AgentWork
from zmq.utils.monitor import parse_monitor_message

from gdos.errors import ErrorCode
from gdos.identity.keys import KeyPair, fingerprint
from gdos.identity.tokens import JoinToken
from gdos.wire import protocol
from gdos.wire.dialing import backoff_delay, configure_dealer
from gdos.wire.protocol import ProtocolError

log = logging.getLogger("gdos.agent")

_MONITOR_IDS = itertools.count(1)
END_RUNS_WAIT = 5.0  # at exit, for running commands to be killed and their results sent


@dataclass
class LinkConfig:
    name: str
    address: str
    server_key: str | None  # None: --insecure
    keypair: KeyPair | None
    state_dir: Path
    token: JoinToken | None = None  # sent until the first welcome: a join proof is used once
    on_welcome: Callable[[], None] | None = None  # remembers the enrolled name (enrollment.py)
    backoff_base: float = BACKOFF_BASE
    service_log_bytes: int = 10 * 1024 * 1024
    service_log_keep: int = 5
    backoff_max: float = 30.0
    log_roots: tuple[Path, ...] = DEFAULT_ROOTS  # --log-root: folders `gdos logs --path` may read


class Link:
    """Dials the daemon and carries the session's frames; owns nothing said on them."""

    def __init__(self, config: LinkConfig, facts: dict[str, Any]) -> None:
        self.config = config
        self.ctx = zmq.asyncio.Context()
        self.socket: zmq.asyncio.Socket | None = None
        self._last_refusal = ""
        self._stop = asyncio.Event()
        self._background: set[asyncio.Future[Any]] = set()
        self.work = AgentWork(
            config.state_dir,
            self._send,
            self._spawn,
            self._finish,
            log_max_bytes=config.service_log_bytes,
            log_backups=config.service_log_keep,
            log_roots=config.log_roots,
        )
        keypair = config.keypair
        self.session = Session(
            config.name,
            lambda: facts,
            self._send,
            self.work,
            token=config.token,
            public_key=keypair.public if keypair is not None else None,
            on_welcome=config.on_welcome,
            address=config.address,
        )

    # -- outer loop -----------------------------------------------------------
    async def run(self) -> None:
        await self.work.services.recover()
        attempt = 0
        while not self._stop.is_set():
            try:
                welcomed = await self._connection()
            except (zmq.ZMQError, OSError):  # a socket that could not be made: try again later
                log.exception("connection attempt to %s failed", self.config.address)
                welcomed = False
            self.session.lost()
            self.work.link_lost()
            attempt = 0 if welcomed else attempt + 1
            delay = backoff_delay(attempt, self.config.backoff_base, self.config.backoff_max)
            log.debug("redialling in %.2fs", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        await self.work.execs.kill_all()
        await self.work.services.close()  # services keep running without the agent
        # The closed DEALER keeps its own linger: term waits up to BYE_LINGER_MS for the bye.
        self.ctx.destroy(linger=0)

    def stop(self) -> None:
        self._stop.set()

    def _spawn(self, coro: Any) -> None:
        """Run ``coro`` in the background, keeping a reference until it ends."""
        future = asyncio.ensure_future(coro)
        self._background.add(future)
        future.add_done_callback(self._background.discard)

    def _finish(self, task: int, result: dict[str, Any]) -> None:
        self.session.finish(task, result)

    def _make_socket(self) -> zmq.asyncio.Socket:
        sock = self.ctx.socket(zmq.DEALER)
        keypair, server_key = self.config.keypair, self.config.server_key
        curve = (server_key, keypair.public, keypair.secret) if keypair and server_key else None
        configure_dealer(sock, self.config.name, sndhwm=10_000, curve=curve)
        return sock

    async def _connection(self) -> bool:
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
        session = self.session
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
                    hello_wait = session.next_hello_wait(hello_wait)
                    log.info("no welcome yet from %s; asking again", self.config.address)
                    session.hello()
                    hello_deadline = now + hello_wait
                if welcomed and session.silent_too_long(now, last_rx):
                    log.warning("daemon silent for %.0fs; reconnecting", now - last_rx)
                    return True
                if welcomed and now >= next_hb:
                    session.heartbeat(now)
                    next_hb = now + session.heartbeat_interval
                if welcomed and now >= next_metrics:
                    self._send("metrics", {"sample": self.work.metrics_sample()})
                    next_metrics = now + session.metrics_interval
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
                        session.hello()
                        hello_deadline = time.monotonic() + hello_wait
                    event = asyncio.ensure_future(monitor.recv_multipart())
                if recv in done:
                    last_rx = time.monotonic()
                    result = session.receive(recv.result())
                    recv = asyncio.ensure_future(sock.recv())
                    if result == WELCOME:
                        welcomed, next_hb, next_metrics = True, 0.0, 0.0
                        self._last_refusal = ""
                    elif result == CLOSE:
                        return welcomed
        finally:
            for future in (recv, event, stopping):
                future.cancel()
        if welcomed:  # stopping: results of the commands we end, then goodbye
            await self.work.execs.end(END_RUNS_WAIT)
            session.bye()
        return welcomed

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
