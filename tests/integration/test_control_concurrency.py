"""One control connection, many requests in flight (issue 13, item 7).

A request that waits (an adopt waits up to a minute for the node's answer)
must hold up neither another request on the same connection nor the stream
credit the client grants meanwhile, and each reply must reach the request it
answers. The slow request here is real: an adopt sent to an enrolled node
that answers only when the test says so.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gdos.client.control import Client
from gdos.errors import GdosError
from tests.harness import Fleet
from tests.integration.rogue import RogueNode


def _next(rogue: RogueNode, kind: str) -> dict[str, Any]:
    """The next frame of ``kind`` the daemon sends the node (others skipped)."""
    while True:
        frame = rogue.recv()
        assert frame is not None, f"no {kind} reached the node"
        if frame["k"] == kind:
            return frame


async def _adopt_while_others_run(fleet: Fleet, rogue: RogueNode) -> None:
    async with await Client.connect(fleet.daemon_home / "run" / "control.sock") as client:
        slow = asyncio.create_task(
            client.call("svc.adopt.start", timeout=90, node=rogue.name, name="web", pid=4242)
        )
        adopt = await asyncio.to_thread(_next, rogue, "svc.adopt")  # the daemon now waits
        assert not slow.done()

        ping = await client.call("ping")  # same connection, answered meanwhile
        assert ping["nodes"] == 1
        _, events = await client.stream("node.watch", interval=0.2)
        first = await anext(events)  # a stream opened and fed meanwhile too
        assert [n["name"] for n in first["changed"]] == [rogue.name]
        assert not slow.done()

        done = {"op": adopt["b"]["op"], "ok": False, "code": "process_not_found"}
        rogue.send_raw("svc.done", {**done, "message": "no process 4242 on this node"})
        with pytest.raises(GdosError) as refused:
            await slow
        assert refused.value.code == "process_not_found"  # the adopt's own answer
        await events.aclose()


def test_a_slow_request_holds_up_nothing_else_on_its_connection(fleet: Fleet) -> None:
    with RogueNode(fleet, "slow-1") as rogue:
        rogue.enroll()
        asyncio.run(_adopt_while_others_run(fleet, rogue))
        audit = fleet.gdos_json("audit", "--action", "adopt")
        assert [(r["target"], r["result"]) for r in audit] == [
            ("adopted/web@slow-1", "process_not_found")
        ]
