"""``d`` on the Nodes view: a node's fields as readable lines, not raw JSON (issue 12 item 6).

Textual's pilot drives the dashboard against a real daemon: a real agent for
the readable fields (local times with ages, metrics with their units, the
drain reason, the state coloured as everywhere else), and a rogue node whose
facts carry an ESC sequence and ``[reverse]`` markup for the escaping.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from gdos.tui.app import GdosApp
from gdos.tui.widgets import TextScreen
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from gdos.units import STATE_STYLE
from tests.harness import Fleet
from tests.integration.rogue import RogueNode
from tests.integration.test_node_data import EVIL, EVIL_FACTS
from tests.integration.test_tui import rows, until
from tests.waiting import wait_for

SIZE = (160, 50)
LOCAL_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \((\d+(\.\d)?[smhd]) ago\)"


def describe(app: GdosApp, node: str) -> Any:
    """Open ``d`` on ``node`` and return (pane text, pane body) once it is shown."""

    async def scenario(pilot: Pilot[Any]) -> tuple[str, Any]:
        await until(pilot, lambda: node in rows(app), f"the {node} row", timeout=30)
        table = app.query_one("#nodes-table", DataTable)
        table.focus()
        table.move_cursor(row=table.get_row_index(node))
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, TextScreen), "the describe pane")
        screen = app.screen
        assert isinstance(screen, TextScreen)
        text = str(screen.query_one("#text", Static).render())
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.dashboard, "the pane closed")
        return text, screen.body

    async def main() -> tuple[str, Any]:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.client is not None, "the connection")
            return await scenario(pilot)

    return asyncio.run(main())


def line(text: str, label: str) -> str:
    """The value on the ``label`` line of the pane (labels are padded to one width, and
    two spaces at least part a label from its value: ``cpu`` is not ``cpu model``)."""
    found = re.search(rf"^{re.escape(label)}  +(.*)$", text, re.M)
    assert found, f"no {label!r} line in:\n{text}"
    return found.group(1)


@pytest.fixture
def drained(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    """A real agent n1, drained with a reason, that has sent metrics."""
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    result = fleet.gdos("node", "drain", "n1", "--reason", "kernel upgrade")
    assert result.returncode == 0, result.stderr
    wait_for_metrics(fleet, "n1")
    monkeypatch.setenv("GDOS_HOME", str(fleet.daemon_home))
    return fleet


def wait_for_metrics(fleet: Fleet, node: str) -> None:
    wait_for(lambda: fleet.nodes()[node]["cpu_percent"] is not None, what=f"{node}'s metrics")


def test_d_shows_the_node_readably_with_local_times_and_units(drained: Fleet) -> None:
    shown = drained.gdos_json("node", "show", "n1")
    app = GdosApp(refresh=0.2)
    text, body = describe(app, "n1")

    assert "{" not in text and '"' not in text, text  # no JSON
    for epoch in (shown["last_seen"], shown["connected_at"], shown["first_seen"]):
        assert str(int(epoch)) not in text, text  # no epoch seconds
    assert line(text, "node") == "n1"
    assert line(text, "status") == "online"
    assert line(text, "state") == "maintenance"
    assert line(text, "reason") == "kernel upgrade"
    assert re.fullmatch(LOCAL_TIME, line(text, "state since")), text
    assert re.fullmatch(LOCAL_TIME, line(text, "last seen")), text
    assert re.fullmatch(LOCAL_TIME, line(text, "connected since")), text
    assert line(text, "agent") == shown["agent_version"]
    assert line(text, "arch") == shown["facts"]["arch"]
    assert line(text, "address") == shown["address"]
    assert line(text, "hostname") == shown["facts"]["hostname"]
    # the latest metrics, each formatted by its catalogue unit
    assert re.fullmatch(r"\d+\.\d%", line(text, "cpu")), text
    assert re.fullmatch(r"\d+\.\d%", line(text, "mem")), text
    assert re.fullmatch(r"[\d.]+ (B|KiB|MiB|GiB)/s", line(text, "net_rx")), text
    assert re.fullmatch(r"\d+\.\d\d", line(text, "load1")), text
    # the state coloured as the shared state style says
    assert isinstance(body, Text)
    start = body.plain.index("maintenance")
    styles = {str(s.style) for s in body.spans if s.start <= start < s.end}
    assert STATE_STYLE["maintenance"] in styles, body.spans


def test_node_facts_are_escaped_in_the_describe_pane(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GDOS_HOME", str(fleet.daemon_home))
    with RogueNode(fleet, "evil") as rogue:
        rogue.enroll(EVIL_FACTS, version="v\x1b]0;t\x07[reverse]x")
        app = GdosApp(refresh=0.2)
        text, _ = describe(app, "evil")
    assert "\x1b" not in text and "\x07" not in text, repr(text)
    escaped = "\\x1b]0;pwned\\x07\\x1b[2J[reverse]boom[/reverse]"
    assert EVIL.startswith("\x1b]0;pwned")
    assert line(text, "hostname") == "h" + escaped  # markup shown as text, not read
    assert line(text, "kernel") == "k" + escaped
    assert line(text, "agent") == "v\\x1b]0;t\\x07[reverse]x"


def test_the_pane_keeps_its_hours_and_ages_for_old_times() -> None:
    """A time a day old reads as a local time with its age in days, never seconds."""
    from gdos.tui.details import node_detail

    now = time.time()
    node = {"name": "n9", "online": False, "state": "normal", "last_seen": now - 2 * 86400}
    text = node_detail(node, now).plain
    assert re.search(r"^last seen +\S+ \S+ \(2\.0d ago\)$", text, re.M), text
    assert re.search(r"^status +offline$", text, re.M), text
    assert re.search(r"^connected since +- \(offline\)$", text, re.M), text
    assert "labels" not in text
    labelled = node_detail({**node, "labels": {"rack": "r1", "zone": "a"}}, now).plain
    assert re.search(r"^labels +rack=r1, zone=a$", labelled, re.M), labelled
