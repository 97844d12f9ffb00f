"""Readable detail panes (``d``): an instance or a node as aligned ``key  value`` lines.

Times are the local time with the age next to it (``2026-11-30 06:12:03
(3.0h ago)``), durations, sizes and metrics carry their unit, and every
field the daemon sent is shown (unknown ones as they are), so nothing is
hidden and no raw JSON or epoch number reaches the operator. A node's rows
are ``gdos node show``'s, from ``gdos.node_detail``.

Both panes are built by ``detail_text``: the one place where their values,
all node-supplied, go through ``gdos.safe_text`` (controls made visible, and
a ``Text`` is never read as markup), and where a state gets its colour from
the shared ``STATE_STYLE``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from rich.text import Text

from gdos.model import InstanceState
from gdos.node_detail import field_text, node_rows, node_styles, other_rows
from gdos.safe_text import safe_text
from gdos.units import STATE_STYLE, human_bytes, human_duration, percent

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


@dataclass(frozen=True)
class Field:
    """One ``label  value`` line; ``style`` colours the value (a Rich style, "" for none)."""

    label: str
    text: str
    style: str = ""


def detail_text(rows: Iterable[Field]) -> Text:
    """The rows as aligned lines; every label and value made safe here, never read as markup."""
    rows = list(rows)
    width = max((len(safe_text(r.label)) for r in rows), default=0)
    text = Text()
    for index, row in enumerate(rows):
        text.append("\n" if index else "")
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


def state_field(state: Any) -> Field:
    """The state line, coloured as ``gdos status`` and the tables colour it."""
    shown = str(state or "-")
    return Field("state", shown, STATE_STYLE.get(shown, ""))


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
    when = partial(local_time, now=now)
    rows = [
        state_field(facts.pop(name))
        if name == "state"
        else Field(name, field_text(name, facts.pop(name), when))
        for name in INSTANCE_FIELDS
        if name in facts
    ]
    rows += [Field(label, text) for label, text in other_rows(facts, when)]
    metrics = metrics or {}
    rows.append(
        Field("cpu", percent(metrics.get("cpu")))
    )  # catalogue names, as metrics.watch sends
    rows.append(Field("memory (rss)", human_bytes(metrics.get("rss"))))
    return detail_text(rows)


def node_detail(node: Mapping[str, Any], now: float) -> Text:
    """The ``d`` pane of a node: the rows of ``gdos node show`` (``gdos.node_detail``),
    times local with ages, the name, link and state coloured as the CLI colours them."""
    styles = node_styles(node)
    rows = node_rows(node, partial(local_time, now=now))
    # pop: only the first row of a label is coloured, not a same-named fact further down
    return detail_text(Field(label, text, styles.pop(label, "")) for label, text in rows)
