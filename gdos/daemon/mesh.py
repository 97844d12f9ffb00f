"""The mesh: one ROUTER socket that every agent's DEALER dials.

Each frame is ``[routing id, protocol frame]``. Frames are checked in order:
size (ZMQ_MAXMSGSIZE drops oversized ones before they reach us), the
sender's quota and authenticated key (an unaccepted key may send only a
small hello; anything else is dropped undecoded), decode, then the kind's
handler (gdos/daemon/handlers.py). A bad frame gets an ``error`` reply with a
stable code and is logged once per peer, code and interval; nothing a peer
sends can stop the loop.
Connection caps, quotas and log throttling live in gdos/daemon/guard.py.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from gdos.daemon.auth import PENDING_PREFIX, TOO_MANY, ZAP_DOMAIN, KeyRing
from gdos.daemon.config import DaemonConfig
from gdos.daemon.guard import (
    PENDING_QUOTA,
    ConnectionGuard,
    Quotas,
    Throttle,
    accepted_quota,
)
from gdos.daemon.handlers import Handlers
from gdos.daemon.registry import LiveNode, NodeRegistry
from gdos.daemon.storage import storage_failure
from gdos.errors import ErrorCode, GdosError
from gdos.identity.keys import KeyPair, fingerprint
from gdos.names import NAME_PATTERN
from gdos.wire import protocol
from gdos.wire.mesh_kinds import Hello
from gdos.wire.protocol import Message, ProtocolError

log = logging.getLogger("gdosd.mesh")

HelloHook = Callable[[LiveNode, Message], None]
RefusedHandler = Callable[[LiveNode, dict[str, Any], ProtocolError], None]

# Frames queued per connection: each direction has credit-based flow control,
# so these only bound what a misbehaving peer can make libzmq hold.
SNDHWM = 2_000
RCVHWM = 1_000
HANDSHAKE_IVL_MS = 10_000
YIELD_AFTER = 0.005  # seconds of back-to-back frames before other tasks get a turn


class Mesh:
    """Receives, authenticates and dispatches agent frames; sends to nodes."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        config: DaemonConfig,
        keypair: KeyPair | None,
        ring: KeyRing,
        registry: NodeRegistry,
        handlers: Handlers,
    ) -> None:
        self.config, self.ring, self.registry = config, ring, registry
        self.handlers = handlers  # the daemon's one table; mesh kinds answered from it
        # kind -> what to do when a session's frame of that kind fails its schema
        self.on_refused: dict[str, RefusedHandler] = {}
        self.on_hello: list[HelloHook] = []
        self.counters = {
            "frames_in": 0,
            "frames_out": 0,
            "bad_frames": 0,
            "dropped": 0,
            "over_quota": 0,
        }
        self.quotas = Quotas()
        self._accepted_quota = accepted_quota(config.peer_quota_mb)
        self._throttle = Throttle()
        self.fds: dict[int, bytes] = {}  # socket fd -> routing id of its session (departures.py)
        self.socket = ctx.socket(zmq.ROUTER)
        self._configure(keypair)
        self.guard = ConnectionGuard(
            self.socket, config.max_handshakes, config.max_connections, HANDSHAKE_IVL_MS / 1000
        )

    def _configure(self, keypair: KeyPair | None) -> None:
        s = self.socket
        s.linger = 0
        s.setsockopt(zmq.ROUTER_MANDATORY, 1)
        s.setsockopt(zmq.MAXMSGSIZE, protocol.MESH_FRAME_BYTES)
        s.setsockopt(zmq.SNDHWM, SNDHWM)
        s.setsockopt(zmq.RCVHWM, RCVHWM)
        s.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)
        s.setsockopt(zmq.HEARTBEAT_IVL, 10_000)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 30_000)
        s.setsockopt(zmq.BACKLOG, 1024)
        if keypair is not None:
            s.curve_server = True
            s.curve_secretkey = keypair.secret
            s.curve_publickey = keypair.public
            s.zap_domain = ZAP_DOMAIN.encode()

    def bind(self, max_connections: int | None = None) -> str:
        """Bind the ROUTER; ``max_connections`` caps open connections (fds).

        A busy port or an unusable address is a one-line GdosError.
        """
        if max_connections is not None:
            self.guard.max_connections = max_connections
        address = self.config.mesh_bind
        try:
            self.socket.bind(address)
        except zmq.ZMQError as exc:
            port = address.rpartition(":")[2]
            if exc.errno == errno.EADDRINUSE:
                raise GdosError(
                    ErrorCode.ADDRESS_IN_USE,
                    f"port {port} is already in use ({address}); stop what listens there "
                    "or give another --mesh.",
                ) from None
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT, f"cannot listen on --mesh {address}: {exc}."
            ) from None
        endpoint = str(self.socket.getsockopt_string(zmq.LAST_ENDPOINT))
        self.guard.port = int(endpoint.rsplit(":", 1)[1])
        return endpoint

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        since_yield = loop.time()
        while True:
            # A receive that finds a frame waiting does not yield; under a flood
            # the loop would never run the control socket or the sweeper.
            if loop.time() - since_yield > YIELD_AFTER:
                await asyncio.sleep(0)
                since_yield = loop.time()
            frames = await self.socket.recv_multipart(copy=False)
            self.counters["frames_in"] += 1
            try:
                self._receive(frames)
            except Exception as exc:  # a handler bug must not stop the mesh
                self._failed(frames[0].bytes, exc)

    # -- receiving ----------------------------------------------------------
    def _receive(self, frames: list[zmq.Frame]) -> None:
        rid = frames[0].bytes
        payload = frames[-1]
        user_id = None if self.config.insecure else str(payload.get("User-Id"))
        if user_id is not None and user_id.startswith(PENDING_PREFIX):
            # A connection that enrolled (token or accept) keeps its handshake
            # User-Id for life; once its key is accepted it is a normal session.
            key = user_id[len(PENDING_PREFIX) :]
            user_id = key if key in self.ring.accepted else user_id
        if not self._admit(rid, user_id, sum(len(f) for f in frames[1:])):
            return
        if len(frames) != 2:
            self._refuse(rid, ProtocolError(ErrorCode.BAD_FRAME, "expected exactly one frame."))
            return
        try:
            msg = protocol.decode(payload.bytes, protocol.MESH_FRAME_BYTES)
        except ProtocolError as exc:
            self._refuse(rid, exc)
            self._refused_body(rid, user_id, exc)
            return
        if msg.kind not in protocol.AGENT_SENDS:
            self._refuse(
                rid,
                ProtocolError(ErrorCode.UNKNOWN_KIND, f"{msg.kind!r} is not sent by agents."),
                msg.id,
            )
            return
        if user_id is not None and user_id.startswith(PENDING_PREFIX):
            self._provisional(rid, user_id[len(PENDING_PREFIX) :], msg, payload)
        elif msg.kind == "hello":
            self._hello(rid, user_id, msg, payload)
        else:
            self._session_message(rid, user_id, msg)

    def _refused_body(self, rid: bytes, user_id: str | None, exc: ProtocolError) -> None:
        """A session's frame refused by its kind's schema: the kind's owner may still
        have to close what it was about (a refused exec result fails that host alone)."""
        hook = self.on_refused.get(exc.kind or "")
        node = self.registry.session(rid)
        if hook is None or exc.body is None or node is None:
            return
        if user_id is not None and node.key != user_id:
            return
        hook(node, exc.body, exc)

    def _admit(self, rid: bytes, user_id: str | None, size: int) -> bool:
        """Quota and size checks before anything is decoded: False drops the frame.

        An unaccepted key may only say a small hello; everyone has a byte and
        frame budget, so one peer's flood costs others nothing.
        """
        pending = user_id is not None and user_id.startswith(PENDING_PREFIX)
        if pending and size > protocol.HELLO_MAX_BYTES:
            self._drop(rid, "oversized frame from a key that is not accepted")
            return False
        identity = user_id if user_id is not None else protocol.routing_name(rid)
        limits = PENDING_QUOTA if pending else self._accepted_quota
        if not self.quotas.allow(identity, size, limits):
            self.counters["over_quota"] += 1
            self._drop(rid, "frames over the peer's quota")
            return False
        return True

    def _failed(self, rid: bytes, exc: Exception) -> None:
        """A full disk is answered (the peer asks again later); a bug is logged.

        Both are logged once per interval with a count, like refusals.
        """
        failure = storage_failure(exc, self.registry.store.path)
        if failure is None:
            held = self._throttle.check(("exception", type(exc).__name__))
            if held is not None:
                log.error("handling a mesh frame failed (%d more held back)", held, exc_info=exc)
            return
        held = self._throttle.check((protocol.routing_name(rid), str(failure.code)))
        if held is not None:
            log.error("mesh frame from %r: %s (%d more held back)", rid[:64], failure, held)
        self.send_rid(rid, "error", failure.to_body())

    def _session_message(self, rid: bytes, user_id: str | None, msg: Message) -> None:
        node = self.registry.session(rid)
        if node is None or (user_id is not None and node.key != user_id):
            # Not (or no longer) a session of this daemon: ask for a hello.
            if user_id is None or user_id in self.ring.accepted:
                self.send_rid(rid, "rehello", {})
            else:
                self._drop(rid, "frame from a key that is no longer accepted")
            return
        self.registry.touch(node)
        handler = self.handlers.mesh.get(msg.kind)
        if handler is not None:
            try:
                handler(node, msg)
            except ProtocolError as exc:  # a handler's own limit or check
                self._refuse(rid, exc, msg.id)

    def _hello(
        self, rid: bytes, user_id: str | None, msg: Message[Hello], payload: zmq.Frame
    ) -> None:
        name = msg.body["name"]
        if not NAME_PATTERN.match(name) or protocol.routing_name(rid) != name:
            self._refuse(
                rid,
                ProtocolError(
                    ErrorCode.BAD_MESSAGE,
                    f"hello name {name!r} is invalid or differs from the routing id.",
                ),
            )
            return
        if user_id is not None and self.ring.accepted.get(user_id) != name:
            self._refuse(
                rid,
                ProtocolError(
                    ErrorCode.KEY_NOT_ACCEPTED, f"this key is not accepted for node {name!r}."
                ),
            )
            return
        address = _peer_address(payload)
        node = self.registry.register(
            name, rid, user_id, msg.body["version"], msg.body["facts"], address
        )
        self.fds[_source_fd(payload)] = rid
        self.send(node, "welcome", {"config": self.config.agent_config(), "state": node.state})
        log.info("node %s online from %s (agent %s)", name, address, msg.body["version"])
        for hook in self.on_hello:
            hook(node, msg)

    def _provisional(self, rid: bytes, key: str, msg: Message[Hello], payload: zmq.Frame) -> None:
        if msg.kind != "hello":
            self._drop(rid, "frame from a key that is not accepted")
            return
        name = msg.body["name"]
        if not NAME_PATTERN.match(name) or protocol.routing_name(rid) != name:
            self._refuse(rid, ProtocolError(ErrorCode.BAD_MESSAGE, f"invalid node name {name!r}."))
            return
        join = msg.body.get("join")
        admission = self.ring.admit(key, name, _peer_address(payload), join)
        if admission.accepted:
            self._hello(rid, key, msg, payload)
            return
        level = logging.DEBUG if admission.reason == TOO_MANY else logging.INFO  # a flood
        log.log(level, "key %s of %s not accepted: %s", fingerprint(key), name, admission.reason)
        self.send_rid(
            rid,
            "error",
            {
                "code": str(ErrorCode.KEY_NOT_ACCEPTED),
                "message": f"key {fingerprint(key)} of {name} is not accepted "
                f"({admission.reason}); on the daemon run "
                f"'gdos key accept {fingerprint(key)}'.",
            },
        )

    def _refuse(self, rid: bytes, exc: ProtocolError, re: int | None = None) -> None:
        self.counters["bad_frames"] += 1
        held = self._throttle.check((protocol.routing_name(rid), str(exc.code)))
        if held is not None:
            log.warning("refused frame from %r: %s (%d more held back)", rid[:64], exc, held)
        self.send_rid(rid, "error", exc.to_body(), re=re)

    def _drop(self, rid: bytes, why: str) -> None:
        self.counters["dropped"] += 1
        held = self._throttle.check((protocol.routing_name(rid), why))
        if held is not None:
            log.warning("dropped %s (routing id %r; %d more held back)", why, rid[:64], held)

    def stats(self) -> dict[str, int]:
        """Frame counters and connection figures, for ``gdos daemon status --json``."""
        counts = self.guard.counts
        return {
            **self.counters,
            "connections_open": len(counts.open_fds),
            "connections_handshaking": counts.handshaking,
            "connections_refused": counts.refused,
        }

    # -- sending ------------------------------------------------------------
    def send(self, node: LiveNode, kind: str, body: dict[str, Any]) -> bool:
        """Send to a node's current connection; False when it cannot take it now."""
        if node.routing_id is None:
            return False
        return self.send_rid(node.routing_id, kind, body)

    def send_rid(self, rid: bytes, kind: str, body: dict[str, Any], re: int | None = None) -> bool:
        data = protocol.encode(kind, body, re=re)
        future: Any = self.socket.send_multipart([rid, data], flags=zmq.DONTWAIT, copy=False)
        error = future.exception() if future.done() else None
        if error is not None:
            # EHOSTUNREACH: not connected (ROUTER_MANDATORY); EAGAIN: peer queue full.
            self.counters["dropped"] += 1
            return False
        self.counters["frames_out"] += 1
        return True

    def close(self) -> None:
        self.guard.close()
        self.socket.close(linger=0)


def _peer_address(frame: zmq.Frame) -> str:
    try:
        return str(frame.get("Peer-Address"))
    except Exception:
        return ""


def _source_fd(frame: zmq.Frame) -> int:
    """The descriptor of the TCP connection the frame came in on (ZMQ_SRCFD)."""
    try:
        return int(frame.get(zmq.SRCFD))
    except Exception:
        return -1
