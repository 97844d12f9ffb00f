"""Readable detail panes (``d``): an instance or a node as aligned ``key  value`` lines.

Times are the local time with the age next to it (``2026-11-30 06:12:03
(3.0h ago)``), durations, sizes and metrics carry their unit, and every
field the daemon sent is shown (unknown ones as they are), so nothing is
hidden and no raw JSON or epoch number reaches the operator.

Both panes are built by ``detail_text``: the one place where their values,
all node-supplied, go through ``gdos.safe_text`` (controls made visible, and
a ``Text`` is never read as markup), and where a state gets its colour from
the shared ``STATE_STYLE``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from gdos.metric_catalog import NODE_METRICS
from gdos.model import InstanceState
from gdos.safe_text import safe_text
from gdos.units import STATE_STYLE, human_bytes, human_duration, number, percent

# Fields shown first, in this order; the rest follow alphabetically.
INSTANCE_FIELDS = (
    "instance",
    "state",
    "node",
    "pid",
    "started",
    "uptime",
    "restarts",
    "version",
    "previous_version",
    "package",
    "kind",
    "error",
    "updated",
)
TIME_FIELDS = frozenset(
    {"started", "updated", "created", "ended", "last_seen", "first_seen", "time", "boot_time"}
)


@dataclass(frozen=True)
class Field:
    """One ``label  value`` line; ``style`` colours the value (a Rich style, "" for none)."""

    label: str
    text: str
    style: str = ""


@dataclass(frozen=True)
class Heading:
    """A section title, on its own line after a blank one."""

    text: str


Row = Field | Heading


def detail_text(rows: Iterable[Row]) -> Text:
    """The rows as aligned lines; every label and value made safe here, never read as markup."""
    rows = list(rows)
    width = max((len(safe_text(r.label)) for r in rows if isinstance(r, Field)), default=0)
    text = Text()
    for index, row in enumerate(rows):
        if index:
            text.append("\n")
        if isinstance(row, Heading):
            text.append("\n" if index else "")
            text.append(safe_text(row.text), style="bold")
            continue
        text.append(f"{safe_text(row.label):<{width}}  ")
        text.append(safe_text(row.text), style=row.style)
    return text


def local_time(ts: float, now: float) -> str:
    """``2026-11-30 06:12:03 (3.0h ago)`` in the local time zone; "in ..." if ahead.

    A time past what the platform's clock can show (a row an older daemon
    stored unchecked) is shown as the number it is rather than breaking the pane.
    """
    try:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    except (OverflowError, OSError, ValueError):
        return str(ts)
    age = now - ts
    if age >= 0:
        return f"{stamp} ({human_duration(age, fine_below=0.0)} ago)"
    return f"{stamp} (in {human_duration(-age, fine_below=0.0)})"


def when_text(value: Any, now: float) -> str:
    """A time field as ``local_time``; "-" when absent, the value as it is when not a number."""
    ts = number(value)
    if ts is None:
        return "-" if value is None else str(value)
    return local_time(ts, now)


def field_text(name: str, value: Any, now: float) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and (name in TIME_FIELDS or name.endswith("_at")):
        return local_time(float(value), now)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def state_field(state: Any) -> Field:
    """The state line, coloured as ``gdos status`` and the tables colour it."""
    shown = str(state or "-")
    return Field("state", shown, STATE_STYLE.get(shown, ""))


def other_fields(facts: Mapping[str, Any], now: float) -> list[Field]:
    """Fields no pane knows by name, alphabetically, so nothing the daemon sent is hidden."""
    return [Field(str(name), field_text(str(name), facts[name], now)) for name in sorted(facts)]


def instance_detail(view: Mapping[str, Any], metrics: Mapping[str, Any] | None, now: float) -> Text:
    """The ``d`` pane of an instance: one aligned line per field, times local with ages."""
    facts = dict(view)
    state = str(facts.get("state") or "-")
    started = facts.get("started")
    if state == InstanceState.RUNNING and isinstance(started, int | float):
        facts["uptime"] = human_duration(now - started, fine_below=0.0)
    else:
        facts.pop("uptime", None)
    online = facts.pop("node_online", None)
    if online is not None:
        facts["node"] = f"{facts.get('node')} ({'online' if online else 'offline'})"
    for name in ("system", "module"):  # already in the instance name
        facts.pop(name, None)
    rows: list[Row] = [
        state_field(facts.pop(name))
        if name == "state"
        else Field(name, field_text(name, facts.pop(name), now))
        for name in INSTANCE_FIELDS
        if name in facts
    ]
    rows += other_fields(facts, now)
    metrics = metrics or {}
    rows.append(
        Field("cpu", percent(metrics.get("cpu")))
    )  # catalogue names, as metrics.watch sends
    rows.append(Field("memory (rss)", human_bytes(metrics.get("rss"))))
    return detail_text(rows)


# node.show fields the node pane shows by name, or leaves out as copies of
# others (the list's summary of facts and metrics).
NODE_SHOWN = frozenset(
    {
        "name",
        "online",
        "state",
        "state_reason",
        "state_since",
        "agent_version",
        "address",
        "key",
        "last_seen",
        "connected_at",
        "first_seen",
        "labels",
        "facts",
        "metrics",
        # copies: the summary node.list shows
        "cpu_percent",
        "mem_percent",
        "load1",
        "disk_percent",
        "uptime",
        "os",
        "arch",
        "cpu_threads",
        "mem_total",
    }
)
# Facts the node pane shows by name; other facts follow alphabetically.
FACTS_SHOWN = frozenset(
    {
        "os",
        "distro",
        "kernel",
        "arch",
        "cpu_model",
        "cpu_cores",
        "cpu_threads",
        "cpu_max_mhz",
        "memory_total",
        "swap_total",
        "boot_time",
        "agent_version",
        "disks",
        "nics",
        "gpus",
    }
)


def node_detail(node: Mapping[str, Any], now: float) -> Text:
    """The ``d`` pane of a node (``node.show``): the fields of ``gdos node show``, in its
    order, one per line, times local with ages, the latest metrics with their units."""
    raw = node.get("facts")
    facts: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    rows: list[Row] = [
        Field("node", str(node.get("name") or "-")),
        Field("status", *(("online", "green") if node.get("online") else ("offline", "red"))),
        state_field(node.get("state")),
        *_state_reason(node, now),
        Field("agent", str(node.get("agent_version") or facts.get("agent_version") or "-")),
        *_system_fields(facts),
        Field("address", str(node.get("address") or "-")),
        Field("key", str(node.get("key") or "-")),
        Field("last seen", when_text(node.get("last_seen"), now)),
        _connected(node, now),
        Field("first seen", when_text(node.get("first_seen"), now)),
        *([Field("booted", when_text(facts["boot_time"], now))] if facts.get("boot_time") else []),
        *other_fields({k: v for k, v in facts.items() if k not in FACTS_SHOWN}, now),
        *_hardware(facts),
        *other_fields({k: v for k, v in node.items() if k not in NODE_SHOWN}, now),
    ]
    if node.get("labels"):
        rows.append(Field("labels", field_text("labels", node["labels"], now)))
    raw = node.get("metrics")
    rows += _metric_rows(raw if isinstance(raw, Mapping) else {}, now)
    return detail_text(rows)


def _state_reason(node: Mapping[str, Any], now: float) -> list[Field]:
    """Why and since when a node is out of normal service (drained or disabled)."""
    rows = [Field("reason", str(node["state_reason"]))] if node.get("state_reason") else []
    if node.get("state_since") and node.get("state") != "normal":
        rows.append(Field("state since", when_text(node["state_since"], now)))
    return rows


def _connected(node: Mapping[str, Any], now: float) -> Field:
    if not node.get("online"):
        return Field("connected since", "- (offline)")
    return Field("connected since", when_text(node.get("connected_at"), now))


def _system_fields(facts: Mapping[str, Any]) -> list[Field]:
    """OS, kernel, architecture, CPU and memory, as ``gdos node show`` groups them."""
    os_name = _joined(facts.get("os"), facts.get("distro"))
    cpu = str(facts.get("cpu_model") or "-")
    counts = [
        f"{facts[key]} {label}"
        for key, label in (("cpu_cores", "cores"), ("cpu_threads", "threads"))
        if facts.get(key)
    ]
    if facts.get("cpu_max_mhz"):
        counts.append(f"max {facts['cpu_max_mhz']} MHz")
    if counts:
        cpu += f" ({', '.join(counts)})"
    return [
        Field("os", os_name),
        Field("kernel", str(facts.get("kernel") or "-")),
        Field("arch", str(facts.get("arch") or "-")),
        Field("cpu model", cpu),
        Field("memory", human_bytes(facts.get("memory_total"))),
        Field("swap", human_bytes(facts.get("swap_total"))),
    ]


def _records(value: Any) -> list[Mapping[str, Any]]:
    """The maps of a fact list; a row an older daemon stored unchecked may hold anything."""
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _hardware(facts: Mapping[str, Any]) -> list[Field]:
    """One line per filesystem, NIC and GPU the node reported (labels apart from the
    metrics' catalogue names: ``disk`` and ``cpu`` are metrics)."""
    rows = [
        Field(
            "filesystem",
            _joined(d.get("mount"), d.get("device"), d.get("fstype"), human_bytes(d.get("total"))),
        )
        for d in _records(facts.get("disks"))
    ]
    for nic in _records(facts.get("nics")):
        addresses = [
            str(a) for key in ("ipv4", "ipv6") if isinstance(nic.get(key), list) for a in nic[key]
        ]
        speed = number(nic.get("speed_mbps"))  # -1: unknown
        rows.append(
            Field(
                "nic",
                _joined(
                    nic.get("name"),
                    nic.get("mac"),
                    ", ".join(addresses),
                    f"{speed:.0f} Mb/s" if speed is not None and speed > 0 else None,
                ),
            )
        )
    rows += [
        Field(
            "gpu",
            _joined(
                g.get("name"),
                human_bytes(g.get("memory_total")),
                f"driver {g['driver']}" if g.get("driver") else None,
                f"cc {g['compute_capability']}" if g.get("compute_capability") else None,
            ),
        )
        for g in _records(facts.get("gpus"))
    ]
    return rows


def _joined(*parts: Any) -> str:
    return "  ".join(str(p) for p in parts if p not in (None, "")) or "-"


def _metric_rows(sample: Mapping[str, Any], now: float) -> list[Row]:
    """The latest sample: every node metric of the catalogue, formatted by its unit."""
    if not sample:
        return [Heading("latest metrics: none received yet")]
    taken = f", {local_time(ts, now)}" if (ts := number(sample.get("ts"))) is not None else ""
    rows: list[Row] = [Heading(f"latest metrics{taken}")]
    rows += [Field(m.name, m.format(m.read(sample))) for m in NODE_METRICS]
    loads = [number(sample.get(k)) for k in ("load5", "load15")]
    if any(v is not None for v in loads):
        rows.append(
            Field("load5 load15", "  ".join("-" if v is None else f"{v:.2f}" for v in loads))
        )
    if sample.get("procs") is not None:
        rows.append(Field("procs", str(sample["procs"])))
    rows.append(Field("uptime", human_duration(sample.get("uptime"), fine_below=0.0)))
    return rows
