"""The in-memory history of every metric of the catalogue (gdos/metric_catalog.py).

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
import sys
import time
from array import array
from collections.abc import Container
from typing import Any

from gdos.metric_catalog import (
    INSTANCE_METRICS,
    INSTANCE_PATTERN,
    NODE_METRICS,
    Metric,
    MetricSample,
    find_metric,
    instance_values,
    node_values,
    scope_metrics,
)

RING_SAMPLES = 360
# Benchmarks only (bench/metrics_rings.py): 0 keeps no history at all.
SAMPLES_ENV = "GDOS_METRIC_SAMPLES"
MAX_INSTANCES_PER_NODE = 1000  # a misbehaving agent cannot make us allocate without bound
STAMP_HZ = 10  # timestamps are tenths of a second since the daemon started


def _row(values: dict[str, float], metrics: tuple[Metric, ...]) -> list[float]:
    """One ring row in catalogue order; NaN where the sample had no value."""
    return [values.get(m.name, math.nan) for m in metrics]


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
    def record(self, node: str, sample: MetricSample, now: float | None = None) -> None:
        """Append one agent sample (node and instance values); never raises on bad data."""
        if self.capacity <= 0:
            return
        stamp = self.stamp(time.time() if now is None else now)
        ring = self.nodes.get(node)
        if ring is None:
            ring = self.nodes[node] = Ring(len(NODE_METRICS), self.capacity)
        ring.append(stamp, _row(node_values(sample), NODE_METRICS))
        self._record_instances(node, instance_values(sample), stamp)

    def _record_instances(
        self, node: str, reported: dict[str, dict[str, float]], stamp: int
    ) -> None:
        rings = self.instances.setdefault(node, {})
        for name in [n for n in rings if n not in reported]:
            del rings[name]  # destroyed on the agent
        for name, values in reported.items():
            if "cpu" not in values:
                continue  # not running: keep its history, add nothing
            ring = rings.get(name)
            if ring is None:
                if len(rings) >= MAX_INSTANCES_PER_NODE or not INSTANCE_PATTERN.match(name):
                    continue
                ring = rings[name] = Ring(len(INSTANCE_METRICS), self.capacity)
            ring.append(stamp, _row(values, INSTANCE_METRICS))
        if not rings:
            del self.instances[node]

    def drop_node(self, node: str) -> None:
        """Free a removed node's rings and its instances' rings."""
        self.nodes.pop(node, None)
        self.instances.pop(node, None)

    # -- reading ------------------------------------------------------------------
    def latest(self, only: Container[str] | None = None) -> list[dict[str, Any]]:
        """One entry per node, and per instance running in its node's latest sample.

        ``only``: just these nodes (the online ones, for views of the load now:
        an offline node's last sample is not its load now).
        """
        out = []
        for node, ring in self.nodes.items():
            if only is not None and node not in only:
                continue
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
