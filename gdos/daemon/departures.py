"""Agents that leave: offline at once, not after ``--offline-after`` of silence.

Two ways a connection ends visibly:

- the agent says ``bye`` when it stops (SIGTERM): the node is offline now;
- the TCP connection closes (process killed, host reset): the mesh socket's
  monitor (read by ``guard.ConnectionGuard``: libzmq allows one monitor per
  socket) reports EVENT_DISCONNECTED with the connection's descriptor, which
  the mesh mapped to the session's routing id at hello (ZMQ_SRCFD).

ZeroMQ's ROUTER_NOTIFY would say this directly but is a draft option that
the bundled libzmq does not build. A descriptor can be reused by a new
connection before its disconnect event is read, so an event only marks the
node offline once a send to its routing id fails with EHOSTUNREACH (the
ROUTER has no such peer any more); otherwise the silence sweep decides, as
it does for a connection that hangs without closing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import zmq

from gdos.daemon.mesh import Mesh
from gdos.daemon.registry import LiveNode, NodeRegistry
from gdos.wire import protocol
from gdos.wire.mesh_kinds import Bye
from gdos.wire.protocol import Message

log = logging.getLogger("gdosd.departures")

PROBE_DELAYS = (0.0, 0.2, 1.0)  # a closing pipe may still take a send for a moment


class Departures:
    """Marks nodes offline on goodbye and on a closed connection."""

    def __init__(self, mesh: Mesh, registry: NodeRegistry) -> None:
        self.mesh, self.registry = mesh, registry
        self._probes: set[asyncio.Task[None]] = set()
        mesh.handlers.register({"bye": self.on_bye})
        mesh.guard.on_disconnect.append(self.on_disconnect)

    def on_bye(self, node: LiveNode, msg: Message[Bye]) -> None:
        reason = msg.body.get("reason") or "the agent stopped"
        log.info("node %s offline (said goodbye: %s)", node.name, reason)
        self.registry.mark_offline(node)

    def on_disconnect(self, fd: int) -> None:
        """A closed connection (from the mesh guard's monitor): probe its session aside,
        so one slow probe never delays the next event."""
        rid = self.mesh.fds.pop(fd, None)
        if rid is not None:
            probe = asyncio.create_task(self._probe(rid))
            self._probes.add(probe)
            probe.add_done_callback(self._probes.discard)

    def close(self) -> None:
        for probe in self._probes:
            probe.cancel()

    async def _probe(self, rid: bytes) -> None:
        for delay in PROBE_DELAYS:
            await asyncio.sleep(delay)
            node = self.registry.session(rid)
            if node is None or not node.online or node.routing_id != rid:
                return  # already offline, or its session moved to a new connection
            if not self._reachable(node):
                log.info("node %s offline (connection closed)", node.name)
                self.registry.mark_offline(node)
                return

    def _reachable(self, node: LiveNode) -> bool:
        """Whether the ROUTER still has a peer for the node's routing id.

        The probe is a harmless heartbeat.ack; only EHOSTUNREACH means gone
        (EAGAIN is a full queue: that peer is there).
        """
        assert node.routing_id is not None
        body: dict[str, Any] = {"config": self.mesh.config.agent_config(), "state": node.state}
        data = protocol.encode("heartbeat.ack", body)
        future: Any = self.mesh.socket.send_multipart(
            [node.routing_id, data], flags=zmq.DONTWAIT, copy=False
        )
        error = future.exception() if future.done() else None
        return not (isinstance(error, zmq.ZMQError) and error.errno == zmq.EHOSTUNREACH)
