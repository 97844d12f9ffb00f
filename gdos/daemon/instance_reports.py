"""What agents say about their instances, stored before it is acknowledged.

The agent is the authority on what runs. After every welcome it sends its
whole list (``svc.report``), which replaces the daemon's view of that node's
instances in one transaction: reported instances take the reported state,
pid, version and start time; managed instances it does not report become
``error`` (the node does not have them); adoptions it does not report are
forgotten (an adoption exists only on its node). Between reports, each
change comes as ``svc.state``.

Both carry the agent's sequence number. Once a report is stored the daemon
acknowledges its number (``svc.state.ack``), and after that each state that
follows without a gap; a failed write or a gap stops the acknowledgements
until the next stored report, so the agent, seeing no ack, sends a fresh
report. Nothing the agent said is lost to a full disk.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from gdos.daemon.catalog import Catalog
from gdos.daemon.mesh import Mesh
from gdos.daemon.registry import LiveNode
from gdos.model import InstanceState

log = logging.getLogger("gdosd.services")

INTERRUPTED = "deploy interrupted (the daemon restarted before the node had it); deploy again"
UNKNOWN_ON_NODE = "the node does not know this instance; deploy it again"
ADOPTED_KIND = "adopted"
Publish = Callable[[dict[str, Any]], None]
View = Callable[[dict[str, Any]], dict[str, Any]]


class StateAcks:
    """Per node: the sequence number up to which everything it reported is stored."""

    def __init__(self) -> None:
        self._stored: dict[str, int] = {}

    def forget(self, node: str) -> None:
        """A new session, a failed write or a gap: wait for the next full report."""
        self._stored.pop(node, None)

    def report_stored(self, node: str, seq: int) -> int:
        self._stored[node] = seq
        return seq

    def state_stored(self, node: str, seq: int) -> int | None:
        last = self._stored.get(node)
        if last is None or seq != last + 1:
            self.forget(node)
            return None
        self._stored[node] = seq
        return seq


def seq_of(body: dict[str, Any]) -> int | None:
    seq = body.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None


class InstanceReports:
    def __init__(self, catalog: Catalog, mesh: Mesh, publish: Publish, view: View) -> None:
        self.catalog, self.mesh = catalog, mesh
        self.publish, self.view = publish, view
        self.acks = StateAcks()
        self.reported: set[str] = set()  # nodes whose report is stored since their hello
        mesh.on_hello.append(self._on_hello)

    def _on_hello(self, node: LiveNode, msg: Any) -> None:
        self.acks.forget(node.name)
        self.reported.discard(node.name)

    def on_state(self, node: LiveNode, body: dict[str, Any]) -> None:
        seq = seq_of(body)
        views = self._store(node, lambda: self._apply(node.name, body["state"]) or [])
        if views is None:
            return
        self._publish(views)
        if seq is not None and self.acks.state_stored(node.name, seq) is not None:
            self.mesh.send(node, "svc.state.ack", {"seq": seq})

    def on_report(self, node: LiveNode, body: dict[str, Any]) -> None:
        seq = seq_of(body)
        views = self._store(node, lambda: self._replace(node.name, body["instances"]))
        if views is None:
            return
        self.reported.add(node.name)
        self._publish(views)
        if seq is not None:
            self.mesh.send(node, "svc.state.ack", {"seq": self.acks.report_stored(node.name, seq)})

    def _store(
        self, node: LiveNode, write: Callable[[], list[dict[str, Any]]]
    ) -> list[dict[str, Any]] | None:
        """Run ``write`` in one transaction; ``None`` (and no more acks) when it failed."""
        try:
            with self.catalog.atomic():
                return write()
        except sqlite3.Error as exc:
            self.acks.forget(node.name)
            log.error(
                "could not store the instance states of %s (%s); "
                "the agent sends them again once it sees no acknowledgement",
                node.name,
                exc,
            )
            return None

    def _publish(self, views: list[dict[str, Any]]) -> None:
        for view in views:
            self.publish(view)

    def _replace(self, node: str, instances: list[Any]) -> list[dict[str, Any]]:
        """The node's full list replaces the stored view of that node."""
        views: list[dict[str, Any]] = []
        reported = set()
        for state in instances:
            if isinstance(state, dict):
                applied = self._apply(node, state)
                if applied is not None:
                    reported.add(state["instance"])
                    views += applied
        for row in self.catalog.instances(node=node):
            if f"{row['system']}/{row['module']}" in reported:
                continue
            if row.get("kind") == ADOPTED_KIND:
                views += self.forget(row["system"], row["module"], node)
                continue
            if row["state"] == InstanceState.ERROR and row.get("error"):
                views += self.record(row, {"pid": None})  # keeps why (a deploy that failed)
                continue
            error = INTERRUPTED if row["state"] == InstanceState.DEPLOYING else UNKNOWN_ON_NODE
            views += self.record(row, {"state": InstanceState.ERROR, "error": error, "pid": None})
        return views

    def _apply(self, node: str, state: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Record one reported instance state: the views that changed, ``None`` if malformed."""
        name = state.get("instance")
        if not isinstance(name, str) or name.count("/") != 1:
            return None
        system, module = name.split("/")
        if state.get("state") == InstanceState.DESTROYED:
            return self.forget(system, module, node)
        fields = {k: state.get(k) for k in ("state", "pid", "started", "version", "sha256")}
        fields |= {
            "restarts": int(state.get("restarts") or 0),
            "error": state.get("error"),
            "previous_version": state.get("previous_version"),
            "kind": state.get("kind") or "managed",
        }
        if isinstance(state.get("package"), str):
            fields["package"] = state["package"]
        if not isinstance(fields["state"], str):
            return None
        row = self.catalog.instance(system, module, node) or {
            "system": system,
            "module": module,
            "node": node,
        }
        return self.record(row, fields)

    def forget(self, system: str, module: str, node: str) -> list[dict[str, Any]]:
        self.catalog.delete_instance(system, module, node)
        return [
            {
                "instance": f"{system}/{module}@{node}",
                "node": node,
                "state": InstanceState.DESTROYED,
            }
        ]

    def record(self, row: dict[str, Any], fields: dict[str, Any]) -> list[dict[str, Any]]:
        """Store one row's new fields; the view to publish when anything changed."""
        key = (row["system"], row["module"], row["node"])
        if self.catalog.set_instance(key, fields):
            fresh = self.catalog.instance(*key)
            if fresh is not None:
                return [self.view(fresh)]
        return []
