"""Live nodes: who is connected, when we last heard, their latest load.

Everything here is in memory and updated on every mesh message; the store is
written only when something durable changes (hello, maintenance state) and in
one batched flush of ``last_seen`` per interval, never once per heartbeat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gdos.daemon.storage import storage_failure
from gdos.daemon.store import Store
from gdos.errors import ErrorCode, GdosError
from gdos.metric_catalog import MetricSample, value
from gdos.model import NodeState
from gdos.names import natural_key

log = logging.getLogger("gdosd.registry")

MAX_REASON = 200


@dataclass(slots=True)
class LiveNode:
    name: str
    state: NodeState = NodeState.NORMAL
    state_reason: str | None = None  # the operator's --reason for drain or disable
    state_since: float | None = None
    key: str | None = None
    agent_version: str = ""
    routing_id: bytes | None = None
    online: bool = False
    last_seen: float | None = None
    connected_at: float | None = None
    metrics: MetricSample | None = None  # the latest sample, read through gdos.metric_catalog
    summary: dict[str, Any] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        """What ``node list`` shows for this node.

        The load columns are the node's load now: an offline node has none, so
        they are null rather than its last sample (``node show`` keeps that,
        with the time it was taken), as the Prometheus export leaves it out.
        """
        m = self.metrics if self.online else None
        return {
            "name": self.name,
            "online": self.online,
            "state": self.state,
            "state_reason": self.state_reason,
            "state_since": self.state_since,
            "cpu_percent": value(m, "cpu"),
            "mem_percent": value(m, "mem"),
            "load1": value(m, "load1"),
            "disk_percent": value(m, "disk"),
            "uptime": (m or {}).get("uptime"),
            "agent_version": self.agent_version,
            "last_seen": self.last_seen,
            **self.summary,
        }


def online_names(nodes: Mapping[str, LiveNode]) -> set[str]:
    """The nodes connected now."""
    return {name for name, node in nodes.items() if node.online}


class NodeRegistry:
    """The daemon's in-memory view of every node, backed by the store."""

    def __init__(self, store: Store, offline_after: float) -> None:
        self.store = store
        self.offline_after = offline_after
        self.nodes: dict[str, LiveNode] = {}
        self.by_routing_id: dict[bytes, str] = {}
        self._dirty: set[str] = set()
        self.on_offline: list[Callable[[LiveNode], None]] = []
        for row in store.nodes():
            self.nodes[row["name"]] = LiveNode(
                name=row["name"],
                state=NodeState(row["state"]),
                state_reason=row.get("state_reason"),
                state_since=row.get("state_since"),
                key=row["key"],
                agent_version=row["agent_version"] or "",
                last_seen=row["last_seen"],
                summary=_summary(row["facts"]),
            )

    def get(self, name: str) -> LiveNode:
        node = self.nodes.get(name)
        if node is None:
            raise GdosError(
                ErrorCode.NODE_UNKNOWN,
                f"no node named {name!r}; run 'gdos node list' to see enrolled nodes.",
            )
        return node

    def register(
        self,
        name: str,
        routing_id: bytes,
        key: str | None,
        version: str,
        facts: dict[str, Any],
        address: str,
    ) -> LiveNode:
        """A hello: the node is online on this connection from now on.

        A known node whose facts cannot be saved (full disk) still comes
        online: its facts are saved at its next hello. A new one cannot (its
        row is what makes it known), and the storage failure is raised.
        """
        try:
            self.store.save_node_hello(name, key, facts, version, address)
        except Exception as exc:
            failure = storage_failure(exc, self.store.path)
            if failure is None or name not in self.nodes:
                raise
            log.warning("node %s online, but its facts were not saved: %s", name, failure)
        node = self.nodes.get(name) or LiveNode(name=name)
        self.nodes[name] = node
        if node.routing_id is not None:
            self.by_routing_id.pop(node.routing_id, None)
        now = time.time()
        node.routing_id, node.key, node.agent_version = routing_id, key, version
        node.online, node.last_seen, node.connected_at = True, now, now
        node.summary = _summary(facts)
        self.by_routing_id[routing_id] = name
        return node

    def session(self, routing_id: bytes) -> LiveNode | None:
        """The node behind a connection that said hello to this daemon."""
        name = self.by_routing_id.get(routing_id)
        return self.nodes.get(name) if name else None

    def touch(self, node: LiveNode) -> None:
        node.last_seen = time.time()
        node.online = True
        self._dirty.add(node.name)

    def set_state(self, name: str, state: str, reason: str | None = None) -> LiveNode:
        """Store and apply a maintenance state; ``normal`` forgets the reason."""
        try:
            new = NodeState(state)
        except ValueError:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT, f"state must be one of {', '.join(NodeState)}."
            ) from None
        reason = (reason or "").strip() or None
        if reason is not None and (len(reason) > MAX_REASON or not reason.isprintable()):
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT,
                f"--reason must be one line of at most {MAX_REASON} printable characters.",
            )
        node = self.get(name)
        reason = None if new is NodeState.NORMAL else reason
        since = node.state_since if node.state == new and node.state_since else time.time()
        self.store.set_node_state(name, new, reason, since)
        node.state, node.state_reason, node.state_since = new, reason, since
        return node

    def remove(self, name: str) -> LiveNode:
        node = self.get(name)
        self.store.delete_node(name)
        del self.nodes[name]
        if node.routing_id is not None:
            self.by_routing_id.pop(node.routing_id, None)
        return node

    def disconnect(self, node: LiveNode) -> None:
        """Forget the node's connection (revoked key, removed node)."""
        if node.routing_id is not None:
            self.by_routing_id.pop(node.routing_id, None)
        node.routing_id, node.online = None, False

    def mark_offline(self, node: LiveNode) -> None:
        """The node's connection is gone (goodbye, closed socket): offline now."""
        self.disconnect(node)
        for callback in self.on_offline:
            callback(node)

    def sweep(self, now: float | None = None) -> list[LiveNode]:
        """Mark nodes silent for longer than ``offline_after`` offline."""
        now = now or time.time()
        gone = [
            n
            for n in self.nodes.values()
            if n.online and n.last_seen is not None and now - n.last_seen > self.offline_after
        ]
        for node in gone:
            node.online = False
            for callback in self.on_offline:
                callback(node)
        return gone

    def flush(self) -> int:
        """Write ``last_seen`` of every node heard from since the last flush."""
        if not self._dirty:
            return 0
        rows = [(self.nodes[n].last_seen or 0.0, n) for n in self._dirty if n in self.nodes]
        self._dirty.clear()
        self.store.flush_last_seen(rows)
        return len(rows)

    def list(self) -> list[dict[str, Any]]:
        return [self.nodes[n].view() for n in sorted(self.nodes, key=natural_key)]


def _summary(facts: dict[str, Any]) -> dict[str, Any]:
    """A few static facts worth showing in lists, kept in memory."""
    return {
        "os": facts.get("distro") or facts.get("os"),
        "arch": facts.get("arch"),
        "cpu_threads": facts.get("cpu_threads"),
        "mem_total": facts.get("memory_total"),
    }
