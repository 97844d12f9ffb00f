"""What a node's detail consists of: ``gdos node show`` and the dashboard's ``d``.

A ``node.show`` reply becomes plain ``(label, text)`` rows, in one order: name,
link, state (with the reason and since when), agent, OS, kernel, arch, CPU,
memory and swap, address and key, the times, the other facts, one row per
filesystem, NIC and GPU, the labels, and the latest metrics by catalogue name
with their units. Both views render these rows, so they cannot drift apart.

The rows are not escaped: node-supplied text goes in as it came, and each
renderer makes it safe for its medium (the CLI through ``safe_markup``, the
dashboard through ``safe_text`` in ``tui.details.detail_text``). How a time
reads is the renderer's too: it passes a ``When`` (the CLI "5m ago", the
dashboard a local time with its age). ``node_styles`` says which values carry
a colour, as Rich styles both views understand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gdos.metric_catalog import NODE_METRICS
from gdos.units import STATE_STYLE, human_bytes, human_duration, number

Row = tuple[str, str]
When = Callable[[float], str]  # epoch seconds -> how the view shows a time

TIME_FIELDS = frozenset(
    {"started", "updated", "created", "ended", "last_seen", "first_seen", "time", "boot_time"}
)
# node.show fields shown by name, or left out as copies of others (the
# summary of facts and metrics node.list shows).
NODE_SHOWN = frozenset(
    {
        *("name", "online", "state", "state_reason", "state_since", "agent_version"),
        *("address", "key", "last_seen", "connected_at", "first_seen", "labels"),
        *("facts", "metrics", "cpu_percent", "mem_percent", "load1", "disk_percent"),
        *("uptime", "os", "arch", "cpu_threads", "mem_total"),
    }
)
# Facts shown by name; the other facts follow alphabetically.
FACTS_SHOWN = frozenset(
    {
        *("os", "distro", "kernel", "arch", "cpu_model", "cpu_cores", "cpu_threads"),
        *("cpu_max_mhz", "memory_total", "swap_total", "boot_time", "agent_version"),
        *("disks", "nics", "gpus"),
    }
)


def node_rows(node: Mapping[str, Any], when: When) -> list[Row]:
    """Every row of a node's detail, values formatted with their units, absent ones "-"."""
    facts = _mapping(node.get("facts"))
    rows = [
        ("node", _text(node.get("name"))),
        ("status", "online" if node.get("online") else "offline"),
        ("state", _text(node.get("state"))),
        *_state_reason(node, when),
        ("agent", _text(node.get("agent_version") or facts.get("agent_version"))),
        *_system(facts),
        ("address", _text(node.get("address"))),
        ("key", _text(node.get("key"))),
        ("last seen", time_text(node.get("last_seen"), when)),
        ("connected since", _connected(node, when)),
        ("first seen", time_text(node.get("first_seen"), when)),
        *([("booted", time_text(facts["boot_time"], when))] if facts.get("boot_time") else []),
        *other_rows({k: v for k, v in facts.items() if k not in FACTS_SHOWN}, when),
        *_hardware(facts),
        *other_rows({k: v for k, v in node.items() if k not in NODE_SHOWN}, when),
    ]
    if node.get("labels"):
        rows.append(("labels", field_text("labels", node["labels"], when)))
    return rows + _metric_rows(_mapping(node.get("metrics")), when)


def node_styles(node: Mapping[str, Any]) -> dict[str, str]:
    """Rich styles of the coloured values, by row label: the name bold, the link green
    or red as the node list shows it, the state as ``STATE_STYLE`` colours it."""
    return {
        "node": "bold",
        "status": "green" if node.get("online") else "red",
        "state": STATE_STYLE.get(str(node.get("state")), ""),
    }


def time_text(value: Any, when: When) -> str:
    """A time through ``when``; "-" when absent, the value as it is when not a number."""
    ts = number(value)
    if ts is None:
        return _text(value)
    return when(ts)


def field_text(name: str, value: Any, when: When) -> str:
    """A field no view knows by name: times through ``when``, maps and lists joined."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if (name in TIME_FIELDS or name.endswith("_at")) and number(value) is not None:
        return time_text(value, when)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def other_rows(fields: Mapping[str, Any], when: When) -> list[Row]:
    """Fields no view knows by name, alphabetically, so nothing the daemon sent is hidden."""
    return [(str(name), field_text(str(name), fields[name], when)) for name in sorted(fields)]


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    """A map the reply should hold; a row an older daemon stored unchecked may hold anything."""
    return value if isinstance(value, Mapping) else {}


def _records(value: Any) -> list[Mapping[str, Any]]:
    """The maps of a fact list (disks, NICs, GPUs)."""
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _joined(*parts: Any) -> str:
    return "  ".join(str(p) for p in parts if p not in (None, "")) or "-"


def _state_reason(node: Mapping[str, Any], when: When) -> list[Row]:
    """Why and since when a node is out of normal service (drained or disabled)."""
    rows = [("reason", str(node["state_reason"]))] if node.get("state_reason") else []
    if node.get("state_since") and node.get("state") != "normal":
        rows.append(("state since", time_text(node["state_since"], when)))
    return rows


def _connected(node: Mapping[str, Any], when: When) -> str:
    return time_text(node.get("connected_at"), when) if node.get("online") else "- (offline)"


def _system(facts: Mapping[str, Any]) -> list[Row]:
    """OS, kernel, architecture, CPU (cores, threads, max MHz), memory and swap."""
    counts = [
        f"{facts[key]} {label}"
        for key, label in (("cpu_cores", "cores"), ("cpu_threads", "threads"))
        if facts.get(key)
    ]
    if facts.get("cpu_max_mhz"):
        counts.append(f"max {facts['cpu_max_mhz']} MHz")
    cpu = _text(facts.get("cpu_model")) + (f" ({', '.join(counts)})" if counts else "")
    return [
        ("os", _joined(facts.get("os"), facts.get("distro"))),
        ("kernel", _text(facts.get("kernel"))),
        ("arch", _text(facts.get("arch"))),
        ("cpu model", cpu),
        ("memory", human_bytes(facts.get("memory_total"))),
        ("swap", human_bytes(facts.get("swap_total"))),
    ]


def _hardware(facts: Mapping[str, Any]) -> list[Row]:
    """One row per filesystem, NIC and GPU the node reported (labelled apart from the
    metrics' catalogue names: ``disk`` and ``cpu`` are metrics)."""
    rows = [
        ("filesystem", _joined(d.get("mount"), d.get("device"), d.get("fstype"), _size(d)))
        for d in _records(facts.get("disks"))
    ]
    rows += [("nic", _nic(nic)) for nic in _records(facts.get("nics"))]
    return rows + [
        (
            "gpu",
            _joined(
                g.get("name"),
                _size(g, "memory_total"),
                f"driver {g['driver']}" if g.get("driver") else None,
                f"cc {g['compute_capability']}" if g.get("compute_capability") else None,
            ),
        )
        for g in _records(facts.get("gpus"))
    ]


def _size(record: Mapping[str, Any], key: str = "total") -> str | None:
    return human_bytes(record[key]) if record.get(key) is not None else None


def _nic(nic: Mapping[str, Any]) -> str:
    addresses = [
        str(a) for key in ("ipv4", "ipv6") if isinstance(nic.get(key), list) for a in nic[key]
    ]
    speed = number(nic.get("speed_mbps"))  # -1: unknown
    return _joined(
        nic.get("name"),
        nic.get("mac"),
        ", ".join(addresses),
        f"{speed:.0f} Mb/s" if speed is not None and speed > 0 else None,
    )


def _metric_rows(sample: Mapping[str, Any], when: When) -> list[Row]:
    """The latest sample: when it was taken, then every node metric of the catalogue
    formatted by its unit, the other load averages, the process count and the uptime."""
    if not sample:
        return [("latest metrics", "none received yet")]
    rows = [("latest metrics", time_text(sample.get("ts"), when))]
    rows += [(m.name, m.format(m.read(sample))) for m in NODE_METRICS]
    loads = {key: number(sample.get(key)) for key in ("load5", "load15")}
    rows += [(key, f"{load:.2f}") for key, load in loads.items() if load is not None]
    if sample.get("procs") is not None:
        rows.append(("procs", str(sample["procs"])))
    rows.append(("uptime", human_duration(sample.get("uptime"), fine_below=0.0)))
    return rows
