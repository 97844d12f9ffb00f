"""Live subscriptions (``node.watch``, ``svc.watch``): push what changed, never a queue.

Each subscriber remembers the view it last sent for every node. Every
``interval`` it compares the registry's current views with that memory and
sends one event with the changed views and the removed names. When the
client has granted no credit the tick is skipped: nothing is queued, and the
next tick's difference (against what the client really got) covers every
change in between, so a slow dashboard sees at most one pending snapshot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gdos.daemon.control import ControlConnection, Stream
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

    def event(self, views: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The next event, or None when nothing changed since the last one."""
        current = {v[self.key]: v for v in views}
        changed = [v for name, v in current.items() if self.sent.get(name) != v]
        removed = sorted(name for name in self.sent if name not in current)
        if not (changed or removed or self.first):
            return None
        self.first = False
        self.sent = current
        return {"type": self.kind, "changed": changed, "removed": removed}


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
            event = diff.event(source())
            if event is not None and not await stream.send(event):
                return
        await asyncio.sleep(interval)
