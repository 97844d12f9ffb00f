"""Control requests of the metrics concern: latest values, history, live rows.

``metrics.watch`` is a pushed subscription like ``node.watch`` (the same
diff-and-credit loop in gdos/daemon/watch.py): one row per node, or per
running instance, each carrying every metric of its scope by name.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from gdos.daemon.control import ControlConnection
from gdos.daemon.registry import online_names
from gdos.daemon.watch import NodeDiff, watch, watch_interval
from gdos.errors import ErrorCode, GdosError
from gdos.metric_catalog import INSTANCE_PATTERN, find_metric, scope_metrics
from gdos.names import check_name
from gdos.wire import protocol
from gdos.wire.protocol import Message

if TYPE_CHECKING:  # annotations only
    from gdos.daemon.handlers import Handlers
    from gdos.daemon.metrics import MetricRings
    from gdos.daemon.registry import NodeRegistry
    from gdos.wire.control_kinds import MetricsHistory, MetricsWatch

MAX_WINDOW = 7 * 86400.0

Body = dict[str, Any]


class MetricsApi:
    def __init__(self, handlers: Handlers, metrics: MetricRings, registry: NodeRegistry) -> None:
        self.metrics, self.registry = metrics, registry
        handlers.register(
            {
                "metrics.latest": self.latest,
                "metrics.history": self.history,
                "metrics.watch": self.watch,
            }
        )

    async def latest(self, conn: ControlConnection, msg: Message) -> Body:
        return {"entries": self.metrics.latest()}

    async def history(self, conn: ControlConnection, msg: Message[MetricsHistory]) -> Body:
        node = check_name(msg.body["node"])
        self.registry.get(node)  # NODE_UNKNOWN with a hint
        instance = _instance(msg.body.get("instance"))
        since = float(msg.body.get("since", 900.0))
        if not 0 < since <= MAX_WINDOW:
            raise GdosError(ErrorCode.INVALID_ARGUMENT, "--since must be between 1s and 7d.")
        names = [str(n) for n in msg.body.get("metrics") or []]
        metrics = [find_metric(n, instance) for n in names] or list(scope_metrics(instance))
        if instance is not None and not self.metrics.has(node, instance):
            raise GdosError(
                ErrorCode.INSTANCE_UNKNOWN,
                f"no metrics for {instance}@{node}: it has not run there since the daemon "
                "started; check 'gdos status'.",
            )
        start = time.time() - since
        series = [
            {
                **m.describe(),
                "points": [list(p) for p in self.metrics.history(node, instance, m.name, start)],
            }
            for m in metrics
        ]
        return {"node": node, "instance": instance, "since": start, "series": series}

    async def watch(self, conn: ControlConnection, msg: Message[MetricsWatch]) -> Body:
        """A stream of rows for ``gdos top``: nodes, or instances with ``instances``."""
        if msg.id is None:
            raise GdosError(ErrorCode.BAD_MESSAGE, "metrics.watch needs a request id.")
        interval = watch_interval(msg.body.get("interval"))
        source = self.instance_rows if msg.body.get("instances") else self.node_rows
        stream = conn.open_stream(msg.id, protocol.CONTROL_STREAM_CREDIT)
        conn.spawn(watch(source, NodeDiff(key="key", kind="rows"), conn, stream, interval))
        return {"stream": msg.id, "interval": interval}

    def node_rows(self) -> list[dict[str, Any]]:
        """Every known node, with its latest values while it is online (an offline
        node's last sample is not its load now, as in ``node list``)."""
        online = online_names(self.registry.nodes)
        latest = {e["node"]: e for e in self.metrics.latest(only=online) if e["instance"] is None}
        rows = []
        for name, node in self.registry.nodes.items():
            entry = latest.get(name) or {"values": {}, "ts": None}
            rows.append(
                {
                    "key": name,
                    "node": name,
                    "online": node.online,
                    "state": node.state,
                    "ts": entry["ts"],
                    **entry["values"],
                }
            )
        return rows

    def instance_rows(self) -> list[dict[str, Any]]:
        """Every instance running in its node's latest sample, for online nodes."""
        return [
            {
                "key": f"{e['instance']}@{e['node']}",
                "node": e["node"],
                "instance": e["instance"],
                "ts": e["ts"],
                **e["values"],
            }
            for e in self.metrics.latest(only=online_names(self.registry.nodes))
            if e["instance"] is not None
        ]


def _instance(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not INSTANCE_PATTERN.match(value):
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT, f"instance {value!r} is not SYSTEM/MODULE (e.g. shop/web)."
        )
    return value
