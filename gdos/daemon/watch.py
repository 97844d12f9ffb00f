"""Live subscriptions (``node.watch``, ``svc.watch``, ``metrics.watch``): push what changed.

Each subscriber remembers the view it last sent for every key. Every
``interval`` it compares the source's current views with that memory and
sends what changed, the changed views and the removed names: one event, or,
when they would not fit well in one frame (the first snapshot of thousands of
nodes or instances), several of at most ``EVENT_BUDGET_BYTES`` of entries,
all but the last marked ``more``. Clients apply ``changed`` as upserts and
``removed`` as deletions, so the slices add up to the same result.

Never a queue: when the client has granted no credit the tick is skipped, and
the next tick's difference (against what the client really got) covers every
change in between, so a slow dashboard sees at most one pending snapshot.
Each slice takes credit like any event; the slices of one difference wait for
it in turn, and are that one pending snapshot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gdos.daemon.control import EVENT_BUDGET_BYTES, ControlConnection, Stream, packed_size, slices
from gdos.daemon.registry import NodeRegistry

DEFAULT_INTERVAL = 1.0
MIN_INTERVAL = 0.2


def watch_interval(value: Any) -> float:
    """The tick of a subscription: ``value`` seconds, at least ``MIN_INTERVAL``."""
    try:
        seconds = float(value if value is not None else DEFAULT_INTERVAL)
    except (TypeError, ValueError):
        seconds = DEFAULT_INTERVAL
    return max(MIN_INTERVAL, seconds)


class NodeDiff:
    """What one subscriber last received, and the difference to the source now."""

    def __init__(self, key: str = "name", kind: str = "nodes") -> None:
        self.sent: dict[str, dict[str, Any]] = {}
        self.first = True
        self.key, self.kind = key, kind

    def events(
        self, views: list[dict[str, Any]], budget: int = EVENT_BUDGET_BYTES
    ) -> list[dict[str, Any]]:
        """The next events (one, or slices of ``budget`` bytes); none when nothing changed."""
        current = {v[self.key]: v for v in views}
        changed = [v for name, v in current.items() if self.sent.get(name) != v]
        removed = sorted(name for name in self.sent if name not in current)
        if not (changed or removed or self.first):
            return []
        self.first = False
        self.sent = current
        return split_event(self.kind, changed, removed, budget)


def split_event(
    kind: str, changed: list[dict[str, Any]], removed: list[str], budget: int
) -> list[dict[str, Any]]:
    """One difference as events of at most ``budget`` encoded bytes of entries each.

    Every view and name lands in exactly one event, in order; an entry larger
    than ``budget`` travels alone. All events but the last carry ``more``.
    """
    whole: dict[str, Any] = {"type": kind, "changed": changed, "removed": removed}
    if packed_size(whole) <= budget:
        return [whole]
    tagged: list[tuple[str, Any]] = [("changed", v) for v in changed]
    tagged += [("removed", name) for name in removed]
    events: list[dict[str, Any]] = [
        {
            "type": kind,
            "changed": [v for field, v in run if field == "changed"],
            "removed": [v for field, v in run if field == "removed"],
        }
        for run in slices(tagged, budget, size=lambda entry: packed_size(entry[1]))
    ]
    for event in events[:-1]:
        event["more"] = True
    return events


async def watch_nodes(
    registry: NodeRegistry, conn: ControlConnection, stream: Stream, interval: float
) -> None:
    """Send node changes on ``stream`` until the client leaves or cancels it."""
    await watch(registry.list, NodeDiff(), conn, stream, interval)


async def watch(
    source: Callable[[], list[dict[str, Any]]],
    diff: NodeDiff,
    conn: ControlConnection,
    stream: Stream,
    interval: float,
) -> None:
    """Send what changed in ``source()`` on ``stream`` until the client leaves or cancels."""
    while not conn.closed and conn.streams.get(stream.id) is stream:
        if stream.window.credit > 0:
            for event in diff.events(source()):
                if not await stream.send(event):
                    return
        await asyncio.sleep(interval)
