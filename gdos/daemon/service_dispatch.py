"""Sending one service operation to a node and waiting for its answer.

Each operation carries an op id no daemon run hands out twice
(gdos/daemon/opids.py) and waits for the agent's ``svc.done``. The answer
only settles the operation: states come from the agent's reports. Every
answer is acknowledged (``svc.done.ack``) so the agent can drop it; an
answer to an operation this run does not know (an earlier run's, resent
after a reconnect) changes nothing. An operation fails at once when its
node goes offline, or when the agent re-reports without it (it restarted).
"""

from __future__ import annotations

import asyncio
from typing import Any

from gdos.daemon.mesh import Mesh
from gdos.daemon.opids import OpIds
from gdos.daemon.registry import LiveNode, NodeRegistry
from gdos.errors import ErrorCode, GdosError
from gdos.model import refusal


def check_node(node: LiveNode, action: str) -> None:
    """Refuse before sending: the node's state refuses ``action``, or it is offline."""
    refused = refusal(node.state, action, node.name)
    if refused is not None:
        raise refused
    if not node.online:
        raise GdosError(
            ErrorCode.NODE_OFFLINE,
            f"node {node.name} is offline; the operation was not sent.",
        )


class Dispatcher:
    """The operations sent to agents and not yet answered."""

    def __init__(self, registry: NodeRegistry, mesh: Mesh, op_ids: OpIds) -> None:
        self.mesh, self.op_ids = mesh, op_ids
        # op id -> (node, the node's connection when sent, the answer to come)
        self.pending: dict[int, tuple[str, float | None, asyncio.Future[dict[str, Any]]]] = {}
        registry.on_offline.append(self._on_offline)

    async def dispatch(
        self, node: LiveNode, kind: str, body: dict[str, Any], timeout: float
    ) -> dict[str, Any] | None:
        """Send one operation to a node and wait for its ``svc.done``."""
        op = self.op_ids.take()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[op] = (node.name, node.connected_at, future)
        try:
            if not self.mesh.send(node, kind, {**body, "op": op}):
                raise GdosError(
                    ErrorCode.NODE_OFFLINE, f"node {node.name} is not connected; nothing was sent."
                )
            try:
                done = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise GdosError(
                    ErrorCode.OPERATION_FAILED,
                    f"node {node.name} did not finish within {timeout:g}s; "
                    "'gdos status' shows what it reports.",
                ) from None
        finally:
            self.pending.pop(op, None)
        if not done["ok"]:
            raise GdosError(
                done.get("code") or ErrorCode.OPERATION_FAILED,
                done.get("message") or "the agent refused",
            )
        state = done.get("state")
        return state if isinstance(state, dict) else None

    def on_done(self, node: LiveNode, body: dict[str, Any]) -> None:
        """Settle the operation it answers, if this daemon run is waiting for it.

        The state in the answer went out as ``svc.state`` first and is stored
        from there; an answer to an operation we do not know changes nothing.
        Either way it is acknowledged, so the agent stops resending it.
        """
        op = body["op"]
        entry = self.pending.get(op)
        if entry is not None and entry[0] == node.name and not entry[2].done():
            entry[2].set_result(body)
        self.mesh.send(node, "svc.done.ack", {"op": op})

    def fail_lost(self, node: LiveNode, known: set[Any]) -> None:
        """Operations sent on an earlier connection that the agent does not know
        (it restarted, or the message was lost with the link) will never be answered."""
        for op, (name, connection, future) in list(self.pending.items()):
            earlier = connection != node.connected_at
            if name == node.name and earlier and op not in known and not future.done():
                future.set_exception(
                    GdosError(
                        ErrorCode.OPERATION_FAILED,
                        f"the agent on {node.name} lost the operation (it restarted or the "
                        "link dropped); "
                        "'gdos status' shows where each instance ended up.",
                    )
                )

    def _on_offline(self, node: LiveNode) -> None:
        for op, (name, _, future) in list(self.pending.items()):
            if name == node.name and not future.done():
                future.set_exception(
                    GdosError(
                        ErrorCode.NODE_OFFLINE,
                        f"node {name} went offline during the operation; its instances "
                        "report their real state when it is back (see 'gdos status').",
                    )
                )
                self.pending.pop(op, None)
