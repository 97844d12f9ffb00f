"""How figures are shown to an operator: bytes, durations, percentages.

One place for the CLI and the dashboard, so a node's uptime or a task's
duration reads the same in both, and an instance state has the same colour.
"""

from __future__ import annotations

import math
from typing import Any

from gdos.model import HostStatus, InstanceState, NodeState


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a real number.

    Figures come from nodes; rows an older daemon stored unchecked may hold
    anything, and a view must render them rather than crash.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def human_bytes(value: Any) -> str:
    if value is None:
        return "-"
    if (value := number(value)) is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def human_duration(seconds: Any, fine_below: float = 10.0) -> str:
    """'1.25s', '42s', '15m', '3.5h', '2.0d'; hundredths only below ``fine_below``."""
    if seconds is None:
        return "-"
    if (seconds := number(seconds)) is None:
        return "?"
    seconds = max(0.0, seconds)
    if seconds < fine_below:
        return f"{seconds:.2f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def percent(value: Any) -> str:
    if value is None:
        return "-"
    figure = number(value)
    return "?" if figure is None else f"{figure:.0f}%"


# Instance states, coloured the same by `gdos status` and the dashboard (Rich styles),
# and the node states out of normal service (drained, disabled), yellow as in the
# node lists. Keys are enum members, equal to the state strings views look them up by.
STATE_STYLE: dict[str, str] = {
    NodeState.MAINTENANCE: "yellow",
    NodeState.DISABLED: "yellow",
    InstanceState.RUNNING: "green",
    InstanceState.STARTING: "cyan",
    InstanceState.DEPLOYING: "cyan",
    InstanceState.INSTALLING: "cyan",
    InstanceState.STOPPING: "yellow",
    InstanceState.BACKOFF: "yellow",
    InstanceState.STOPPED: "dim",
    InstanceState.FAILED: "bold red",
    InstanceState.ERROR: "red",
}

# Exec hosts and tasks (a task's statuses are a subset of a host's), coloured
# the same by `gdos exec`/`gdos task` and the dashboard.
STATUS_STYLE: dict[str, str] = {
    HostStatus.SUCCEEDED: "green",
    HostStatus.FAILED: "red",
    HostStatus.TIMED_OUT: "yellow",
    HostStatus.CANCELED: "magenta",
    HostStatus.UNREACHABLE: "red",
    HostStatus.RUNNING: "cyan",
}
