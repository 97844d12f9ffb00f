"""Stream events that would exceed a frame travel as several, and nothing is lost.

Watch differences are split into slices, an operation's results go ahead of
its ``done`` event.

Socket-free for the splitting; one test joins the real client and a
real daemon-side ``Stream`` over a socket pair, to show that an event which
still cannot be encoded ends its stream with an error the client raises.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from gdos.client.control import Client
from gdos.daemon.control import EVENT_BUDGET_BYTES, ControlConnection
from gdos.daemon.watch import NodeDiff, split_event
from gdos.errors import ErrorCode, GdosError
from gdos.wire import protocol
from gdos.wire.transport import read_message

FLEET = 20_000  # views of ~500 bytes: about 10 MB, more than two frames


def big_view(i: int, cpu: float | None = None) -> dict[str, Any]:
    return {"name": f"node-{i:05d}", "online": False, "cpu_percent": cpu, "os": "x" * 450}


def frames(events: list[dict[str, Any]]) -> list[bytes]:
    """Each event as the daemon sends it; ``encode`` refuses one over the frame limit."""
    body = {"stream": 1, "seq": 1}
    return [protocol.encode("stream.data", {**body, "event": e}) for e in events]


def apply(rows: dict[str, Any], event: dict[str, Any]) -> None:
    """What every client does with an event: upsert the changed, drop the removed."""
    rows.update((v["name"], v) for v in event["changed"])
    for name in event["removed"]:
        rows.pop(name, None)


def check_more(events: list[dict[str, Any]]) -> None:
    assert [e.get("more", False) for e in events] == [True] * (len(events) - 1) + [False]


def test_a_first_snapshot_larger_than_a_frame_is_split_and_every_view_arrives_once() -> None:
    views = [big_view(i) for i in range(FLEET)]
    events = NodeDiff().events(views)

    assert len(events) > 2
    assert all(len(f) < protocol.MAX_FRAME_BYTES for f in frames(events))
    received = [v for e in events for v in e["changed"]]
    assert received == views  # each exactly once, in order
    assert all(e["type"] == "nodes" and e["removed"] == [] for e in events)
    check_more(events)


def test_a_large_difference_of_changes_and_removals_adds_up_to_the_source() -> None:
    diff, rows = NodeDiff(), dict[str, Any]()
    for event in diff.events([big_view(i) for i in range(FLEET)]):
        apply(rows, event)
    # Half the fleet leaves, the other half changes, one node joins.
    now = [big_view(i, cpu=1.0) for i in range(0, FLEET, 2)] + [big_view(FLEET)]
    events = diff.events(now)

    assert len(events) > 1
    assert all(len(f) < protocol.MAX_FRAME_BYTES for f in frames(events))
    removed = [name for e in events for name in e["removed"]]
    assert sorted(removed) == sorted(f"node-{i:05d}" for i in range(1, FLEET, 2))
    assert len([v for e in events for v in e["changed"]]) == len(now)
    check_more(events)
    for event in events:
        apply(rows, event)
    assert rows == {v["name"]: v for v in now}
    assert diff.events(now) == []  # nothing skipped, nothing left over


def test_a_small_difference_stays_one_event_without_more() -> None:
    events = split_event("nodes", [big_view(1)], ["gone"], EVENT_BUDGET_BYTES)
    assert events == [{"type": "nodes", "changed": [big_view(1)], "removed": ["gone"]}]


def test_an_entry_larger_than_the_budget_travels_alone() -> None:
    small, large = big_view(1), {"name": "wide", "os": "y" * 5000}
    events = split_event("nodes", [small, large, small], [], budget=1000)
    assert [e["changed"] for e in events] == [[small], [large], [small]]
    check_more(events)


def test_an_event_that_cannot_be_encoded_ends_its_stream_with_an_error_the_client_raises() -> None:
    async def scenario() -> list[dict[str, Any]]:
        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_unix_connection(sock=theirs)
        conn = ControlConnection(reader, writer)
        c_reader, c_writer = await asyncio.open_unix_connection(
            sock=ours, limit=protocol.MAX_FRAME_BYTES + 8
        )
        client = Client(c_reader, c_writer, Path("test.sock"))
        try:
            opening = asyncio.create_task(client.stream("node.watch", interval=1))
            request = await read_message(reader)
            assert request is not None and request.id is not None
            stream = conn.open_stream(request.id, protocol.CONTROL_STREAM_CREDIT)
            await conn.write("ok", {"stream": request.id}, re=request.id)
            _, events = await opening

            assert await stream.send({"changed": [{"name": "a"}], "removed": []})
            too_large = {"changed": [{"name": "b", "blob": b"z" * protocol.MAX_FRAME_BYTES}]}
            assert not await stream.send(too_large)
            assert not await stream.send({"changed": [], "removed": []})  # the stream is over
            assert request.id not in conn.streams
            got = []
            with pytest.raises(GdosError) as failed:
                async for event in events:
                    got.append(event)
            assert failed.value.code == ErrorCode.FRAME_TOO_LARGE
            assert "ended this stream" in failed.value.message
            return got
        finally:
            await client.close()
            conn.close()

    assert asyncio.run(scenario()) == [{"changed": [{"name": "a"}], "removed": []}]


def test_top_once_reads_the_whole_first_snapshot() -> None:
    from gdos.cli.top_cmd import _first

    rows = [{"key": f"n{i}", "node": f"n{i}", "online": True, "state": "normal"} for i in range(3)]
    events = split_event("rows", rows, [], budget=1)  # one row per event
    later = {"type": "rows", "changed": [{**rows[0], "online": False}], "removed": []}

    class FakeClient:
        async def stream(self, kind: str, **body: Any) -> tuple[dict[str, Any], Any]:
            async def feed() -> Any:
                for event in [*events, later]:
                    yield event

            return {}, feed()

    got = asyncio.run(_first(FakeClient(), instances=False, interval=1.0))
    assert got == {r["key"]: r for r in rows}  # all three, and not the later change


class RecordingStream:
    """Records what a stream pump sends and how it ends (no client, no credit)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.last: dict[str, Any] | None = None

    async def send(self, event: dict[str, Any]) -> bool:
        self.events.append(event)
        return True

    async def end(self, event: dict[str, Any] | None = None) -> None:
        self.last = event


def test_an_operation_outcome_larger_than_a_frame_sends_its_results_ahead_of_done() -> None:
    from gdos.cli.output import Output
    from gdos.cli.service_cmd import _follow
    from gdos.daemon.service_api import _end_with_outcome

    results = [
        {"instance": f"web/app#{i}@n{i}", "ok": False, "error": "e" * 2000} for i in range(3000)
    ]
    outcome = {"action": "start", "target": "web", "ok": False, "results": results}
    stream = RecordingStream()
    asyncio.run(_end_with_outcome(stream, outcome))  # type: ignore[arg-type]

    assert stream.last is not None and stream.last["type"] == "done"
    sent = [*stream.events, stream.last]
    assert len(sent) > 2
    assert all(len(f) < protocol.MAX_FRAME_BYTES for f in frames(sent))
    assert {e["type"] for e in stream.events} == {"results"}
    assert [r for e in sent for r in e["results"]] == results  # each once, in order

    class FakeClient:  # what `gdos start --wait` reads: the same events, added up
        async def stream(self, kind: str, **body: Any) -> tuple[dict[str, Any], Any]:
            async def feed() -> Any:
                for event in sent:
                    yield event

            return {"instances": [r["instance"] for r in results]}, feed()

    got = asyncio.run(_follow(FakeClient(), Output(), "start", "web", True, {}))
    assert got["results"] == results and got["ok"] is False


def test_a_small_operation_outcome_is_one_done_event() -> None:
    from gdos.daemon.service_api import _end_with_outcome

    outcome = {"ok": True, "results": [{"instance": "web/app#1@n1", "ok": True}]}
    stream = RecordingStream()
    asyncio.run(_end_with_outcome(stream, outcome))  # type: ignore[arg-type]
    assert stream.events == [] and stream.last == {"type": "done", **outcome}


def test_streams_that_relay_one_mesh_frame_per_event_fit_a_control_frame() -> None:
    """Exec output (live chunks, or what a result holds beyond them: one captured
    output), pty output and log lines each relay at most one mesh frame, plus a
    few labels; this is why only watches and operation results need splitting."""
    assert protocol.OUTPUT_CAP_BYTES <= protocol.MESH_FRAME_BYTES
    assert protocol.MESH_FRAME_BYTES + 64 * 1024 < protocol.MAX_FRAME_BYTES
