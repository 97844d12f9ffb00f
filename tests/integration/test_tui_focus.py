"""The dashboard's prompt, focus, header and order, against a real daemon and agents.

Issue 12's dashboard findings, each replayed as the operator met them:
``:svc`` typed fast opened a shell instead of switching views; the prompt was
invisible; after a ``:`` command the screen scrolled the table's headers away
and after the palette the arrow keys went nowhere; there was no header;
``g10`` sorted before ``g2``. Keys go through Textual's pilot (or, for a
burst, straight into the app's queue as a terminal read delivers them).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from gdos.tui.app import GdosApp, command_target
from gdos.tui.node_detail import NodeDetailScreen
from gdos.tui.nodes import NodesView
from gdos.tui.tasks import ExecForm
from gdos.tui.widgets import TextScreen
from textual import events
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import ContentSwitcher, DataTable, Input, Static

from tests.harness import Fleet
from tests.integration.test_tui import message, rows, type_text, until

WIDE = (160, 45)
NARROW = (80, 24)


@pytest.fixture
def three_nodes(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    """Agents g10, g2 and g1 (enrolled in that order), and GDOS_HOME for the app."""
    token = fleet.token()
    for name in ("g10", "g2", "g1"):
        fleet.start_agent(name, join=token)
    fleet.wait_online("g1", "g2", "g10")
    monkeypatch.setenv("GDOS_HOME", str(fleet.daemon_home))
    return fleet


def run_at(
    app: GdosApp, size: tuple[int, int], scenario: Callable[[Pilot[Any]], Awaitable[None]]
) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: len(rows(app)) == 3, "a row per node")
            await scenario(pilot)

    asyncio.run(main())


def view(app: GdosApp) -> str:
    return app.query_one(ContentSwitcher).current or ""


def header(app: GdosApp) -> str:
    return str(app.dashboard.query_one("#header", Static).render())


async def burst(pilot: Pilot[Any], text: str) -> None:
    """Queue every key at once, as one read from a terminal delivers a fast typist's keys."""
    for char in text:
        key = {":": "colon", "\r": "enter", " ": "space"}.get(char, char)
        pilot.app.post_message(events.Key(key, None if key == "enter" else char))
    await pilot.pause()


def test_keys_typed_fast_after_colon_go_to_the_prompt(three_nodes: Fleet) -> None:
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press(":", "s", "v", "c", "enter")  # no pause between keys
        await until(pilot, lambda: view(app) == "services", "the services view")
        assert "shell" not in message(app) and "unknown command" not in message(app)
        assert app.focused is app.query_one("#svc-table")

        # faster still: the whole line queued before the app handles its first key
        await burst(pilot, ":nodes\r")
        await until(pilot, lambda: view(app) == "nodes", "the nodes view")
        await burst(pilot, ":svc\r")
        await until(pilot, lambda: view(app) == "services", "services again")
        assert message(app) == ""

    run_at(app, WIDE, scenario)


def test_the_prompt_is_shown_and_completes_view_names(three_nodes: Fleet) -> None:
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        box = app.query_one("#command", Input)
        await pilot.press("colon", "a", "l")
        assert app.focused is box and box.display
        region = box.region
        assert region.height == 1 and region.width > 0, region  # on screen, one line
        assert app.screen.find_widget(box).region == region
        await until(pilot, lambda: "alerts" in str(box.render_line(0).text), "the completion")
        await pilot.press("tab")
        assert box.value == "alerts"
        await pilot.press("enter")
        await until(pilot, lambda: view(app) == "alerts", "the alerts view")
        assert not box.display

        # escape closes the prompt and gives the view's table the keys again
        await pilot.press("colon", "x", "escape")
        assert not box.display and app.focused is app.query_one("#alerts-table")

    run_at(app, NARROW, scenario)


def test_command_words_resolve_unique_prefixes() -> None:
    assert command_target(":svc") == "services" and command_target("se") == "services"
    assert command_target("NODES") == "nodes" and command_target("q") == "quit"
    assert command_target("a") is None  # alerts or audit
    assert command_target("vc") is None and command_target("") is None


def test_focus_returns_to_the_table_after_every_overlay(three_nodes: Fleet) -> None:
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        table = app.query_one("#nodes-table", DataTable)
        top = table.region.y

        # a : command neither scrolls the screen nor hides the column headers
        for command in (":svc\r", ":nodes\r"):
            await burst(pilot, command)
        await until(pilot, lambda: view(app) == "nodes", "back on nodes")
        await pilot.pause()
        assert app.screen.scroll_offset.y == 0 and table.scroll_offset.y == 0
        assert table.region.y == top and app.focused is table

        # the palette, closed with escape: arrows move the cursor again
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, CommandPalette), "closed")
        assert app.focused is table
        await pilot.press("down")
        assert table.cursor_row == 1
        highlighted = app.query_one(NodesView).selected()
        assert highlighted == "g2"

        # a palette action applies to the highlighted row
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await type_text(pilot, "Nodes: describe")
        hits = app.screen.query_one(CommandList)
        await until(pilot, lambda: hits.option_count > 0, "the describe entry")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TextScreen), "the describe pane")
        assert app.screen.title_text == f"node {highlighted}"
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.dashboard, "the pane closed")
        assert app.focused is table and app.query_one(NodesView).selected() == highlighted

        # the detail pane (enter), the filter, the exec form and the prompt
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, NodeDetailScreen), "the detail pane")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.dashboard, "the detail pane closed")
        assert app.focused is table
        await pilot.press("slash", "g", "escape")
        assert app.focused is table
        await pilot.press("down")
        assert table.cursor_row > 0
        await burst(pilot, ":tasks\r")
        await until(pilot, lambda: view(app) == "tasks", "the tasks view")
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ExecForm), "the exec form")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.dashboard, "the form closed")
        tasks = app.query_one("#tasks-table")
        assert app.focused is tasks

        # a view without a filter: escape on the prompt, then the palette
        await pilot.press("colon", "escape")
        assert app.focused is tasks
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.dashboard, "the palette closed")
        assert app.focused is tasks

    run_at(app, WIDE, scenario)


def test_header_names_the_view_the_fleet_the_daemon_and_read_only(three_nodes: Fleet) -> None:
    app = GdosApp(refresh=0.2, read_only=True)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: "nodes 3/3 online" in header(app), "the node counts")
        line = header(app)
        assert line.startswith(" Nodes") and "READ-ONLY" in line and "daemon " in line
        assert "unreachable" not in line
        await burst(pilot, ":svc\r")
        await until(pilot, lambda: header(app).startswith(" Services"), "the view's name")
        await asyncio.to_thread(three_nodes.agents["g2"].kill)
        await until(pilot, lambda: "nodes 2/3 online" in header(app), "g2 offline", timeout=60)

    run_at(app, NARROW, scenario)


def test_node_names_sort_naturally_in_the_dashboard_and_the_cli(three_nodes: Fleet) -> None:
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        assert rows(app) == ["g1", "g2", "g10"]
        await pilot.press("N")  # reversed
        await until(pilot, lambda: rows(app) == ["g10", "g2", "g1"], "reversed natural order")

    run_at(app, NARROW, scenario)
    natural = ["g1", "g2", "g10"]
    assert [n["name"] for n in three_nodes.gdos_json("node", "list")] == natural
    listed = three_nodes.gdos("node", "list").stdout.splitlines()[1:4]
    assert [line.split()[0] for line in listed] == natural
    keys = three_nodes.gdos("key", "list").stdout.splitlines()[1:4]
    assert [line.split()[0] for line in keys] == natural
    top = json.loads(three_nodes.gdos("top", "--once", "--sort", "name", "--json").stdout)
    assert [row["node"] for row in top] == natural
    task = json.loads(three_nodes.gdos("exec", "--all", "--json", "--", "true").stdout)
    shown = three_nodes.gdos("task", "show", str(task["id"])).stdout
    sections = [line.split()[1] for line in shown.splitlines() if line.startswith("== ")]
    assert sections == [f"{name}:" for name in natural]
