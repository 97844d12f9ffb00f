"""node.watch: one event per tick with what changed, skipped ticks merge."""

from __future__ import annotations

import asyncio
from typing import Any

from gdos.daemon.control import Stream
from gdos.daemon.watch import NodeDiff, watch_interval, watch_nodes
from gdos.wire import protocol


def view(name: str, cpu: float | None = None) -> dict[str, Any]:
    return {"name": name, "online": True, "cpu_percent": cpu}


def test_first_event_has_every_node_then_only_changes() -> None:
    diff = NodeDiff()
    first = diff.events([view("a"), view("b")])
    assert first == [{"type": "nodes", "changed": [view("a"), view("b")], "removed": []}]
    assert diff.events([view("a"), view("b")]) == []
    assert diff.events([view("a", 12.0), view("b")]) == [
        {"type": "nodes", "changed": [view("a", 12.0)], "removed": []}
    ]
    assert diff.events([view("a", 12.0)]) == [{"type": "nodes", "changed": [], "removed": ["b"]}]


def test_first_event_is_sent_even_for_an_empty_fleet() -> None:
    assert NodeDiff().events([]) == [{"type": "nodes", "changed": [], "removed": []}]


def test_interval_has_a_floor_and_a_default() -> None:
    assert watch_interval(None) == 1.0
    assert watch_interval(0.01) == 0.2
    assert watch_interval(2) == 2.0
    assert watch_interval("junk") == 1.0


class FakeRegistry:
    def __init__(self) -> None:
        self.views = [view("a")]

    def list(self) -> list[dict[str, Any]]:
        return [dict(v) for v in self.views]


class FakeConn:
    def __init__(self) -> None:
        self.closed = False
        self.streams: dict[int, Stream] = {}
        self.sent: list[dict[str, Any]] = []

    async def write_frames(self, frames: list[bytes]) -> bool:
        self.sent.extend(protocol.decode(frame).body["event"] for frame in frames)
        return True


def test_without_credit_ticks_are_skipped_and_merged() -> None:
    async def scenario() -> list[dict[str, Any]]:
        registry, conn = FakeRegistry(), FakeConn()
        stream = Stream(conn, 7, credit=1)  # type: ignore[arg-type]
        conn.streams[7] = stream
        task = asyncio.create_task(watch_nodes(registry, conn, stream, 0.01))  # type: ignore[arg-type]
        while not conn.sent:
            await asyncio.sleep(0.01)
        for cpu in (1.0, 2.0, 3.0):  # three changes while the client grants nothing
            registry.views = [view("a", cpu), view("b")]
            await asyncio.sleep(0.05)
        assert len(conn.sent) == 1
        stream.window.grant(5)
        while len(conn.sent) < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        conn.streams.pop(7)
        await asyncio.wait_for(task, 1)
        return conn.sent

    sent = asyncio.run(scenario())
    assert sent == [
        {"type": "nodes", "changed": [view("a")], "removed": []},
        {"type": "nodes", "changed": [view("a", 3.0), view("b")], "removed": []},
    ]
