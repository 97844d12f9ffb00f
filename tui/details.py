"""Readable detail panes: an instance as aligned ``key  value`` lines, not raw JSON.

Times are the local time with the age next to it (``2026-11-30 06:12:03
(3h 2m ago)``), durations and sizes carry their unit, and every field the
daemon sent is shown (unknown ones as they are), so nothing is hidden.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gdos.model import InstanceState
from gdos.units import human_bytes, human_duration, percent

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
TIME_FIELDS = frozenset({"started", "updated", "created", "ended", "last_seen", "time"})


def local_time(ts: float, now: float) -> str:
    """``2026-11-30 06:12:03 (3h 2m ago)`` in the local time zone; "in ..." if ahead."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    age = now - ts
    if age >= 0:
        return f"{stamp} ({human_duration(age, fine_below=0.0)} ago)"
    return f"{stamp} (in {human_duration(-age, fine_below=0.0)})"


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


def instance_detail(view: Mapping[str, Any], metrics: Mapping[str, Any] | None, now: float) -> str:
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
    lines = [
        (name, field_text(name, facts.pop(name), now)) for name in INSTANCE_FIELDS if name in facts
    ]
    lines += [(name, field_text(name, facts[name], now)) for name in sorted(facts)]
    metrics = metrics or {}
    lines.append(("cpu", percent(metrics.get("cpu"))))  # catalogue names, as metrics.watch sends
    lines.append(("memory (rss)", human_bytes(metrics.get("rss"))))
    width = max(len(name) for name, _ in lines)
    return "\n".join(f"{name:<{width}}  {text}" for name, text in lines)
