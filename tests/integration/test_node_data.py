"""A misbehaving enrolled node cannot poison what operators see (issue 11, item 5).

Every value a node sends is checked against its kind's schema at the mesh
edge: the frame is refused with a counted ``bad_message`` error and nothing of
it is stored. Rows an older daemon stored with bad values still render.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Fleet, free_port, wait_for
from tests.integration.rogue import RogueNode

GOOD_STATE = {"instance": "shop/web", "state": "running", "pid": 4242, "started": 1.0e9}


def _bad_frames(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "gdos_mesh_bad_frames_frames":
            return float(family.samples[0].value)
    raise AssertionError("no bad frame counter exported")


def _clean(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "internal" not in result.stderr
    return str(result.stdout)


def test_mistyped_node_values_are_refused_counted_and_never_stored(fleet: Fleet) -> None:
    port = free_port()
    fleet.stop_daemon()
    fleet.start_daemon("--prometheus", f"127.0.0.1:{port}")
    with RogueNode(fleet, "rogue") as rogue:
        rogue.enroll({"hostname": "rogue", "memory_total": 1024})
        before = _bad_frames(port)
        refusals = [
            rogue.expect_refusal("svc.state", {"state": {**GOOD_STATE, "started": "abc"}}),
            rogue.expect_refusal("metrics", {"sample": {"cpu_percent": "abc"}}),
            rogue.expect_refusal("metrics", {"sample": {"cpu_percent": float("nan")}}),
            rogue.expect_refusal("metrics", {"sample": {"disks": [{"total": 2**64 - 1}]}}),
            rogue.expect_refusal(
                "exec.result",
                {
                    "task": 1,
                    "status": "succeeded",
                    "started": 1.0,
                    "ended": 2.0,
                    "exit_code": 2**63,
                },
            ),
            rogue.expect_refusal("svc.report", {"instances": [{**GOOD_STATE, "pid": -1}]}),
            rogue.expect_refusal("svc.state", {"state": {**GOOD_STATE, "error": "x" * 100_000}}),
            rogue.expect_refusal("log.data", {"stream": 1, "seq": 1, "lines": ["not bytes"]}),
        ]
        assert "state.started must be a number, not str" in refusals[0]
        assert "sample.cpu_percent must be a number" in refusals[1]
        assert "sample.disks[0].total" in refusals[3]
        assert "exit_code must be between" in refusals[4]
        assert _bad_frames(port) >= before + len(refusals)
        # a well-typed state from the same node is still taken: the session goes on
        rogue.send_raw("svc.state", {"state": GOOD_STATE})
        wait_for(
            lambda: fleet.gdos_json("status"),
            what="the well-typed state stored",
        )
    rows = fleet.gdos_json("status")
    assert [(r["instance"], r["started"]) for r in rows] == [("shop/web@rogue", 1.0e9)]
    _clean(fleet.gdos("status"))
    _clean(fleet.gdos("node", "list"))
    assert "rogue" in _clean(fleet.gdos("node", "show", "rogue"))


def test_bad_values_stored_by_an_older_version_still_render(fleet: Fleet) -> None:
    with RogueNode(fleet, "old") as rogue:
        rogue.enroll({"hostname": "old"})
        rogue.send_raw("svc.state", {"state": GOOD_STATE})
        wait_for(lambda: fleet.gdos_json("status"), what="instance stored")
    fleet.stop_daemon()
    db = sqlite3.connect(fleet.daemon_home / "state" / "gdos.db")
    facts = {
        "memory_total": "abc",
        "cpu_cores": "x",
        "cpu_max_mhz": [1],
        "disks": [{"mount": 5}, "junk"],
        "nics": [{"name": "eth0", "ipv4": "1.2.3.4"}],
        "gpus": {"a": 1},
    }
    with db:
        db.execute("UPDATE nodes SET facts = ?, agent_version = 7", [json.dumps(facts)])
        db.execute("UPDATE instances SET started = 'abc', pid = 'x', restarts = 'many'")
    db.close()
    fleet.start_daemon()
    for args in (("status",), ("node", "list"), ("node", "show", "old"), ("events",)):
        _clean(fleet.gdos(*args))
        _clean(fleet.gdos(*args, "--json"))
    assert "shop/web@old" in _clean(fleet.gdos("status"))
    # the instance's uptime is unknown, not a crash
    assert fleet.gdos_json("status")[0]["uptime"] is None


EVIL = "\x1b]0;pwned\x07\x1b[2J[reverse]boom[/reverse]"
EVIL_FACTS = {"hostname": "h" + EVIL, "distro": "d" + EVIL, "kernel": "k" + EVIL, "arch": "x86"}


def _enroll_evil(fleet: Fleet, rogue: RogueNode) -> None:
    rogue.enroll(EVIL_FACTS, version="v\x1b]0;t\x07[reverse]x")
    state = {**GOOD_STATE, "state": "error", "error": "e" + EVIL, "version": "1" + EVIL[:20]}
    rogue.send_raw("svc.state", {"state": state})
    wait_for(lambda: fleet.gdos_json("status"), what="the hostile state stored")


def _shown_safely(out: str) -> None:
    assert "\x1b" not in out and "\x07" not in out, repr(out)
    assert "[reverse]boom" in out, out  # markup shown as text, not interpreted
    assert "\\x1b" in out


def test_node_text_is_escaped_on_every_cli_view(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # whole cells, so the text can be checked
    with RogueNode(fleet, "evil") as rogue:
        _enroll_evil(fleet, rogue)
        for args in (("status",), ("events",), ("node", "show", "evil")):
            _shown_safely(_clean(fleet.gdos(*args)))
        listed = _clean(fleet.gdos("node", "list"))
        assert "\x1b" not in listed and "evil" in listed
        # --json stays faithful: the exact bytes the node sent, for programs to read
        shown = fleet.gdos_json("node", "show", "evil")
        assert shown["facts"]["hostname"] == EVIL_FACTS["hostname"]


def test_node_text_is_escaped_in_the_dashboard(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gdos.tui.app import GdosApp
    from textual.widgets import DataTable

    monkeypatch.setenv("GDOS_HOME", str(fleet.daemon_home))
    with RogueNode(fleet, "evil") as rogue:
        _enroll_evil(fleet, rogue)

        async def scenario() -> str:
            app = GdosApp(refresh=0.2)
            async with app.run_test(size=(160, 40)) as pilot:
                table = app.query_one("#nodes-table", DataTable)
                deadline = time.monotonic() + 30
                while "evil" not in table.rows and time.monotonic() < deadline:
                    await pilot.pause(0.05)
                return str(table.get_cell("evil", "version"))

        version = asyncio.run(scenario())
    assert version == "v\\x1b]0;t\\x07[reverse]x"
