"""A watch whose first snapshot is larger than one frame arrives whole, in slices.

The daemon's store is seeded with a fleet of known nodes (as if each had said
hello once) whose node views together exceed ``MAX_FRAME_BYTES``; the real
client then subscribes to ``node.watch`` on the real daemon and must receive
every node exactly once, each event within the frame limit.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack

from gdos.client.control import Client
from gdos.daemon.store import Store
from gdos.paths import resolve
from gdos.wire import protocol
from tests.harness import Fleet, wait_for

NODES = 10_000
# A long distro name, as an agent may report it (the facts schema allows 256 characters).
DISTRO = "Ubuntu 24.04.1 LTS " + "x" * 230


def _seed(fleet: Fleet) -> list[str]:
    """Stop the daemon, record ``NODES`` nodes in its store, start it again."""
    assert fleet.daemon is not None
    fleet.stop_daemon()
    wait_for(lambda: not fleet.daemon or not fleet.daemon.alive(), 10, "daemon stopped")
    names = [f"big-{i:05d}" for i in range(NODES)]
    store = Store(resolve().db)
    try:
        store.db.execute("BEGIN")
        for name in names:
            facts = {"distro": DISTRO, "arch": "x86_64", "cpu_threads": 64, "memory_total": 2**38}
            store.save_node_hello(name, None, facts, "1.0.0", "198.18.0.1")
        store.db.execute("COMMIT")
    finally:
        store.close()
    fleet.start_daemon()
    return names


async def _snapshot(expected: set[str]) -> tuple[list[dict[str, Any]], list[int]]:
    """The events until every expected node arrived, and each event's encoded size."""
    async with await Client.connect(resolve().control_socket) as client:
        _, events = await client.stream("node.watch", interval=0.5)
        got: list[dict[str, Any]] = []
        sizes: list[int] = []
        seen: set[str] = set()
        async for event in events:
            got.append(event)
            sizes.append(len(msgpack.packb(event, use_bin_type=True)))
            seen.update(v["name"] for v in event["changed"])
            if seen >= expected:
                break
        return got, sizes


def test_a_first_snapshot_larger_than_a_frame_arrives_whole(fleet: Fleet, monkeypatch: Any) -> None:
    monkeypatch.setenv("GDOS_HOME", str(fleet.daemon_home))
    names = _seed(fleet)

    events, sizes = asyncio.run(asyncio.wait_for(_snapshot(set(names)), 30))

    assert sum(sizes) > protocol.MAX_FRAME_BYTES  # the snapshot could not be one event
    assert len(events) > 1
    assert all(size < protocol.MAX_FRAME_BYTES for size in sizes)
    received = [v["name"] for e in events for v in e["changed"]]
    assert sorted(received) == sorted(names)  # every node, each exactly once
    assert all(e["removed"] == [] for e in events)
    assert [bool(e.get("more")) for e in events] == [True] * (len(events) - 1) + [False]
