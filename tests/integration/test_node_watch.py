"""node.watch through the real client against a real daemon and agent."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gdos.client.control import Client
from gdos.paths import resolve
from tests.harness import Fleet


def test_node_watch_pushes_changes(fleet: Fleet, monkeypatch: Any) -> None:
    fleet.start_agent("w1", join=fleet.token())
    fleet.wait_online("w1")
    monkeypatch.setenv("GDOS_HOME", str(fleet.daemon_home))

    async def watch() -> list[dict[str, Any]]:
        async with await Client.connect(resolve().control_socket) as client:
            reply, events = await client.stream("node.watch", interval=0.2)
            assert reply["interval"] == 0.2
            got: list[dict[str, Any]] = []
            deadline = time.monotonic() + 15
            async for event in events:
                got.append(event)
                views = {v["name"]: v for e in got for v in e["changed"]}
                if views.get("w1", {}).get("cpu_percent") is not None and len(got) > 1:
                    return got
                assert time.monotonic() < deadline, got
            return got

    events = asyncio.run(watch())
    assert events[0]["type"] == "nodes"
    assert [v["name"] for v in events[0]["changed"]] == ["w1"]
    assert all(e["removed"] == [] for e in events)
    assert all(len(e["changed"]) <= 1 for e in events[1:])
