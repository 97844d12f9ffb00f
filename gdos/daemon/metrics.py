"""Every metric gdos knows, declared once, and the in-memory history of each.

``METRICS`` is the one declaration table: name, scope (``node`` or
``instance``), unit, description and where the value comes from in an
agent's metrics sample (agent/metrics.py). The CLI (``gdos top``,
``gdos metrics``), the Prometheus export and the TUI read names, units and
descriptions from here and nowhere else.

History lives in fixed-size rings, one per node and one per running
instance, allocated whole on the first sample and overwritten in place
afterwards: the daemon's memory does not grow with uptime and nothing is
written to SQLite per sample. Memory budget, exactly (data bytes; the test
suite checks it against ``sys.getsizeof``)::

    node ring      (8 metrics + 1 timestamp) x RING_SAMPLES x 4 bytes = 12,960 B
    instance ring  (6 metrics + 1 timestamp) x RING_SAMPLES x 4 bytes = 10,080 B
    overhead       2 array headers (80 B each) + the ring object (80 B) = 240 B per ring

so 13,200 B per node (132 MB for 10,000 nodes) plus 10,320 B per running
instance, plus one dict entry per ring (~100 B, not counted). RING_SAMPLES =
360 is 30 minutes at the default 5 s metrics interval (6 minutes at 1 s).
Values are float32 (NaN = not reported); timestamps are uint32 tenths of a
second since the daemon started, taken when the daemon received the sample
(agent clocks may be off). History starts empty at each daemon start.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gdos.errors import ErrorCode, GdosError

RING_SAMPLES = 360
# Benchmarks only (bench/metrics_rings.py): 0 keeps no history at all.
SAMPLES_ENV = "GDOS_METRIC_SAMPLES"
MAX_INSTANCES_PER_NODE = 1000  # a misbehaving agent cannot make us allocate without bound
STAMP_HZ = 10  # timestamps are tenths of a second since the daemon started
INSTANCE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}/[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")

Extract = Callable[[dict[str, Any]], Any]


def _field(key: str) -> Extract:
    return lambda sample: sample.get(key)


def _fullest_disk(sample: dict[str, Any]) -> Any:
    disks = sample.get("disks")
    values = (
        [d.get("percent") for d in disks if isinstance(d, dict)] if isinstance(disks, list) else []
    )
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return max(numbers) if numbers else None


_PROMETHEUS_SUFFIX = {"%": "_percent", "bytes": "_bytes", "B/s": "_bytes_per_second", "": ""}


@dataclass(frozen=True)
class Metric:
    """One metric: what operators see and how to read it from a sample."""

    name: str
    scope: str  # "node" or "instance"
    unit: str  # "%", "bytes", "B/s" or "" (a plain number)
    description: str
    source: str  # the sample field(s), for documentation
    extract: Extract

    @property
    def prometheus_name(self) -> str:
        return f"gdos_{self.scope}_{self.name}{_PROMETHEUS_SUFFIX[self.unit]}"

    def format(self, value: float | None) -> str:
        """The value as an operator reads it: 42.0%, 1.5 MiB, 3.2 KiB/s, 0.75, 12."""
        if value is None or math.isnan(value):
            return "-"
        if self.unit == "%":
            return f"{value:.1f}%"
        if self.unit in ("bytes", "B/s"):
            from gdos.units import human_bytes

            return human_bytes(value) + ("/s" if self.unit == "B/s" else "")
        return f"{value:.2f}" if self.name.startswith("load") else f"{value:.0f}"

    def describe(self) -> dict[str, str]:
        return {
            "name": self.name,
            "scope": self.scope,
            "unit": self.unit,
            "description": self.description,
            "source": self.source,
        }


def _node(name: str, unit: str, description: str, key: str) -> Metric:
    return Metric(name, "node", unit, description, key, _field(key))


def _instance(name: str, unit: str, description: str, key: str) -> Metric:
    return Metric(name, "instance", unit, description, f"instances[].{key}", _field(key))


METRICS: tuple[Metric, ...] = (
    _node("cpu", "%", "CPU busy, % of all cores", "cpu_percent"),
    _node("mem", "%", "memory in use (total minus available)", "mem_percent"),
    Metric(
        "disk", "node", "%", "usage of the fullest mount", "max(disks[].percent)", _fullest_disk
    ),
    _node("load1", "", "1-minute load average", "load1"),
    _node("net_rx", "B/s", "network bytes received per second (loopback excluded)", "net_rx_bps"),
    _node("net_tx", "B/s", "network bytes sent per second (loopback excluded)", "net_tx_bps"),
    _node("disk_read", "B/s", "disk bytes read per second, all devices", "disk_read_bps"),
    _node("disk_write", "B/s", "disk bytes written per second, all devices", "disk_write_bps"),
    _instance("cpu", "%", "CPU, % of one core, children summed", "cpu_percent"),
    _instance("rss", "bytes", "resident memory, children summed", "rss_bytes"),
    _instance("read", "B/s", "storage bytes read per second, children summed", "read_bps"),
    _instance("write", "B/s", "storage bytes written per second, children summed", "write_bps"),
    _instance("threads", "", "threads, children summed", "threads"),
    _instance("open_files", "", "open file descriptors, children summed", "open_files"),
)
NODE_METRICS = tuple(m for m in METRICS if m.scope == "node")
INSTANCE_METRICS = tuple(m for m in METRICS if m.scope == "instance")


def scope_metrics(instance: str | None) -> tuple[Metric, ...]:
    return NODE_METRICS if instance is None else INSTANCE_METRICS


def find_metric(name: str, instance: str | None) -> Metric:
    """The metric ``name`` of a node (``instance`` None) or an instance, or a clear error."""
    metrics = scope_metrics(instance)
    for metric in metrics:
        if metric.name == name:
            return metric
    scope = "node" if instance is None else "instance"
    raise GdosError(
        ErrorCode.INVALID_ARGUMENT,
        f"no {scope} metric {name!r}; choose from {', '.join(m.name for m in metrics)}.",
    )


def _number(value: Any) -> float:
    """A sample value as float; anything else (missing, text, bool) is NaN."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return math.nan


class Ring:
    """The last ``capacity`` samples of ``width`` metrics, metric-major, preallocated."""

    __slots__ = ("capacity", "count", "next", "stamps", "values", "width")

    def __init__(self, width: int, capacity: int) -> None:
        self.width, self.capacity = width, capacity
        self.values = array("f", [0.0]) * (width * capacity)  # exact size, no slack
        self.stamps = array("I", [0]) * capacity
        self.count = self.next = 0

    def append(self, stamp: int, row: list[float]) -> None:
        i = self.next
        self.stamps[i] = stamp
        for k, value in enumerate(row):
            self.values[k * self.capacity + i] = value
        self.next = (i + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)

    def last_index(self) -> int:
        return (self.next - 1) % self.capacity

    def last_stamp(self) -> int | None:
        return self.stamps[self.last_index()] if self.count else None

    def last_row(self) -> list[float]:
        i = self.last_index()
        return [self.values[k * self.capacity + i] for k in range(self.width)]

    def series(self, k: int, since_stamp: int) -> list[tuple[int, float]]:
        """Oldest first: (stamp, value) of metric ``k`` at or after ``since_stamp``, NaN skipped."""
        start = (self.next - self.count) % self.capacity
        base = k * self.capacity
        out = []
        for n in range(self.count):
            i = (start + n) % self.capacity
            stamp, value = self.stamps[i], self.values[base + i]
            if stamp >= since_stamp and not math.isnan(value):
                out.append((stamp, value))
        return out

    def nbytes(self) -> int:
        """What this ring costs: both arrays with their headers, and the ring itself."""
        return sys.getsizeof(self.values) + sys.getsizeof(self.stamps) + sys.getsizeof(self)


def ring_budget(width: int, capacity: int = RING_SAMPLES) -> int:
    """The bytes one ring of ``width`` metrics costs (the figure in the module docstring)."""
    return Ring(width, capacity).nbytes()


def default_capacity() -> int:
    """RING_SAMPLES, unless the benchmark's environment knob says otherwise."""
    try:
        return max(0, int(os.environ.get(SAMPLES_ENV, RING_SAMPLES)))
    except ValueError:
        return RING_SAMPLES


class MetricRings:
    """Latest values and recent history of every node and running instance.

    Fed by ``record`` on every metrics message (daemon thread only); read by
    ``latest`` and ``history``. Rings are freed when a node is removed
    (``drop_node``) and when an instance disappears from its node's samples
    (destroyed). A stopped instance keeps its history but has no latest values.
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = default_capacity() if capacity is None else capacity
        self.epoch = time.time()
        self.nodes: dict[str, Ring] = {}
        self.instances: dict[str, dict[str, Ring]] = {}

    # -- time ---------------------------------------------------------------------
    def stamp(self, ts: float) -> int:
        return min(max(0, int((ts - self.epoch) * STAMP_HZ)), 2**32 - 1)

    def time_of(self, stamp: int) -> float:
        return self.epoch + stamp / STAMP_HZ

    # -- writing ------------------------------------------------------------------
    def record(self, node: str, sample: dict[str, Any], now: float | None = None) -> None:
        """Append one agent sample (node and instance values); never raises on bad data."""
        if self.capacity <= 0:
            return
        stamp = self.stamp(time.time() if now is None else now)
        ring = self.nodes.get(node)
        if ring is None:
            ring = self.nodes[node] = Ring(len(NODE_METRICS), self.capacity)
        ring.append(stamp, [_number(m.extract(sample)) for m in NODE_METRICS])
        self._record_instances(node, sample.get("instances"), stamp)

    def _record_instances(self, node: str, reported: Any, stamp: int) -> None:
        rings = self.instances.setdefault(node, {})
        entries = reported if isinstance(reported, dict) else {}
        for name in [n for n in rings if n not in entries]:
            del rings[name]  # destroyed on the agent
        for name, entry in entries.items():
            if not isinstance(entry, dict) or "cpu_percent" not in entry:
                continue  # not running: keep its history, add nothing
            ring = rings.get(name)
            if ring is None:
                if len(rings) >= MAX_INSTANCES_PER_NODE or not (
                    isinstance(name, str) and INSTANCE_PATTERN.match(name)
                ):
                    continue
                ring = rings[name] = Ring(len(INSTANCE_METRICS), self.capacity)
            ring.append(stamp, [_number(m.extract(entry)) for m in INSTANCE_METRICS])
        if not rings:
            del self.instances[node]

    def drop_node(self, node: str) -> None:
        """Free a removed node's rings and its instances' rings."""
        self.nodes.pop(node, None)
        self.instances.pop(node, None)

    # -- reading ------------------------------------------------------------------
    def latest(self) -> list[dict[str, Any]]:
        """One entry per node, and per instance running in its node's latest sample."""
        out = []
        for node, ring in self.nodes.items():
            stamp = ring.last_stamp()
            if stamp is None:
                continue
            out.append(self._entry(node, None, ring, NODE_METRICS))
            for name, iring in self.instances.get(node, {}).items():
                if iring.last_stamp() == stamp:
                    out.append(self._entry(node, name, iring, INSTANCE_METRICS))
        return out

    def _entry(
        self, node: str, instance: str | None, ring: Ring, metrics: tuple[Metric, ...]
    ) -> dict[str, Any]:
        values = {
            m.name: v for m, v in zip(metrics, ring.last_row(), strict=True) if not math.isnan(v)
        }
        stamp = ring.last_stamp() or 0
        return {"node": node, "instance": instance, "values": values, "ts": self.time_of(stamp)}

    def history(
        self, node: str, instance: str | None, metric: str, since: float = 0.0
    ) -> list[tuple[float, float]]:
        """(time, value) pairs of one metric since ``since`` (epoch seconds), oldest first."""
        k = scope_metrics(instance).index(find_metric(metric, instance))
        ring = (
            self.nodes.get(node) if instance is None else self.instances.get(node, {}).get(instance)
        )
        if ring is None:
            return []
        since_stamp = self.stamp(since) if since > self.epoch else 0
        return [(self.time_of(s), v) for s, v in ring.series(k, since_stamp)]

    def has(self, node: str, instance: str | None = None) -> bool:
        if instance is None:
            return node in self.nodes
        return instance in self.instances.get(node, {})

    def memory_bytes(self) -> int:
        """Bytes held by every ring now (the budget in the docstring, summed)."""
        rings = [*self.nodes.values()]
        for per_node in self.instances.values():
            rings.extend(per_node.values())
        return sum(r.nbytes() for r in rings)
