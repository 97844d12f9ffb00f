"""Every metric gdos knows, declared once, and the one sample that carries them.

An agent sends a ``MetricSample`` (agent/metrics.py produces it; its shape is
checked at the mesh edge by ``gdos.wire.node_data.METRICS_SAMPLE``). Nothing
outside this module knows which sample field holds which metric: the daemon
(history rings, alerts, the node list, Prometheus), the CLI (``gdos top``,
``gdos metrics``, ``gdos node show``) and the dashboard read a value by its
catalogue name, ``value(sample, "cpu")``, and take its unit, description and
display format from ``METRICS``. Adding a metric is one line here.

Node metrics read the sample itself; instance metrics read one entry of
``sample["instances"]`` (``system/module`` -> ``InstanceSample``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, cast

from gdos.errors import ErrorCode, GdosError
from gdos.units import human_bytes, number
from gdos.wire.node_data import INSTANCE, METRICS_SAMPLE

# An instance name as the metrics speak of it: ``system/module``, each a gdos name.
INSTANCE_PATTERN = cast("re.Pattern[str]", INSTANCE.pattern)

Scope = Literal["node", "instance"]


class DiskSample(TypedDict, total=False):
    mount: str
    total: int
    used: int
    percent: float


class GpuSample(TypedDict, total=False):
    index: int
    util_percent: float
    mem_used: int
    mem_total: int


class InstanceSample(TypedDict, total=False):
    """One instance's load, its main process and descendants summed; ``{"pids": []}``
    when it is not running."""

    pids: list[int]
    cpu_percent: float
    rss_bytes: int
    threads: int
    open_files: int
    read_bps: float
    write_bps: float


class MetricSample(TypedDict, total=False):
    """One metrics sample of one node: the body of the ``metrics`` mesh message.

    Every field is optional on the wire (older agents and the simulator send
    fewer); the schema it must fit is ``gdos.wire.node_data.METRICS_SAMPLE``.
    """

    ts: float
    cpu_percent: float
    cpu_per_core: list[float]
    load1: float
    load5: float
    load15: float
    mem_total: int
    mem_used: int
    mem_percent: float
    swap_total: int
    swap_used: int
    swap_percent: float
    disks: list[DiskSample]
    disk_read_bps: float
    disk_write_bps: float
    net_rx_bps: float
    net_tx_bps: float
    procs: int
    uptime: float
    gpus: list[GpuSample]
    instances: dict[str, InstanceSample]


def metric_sample(raw: Any) -> MetricSample:
    """``raw`` as a sample, or ``gdos.wire.schema.SchemaError`` naming the first bad field."""
    METRICS_SAMPLE.check(raw, "sample")
    return cast(MetricSample, raw)


Extract = Callable[[Mapping[str, Any]], Any]


def _field(key: str) -> Extract:
    return lambda sample: sample.get(key)


def _fullest_disk(sample: Mapping[str, Any]) -> Any:
    disks = sample.get("disks")
    entries = disks if isinstance(disks, list) else []
    numbers = [number(d.get("percent")) for d in entries if isinstance(d, dict)]
    return max((n for n in numbers if n is not None), default=None)


_PROMETHEUS_SUFFIX = {"%": "_percent", "bytes": "_bytes", "B/s": "_bytes_per_second", "": ""}


@dataclass(frozen=True)
class Metric:
    """One metric: what operators see and how to read it from a sample."""

    name: str
    scope: Scope
    unit: str  # "%", "bytes", "B/s" or "" (a plain number)
    description: str
    source: str  # the sample field(s), for documentation
    extract: Extract

    @property
    def prometheus_name(self) -> str:
        return f"gdos_{self.scope}_{self.name}{_PROMETHEUS_SUFFIX[self.unit]}"

    def read(self, sample: Mapping[str, Any]) -> float | None:
        """This metric's value in a node sample (or an instance entry), None when absent
        or not a finite number."""
        return number(self.extract(sample))

    def format(self, value: float | None) -> str:
        """The value as an operator reads it: 42.0%, 1.5 MiB, 3.2 KiB/s, 0.75, 12."""
        if value is None or math.isnan(value):
            return "-"
        if self.unit == "%":
            return f"{value:.1f}%"
        if self.unit in ("bytes", "B/s"):
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
_NODE_BY_NAME = {m.name: m for m in NODE_METRICS}  # the node list reads 4 per node


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


def value(sample: Mapping[str, Any] | None, name: str) -> float | None:
    """Node metric ``name`` of a sample (None: not in this sample, or no sample)."""
    metric = _NODE_BY_NAME.get(name) or find_metric(name, None)  # unknown: a clear error
    return metric.read(sample or {})


def node_values(sample: Mapping[str, Any] | None) -> dict[str, float]:
    """Every node metric the sample carries, by catalogue name."""
    return _values(sample or {}, NODE_METRICS)


def instance_values(sample: Mapping[str, Any] | None) -> dict[str, dict[str, float]]:
    """Each instance of the sample -> the instance metrics it carries (none when stopped)."""
    reported = (sample or {}).get("instances")
    if not isinstance(reported, dict):
        return {}
    return {
        name: _values(entry, INSTANCE_METRICS)
        for name, entry in reported.items()
        if isinstance(name, str) and isinstance(entry, dict)
    }


def _values(sample: Mapping[str, Any], metrics: tuple[Metric, ...]) -> dict[str, float]:
    read = ((m.name, m.read(sample)) for m in metrics)
    return {name: v for name, v in read if v is not None}
