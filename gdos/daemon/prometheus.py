"""The Prometheus exposition endpoint (``gdos daemon run --prometheus HOST:PORT``).

Off by default; prometheus-client is imported only when it is on. The
endpoint is a small asyncio HTTP server on the daemon's own loop, so every
scrape reads the daemon's state on the thread that owns it (the registry,
the metric rings, SQLite) and keeps no copy between scrapes: a snapshot is
taken on the loop, and only the text formatting runs in a worker thread.

Exported, from the metric catalogue (gdos/metric_catalog.py): every node
metric as ``gdos_node_<name>[_unit]{node}`` and every instance metric as
``gdos_instance_<name>[_unit]{node,instance}``, for online nodes only (a
silent node's last values would be stale). Beside them: nodes known and
online, mesh frame counters, tasks by status, active alert events by
severity, and the bytes held by the metric rings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gdos.daemon import alert_rules
from gdos.daemon.alert_store import AlertStore, tasks_by_status
from gdos.daemon.registry import online_names
from gdos.errors import ErrorCode, GdosError
from gdos.metric_catalog import INSTANCE_METRICS, NODE_METRICS

if TYPE_CHECKING:
    from gdos.daemon.mesh import Mesh
    from gdos.daemon.metrics import MetricRings
    from gdos.daemon.registry import LiveNode, NodeRegistry
    from gdos.daemon.store import Store

log = logging.getLogger("gdosd.prometheus")

SEVERITIES = ("info", *alert_rules.SEVERITIES)  # "info": exported, always 0
MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT = 10.0


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) -> (host, port), or a clear error."""
    host, sep, port_text = text.strip().rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not host or not 1 <= port <= 65535:
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"--prometheus {text!r} is not HOST:PORT; use e.g. 127.0.0.1:9464.",
        )
    return host, port


@dataclass
class Snapshot:
    """What one scrape exports, read on the daemon's loop."""

    entries: list[dict[str, Any]]
    known: int
    online: int
    mesh: dict[str, int]
    tasks: dict[str, int]
    alerts: dict[str, int]
    ring_bytes: int


def take_snapshot(
    nodes: Mapping[str, LiveNode],
    rings: MetricRings,
    mesh_counters: Mapping[str, int],
    alerts: AlertStore,
) -> Snapshot:
    """Everything one scrape exports, from the registry, the rings and the database."""
    online = online_names(nodes)
    return Snapshot(
        entries=rings.latest(only=online),
        known=len(nodes),
        online=len(online),
        mesh=dict(mesh_counters),
        tasks=tasks_by_status(alerts.db),
        alerts={**dict.fromkeys(SEVERITIES, 0), **alerts.active_by_severity()},
        ring_bytes=rings.memory_bytes(),
    )


class SnapshotCollector:
    """A prometheus_client collector over one snapshot (no state of its own)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.s = snapshot

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.s
        for metric in (*NODE_METRICS, *INSTANCE_METRICS):
            node_scope = metric.scope == "node"
            unit = f" ({metric.unit})" if metric.unit else ""
            family = GaugeMetricFamily(
                metric.prometheus_name,
                metric.description + unit,
                labels=["node"] if node_scope else ["node", "instance"],
            )
            for entry in s.entries:
                value = entry["values"].get(metric.name)
                if value is None or (entry["instance"] is None) != node_scope:
                    continue
                labels = [entry["node"]] if node_scope else [entry["node"], entry["instance"]]
                family.add_metric(labels, value)
            yield family
        yield GaugeMetricFamily("gdos_nodes_known", "nodes enrolled", value=s.known)
        yield GaugeMetricFamily("gdos_nodes_online", "nodes connected now", value=s.online)
        for key, help_text in (
            ("frames_in", "mesh frames received"),
            ("frames_out", "mesh frames sent"),
            ("bad_frames", "mesh frames refused as malformed"),
            ("dropped", "mesh frames dropped (peer gone or queue full)"),
            ("over_quota", "mesh frames dropped over a peer's byte or frame quota"),
        ):
            name = f"gdos_mesh_{key}" if key.startswith("frames") else f"gdos_mesh_{key}_frames"
            yield CounterMetricFamily(name, help_text, value=s.mesh.get(key, 0))
        tasks = GaugeMetricFamily("gdos_tasks", "exec tasks by status", labels=["status"])
        for status, count in sorted(s.tasks.items()):
            tasks.add_metric([status], count)
        yield tasks
        alerts = GaugeMetricFamily(
            "gdos_alerts_active", "alert events not yet ended", labels=["severity"]
        )
        for severity, count in sorted(s.alerts.items()):
            alerts.add_metric([severity], count)
        yield alerts
        yield GaugeMetricFamily(
            "gdos_metric_ring_bytes", "bytes held by the metric history rings", value=s.ring_bytes
        )


def render(snapshot: Snapshot) -> bytes:
    """The exposition text of one snapshot (runs in a worker thread)."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))  # type: ignore[arg-type]
    return bytes(generate_latest(registry))


class Exporter:
    """The running endpoint; ``close`` stops it."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot  # taken on the daemon's loop, once per scrape
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            method, _, rest = head.decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method not in ("GET", "HEAD") or path != "/metrics":
                await _reply(writer, 404, b"gdos serves /metrics only\n", "text/plain")
                return
            from prometheus_client import CONTENT_TYPE_LATEST

            body = await asyncio.to_thread(render, self.snapshot())
            await _reply(writer, 200, b"" if method == "HEAD" else body, CONTENT_TYPE_LATEST)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except ConnectionError:
            pass
        except Exception:  # a bug must not take the daemon down
            log.exception("serving /metrics failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)


async def _reply(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str) -> None:
    reason = {200: "OK", 404: "Not Found"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + body)
    await writer.drain()


async def start_exporter(
    address: str, registry: NodeRegistry, rings: MetricRings, mesh: Mesh, store: Store
) -> Exporter:
    """Serve /metrics on ``address``; a bad or busy address is refused clearly."""
    host, port = parse_address(address)
    try:
        import prometheus_client  # noqa: F401  (fail now, not at the first scrape)
    except ImportError:
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            "--prometheus needs the prometheus-client package; pip install prometheus-client.",
        ) from None
    alerts = AlertStore(store.db)
    exporter = Exporter(lambda: take_snapshot(registry.nodes, rings, mesh.counters, alerts))
    try:
        exporter.server = await asyncio.start_server(
            exporter.handle, host, port, limit=MAX_REQUEST_BYTES
        )
    except OSError as exc:
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"cannot serve Prometheus metrics on {address}: {exc.strerror or exc}; "
            "pick a free local HOST:PORT.",
        ) from None
    log.info("Prometheus metrics on http://%s:%d/metrics", host, port)
    return exporter
