"""The dashboard's observe views against a real daemon, a real agent and real services.

The test daemon takes metrics every 0.5 s. A ``counter`` service prints a
numbered line every 0.1 s; a ``sleeper`` just sleeps. Textual's pilot then
opens the node detail pane, reads instance CPU and RSS in the Services view,
follows the counter's log (and pauses it), and lists a fired alert and the
audit trail of what the test did. Every wait has a deadline (``until``).
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from gdos.tui.app import GdosApp
from gdos.tui.logs import MATCH_STYLE, LogsView
from gdos.tui.node_detail import NodeDetailScreen
from gdos.tui.records import SEVERITY_STYLE
from textual.pilot import Pilot
from textual.widgets import ContentSwitcher, DataTable, Input, Label, RichLog

from tests.harness import Fleet
from tests.integration.services_kit import SLEEPER, ok, package
from tests.integration.test_tui import cell, rows, type_text, until

SIZE = (120, 40)
COUNTER = f"""#!{sys.executable}
import time
n = 0
while True:
    print("line", n, flush=True)
    n += 1
    time.sleep(0.1)
"""
COUNT, SLEEP = "obs/count@n1", "obs/sleep@n1"


@pytest.fixture
def running(fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    """Agent n1 running obs/count (a numbered line every 0.1 s) and obs/sleep."""
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    for name, script in (("counter", COUNTER), ("sleeper", SLEEPER)):
        ok(fleet.gdos("package", "push", str(package(tmp_path, name, script))))
    ok(fleet.gdos("system", "create", "obs"))
    ok(fleet.gdos("system", "add", "obs", "count", "--package", "counter"))
    ok(fleet.gdos("system", "add", "obs", "sleep", "--package", "sleeper"))
    ok(fleet.gdos("deploy", "obs", "--node", "n1", "--wait"))
    ok(fleet.gdos("start", "obs", "--wait"))
    monkeypatch.setenv("GDOS_HOME", str(fleet.daemon_home))
    return fleet


def run_app(app: GdosApp, scenario: Callable[[Pilot[Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.client is not None, "the connection")
            await scenario(pilot)

    asyncio.run(main())


async def command(pilot: Pilot[Any], word: str) -> None:
    await pilot.press("colon")
    await type_text(pilot, word)
    await pilot.press("enter")
    await pilot.pause()


def numbers(app: GdosApp) -> list[int]:
    """The counter's line numbers in the Logs pane, in order."""
    lines = [strip.text for strip in app.query_one("#logs-log", RichLog).lines]
    return [int(m.group(1)) for line in lines if (m := re.search(r"line (\d+)", line))]


def test_node_detail_pane_charts_history_and_services_show_usage(running: Fleet) -> None:
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: rows(app) == ["n1"], "the node row")
        app.query_one("#nodes-table", DataTable).focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, NodeDetailScreen), "the detail pane")
        pane = app.screen
        assert isinstance(pane, NodeDetailScreen)
        await until(pilot, lambda: len(pane.sparkline_data("cpu")) >= 4, "4 CPU samples")
        for name in ("cpu", "mem", "net_rx", "net_tx"):
            assert pane.sparkline_data(name), f"no {name} history"
        summary = str(pane.query_one("#summary-cpu", Label).render())
        assert re.match(r"now [\d.]+%   min [\d.]+%   max [\d.]+%", summary), summary
        assert "/s" in str(pane.query_one("#summary-net_rx", Label).render())
        facts = str(pane.query_one("#detail-facts").render())
        assert "online" in facts and "agent" in facts
        # refreshed while open: more samples arrive (every 0.5 s), at most once a second
        seen = len(pane.sparkline_data("cpu"))
        await until(pilot, lambda: len(pane.sparkline_data("cpu")) > seen, "a newer sample")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, NodeDetailScreen), "closed")

        # per-instance CPU and RSS come from metrics.watch into the Services view
        app.show_view("services")
        await until(pilot, lambda: cell(app, SLEEP, "cpu", "#svc-table").endswith("%"), "CPU")
        rss = cell(app, SLEEP, "rss", "#svc-table")
        assert rss.endswith("iB") or rss.endswith(" B"), rss

    run_app(app, scenario)


def test_logs_follow_an_instance_pause_resume_and_highlight(running: Fleet) -> None:
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        app.show_view("services")
        await until(pilot, lambda: cell(app, COUNT, "state", "#svc-table") == "running", COUNT)
        table = app.query_one("#svc-table", DataTable)
        table.move_cursor(row=table.get_row_index(COUNT))
        await pilot.press("l")
        await until(pilot, lambda: app.query_one(ContentSwitcher).current == "logs", ":logs")
        view = app.query_one(LogsView)
        assert app.query_one("#logs-targets", Input).value == COUNT
        await until(pilot, lambda: len(numbers(app)) >= 20, "the counter's lines")

        await pilot.press("p")
        assert "PAUSED" in str(app.query_one("#logs-status", Label).render())
        await pilot.pause(0.3)  # what was already on its way lands
        paused_at = len(numbers(app))
        await pilot.pause(1.5)  # the service prints ~15 more lines meanwhile
        assert len(numbers(app)) == paused_at, "the pane grew while paused"
        await pilot.press("p")
        await until(pilot, lambda: len(numbers(app)) >= paused_at + 15, "lines after resume")
        got = numbers(app)
        assert got == list(range(got[0], got[0] + len(got))), "lines lost or repeated"

        # / highlights a pattern in new lines; n scrolls to a match
        await pilot.press("slash")
        await type_text(pilot, "7")  # in one line of every ten at least
        await pilot.press("enter")
        assert view.pattern is not None
        start = len(numbers(app))
        await until(pilot, lambda: len(numbers(app)) > start + 12, "new lines")
        styles = [s.style for strip in view.pane.lines for s in strip if s.style]
        highlight = app.console.get_style(MATCH_STYLE)
        assert any(style.bgcolor == highlight.bgcolor for style in styles if style is not None), (
            "no highlighted match"
        )
        await pilot.press("n")
        assert not view.pane.auto_scroll
        await pilot.press("G")
        assert view.pane.auto_scroll

        # a new follow replaces the old one: the targets box takes gdos logs' syntax
        await pilot.press("f")
        box = app.query_one("#logs-targets", Input)
        assert app.focused is box
        box.value = "obs/sleep"
        await pilot.press("enter")
        await until(pilot, lambda: numbers(app) == [] and view.received >= 1, "sleeper's log")

    run_app(app, scenario)


def test_alerts_show_a_fired_rule_and_audit_lists_the_operations(running: Fleet) -> None:
    ok(
        running.gdos(
            "alert", "rule", "add", "hot", "--metric", "cpu", "--op", ">", "--value", "-1",
            "--for", "0s", "--severity", "critical",
        )
    )  # fmt: skip
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await command(pilot, "alerts")
        assert app.query_one(ContentSwitcher).current == "alerts"
        table = app.query_one("#alerts-table", DataTable)

        def fired() -> list[str]:
            return [
                key.value or "" for key in table.rows if str(table.get_cell(key, "rule")) == "hot"
            ]

        await until(pilot, fired, "the fired rule", timeout=30)
        key = fired()[0]
        assert str(table.get_cell(key, "target")) == "n1"
        assert str(table.get_cell(key, "ended")) == "firing"
        assert table.get_cell(key, "severity").style == SEVERITY_STYLE["critical"]
        assert "1 firing (1 critical" in str(app.query_one("#alerts-summary", Label).render())

        await command(pilot, "audit")
        audit = app.query_one("#audit-table", DataTable)

        def actions() -> set[str]:
            return {str(audit.get_cell(k, "action")) for k in audit.rows}

        wanted = {"package.push", "system.create", "system.add", "alert.rule.add"}
        await until(pilot, lambda: wanted <= actions(), "the test's operations")
        targets = {str(audit.get_cell(k, "target")) for k in audit.rows}
        assert {"obs", "hot"} <= targets
        # / filters the rows shown
        await pilot.press("slash")
        await type_text(pilot, "alert")
        await until(pilot, lambda: actions() == {"alert.rule.add"}, "filtered to the rule")

    run_app(app, scenario)
