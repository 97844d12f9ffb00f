"""The dashboard driven by Textual's pilot against a real daemon and real agents.

Each test runs ``GdosApp`` headless at 120x40 with ``GDOS_HOME`` pointing at
the fleet's daemon, presses keys like an operator, and waits for what the
screen should show with a deadline (``until``), never a bare sleep. The
remote-shell key needs a real terminal to suspend, so its test drives
``gdos tui`` on a pty with pexpect instead.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from gdos.tui.app import GdosApp
from gdos.tui.nodes import NodesView
from gdos.tui.tasks import ExecForm, exec_request
from gdos.tui.widgets import health_style
from textual.pilot import Pilot
from textual.widgets import ContentSwitcher, DataTable, Input, Static

from tests.harness import START_WAIT, Fleet, short_home

SIZE = (120, 40)


async def until(
    pilot: Pilot[Any], predicate: Callable[[], Any], what: str, timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


async def type_text(pilot: Pilot[Any], text: str) -> None:
    await pilot.press(*("space" if c == " " else c for c in text))


def rows(app: GdosApp, table_id: str = "#nodes-table") -> list[str]:
    table = app.query_one(table_id, DataTable)
    return [str(row.key.value) for row in table.ordered_rows]


def cell(app: GdosApp, row: str, column: str, table_id: str = "#nodes-table") -> str:
    table = app.query_one(table_id, DataTable)
    if row not in table.rows:
        return ""
    return str(table.get_cell(row, column))


def message(app: GdosApp) -> str:
    return str(app.query_one("#message", Static).render())


def banner_shown(app: GdosApp) -> bool:
    return app.query_one("#banner").has_class("down")


def run_app(app: GdosApp, scenario: Callable[[Pilot[Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await scenario(pilot)

    asyncio.run(main())


@pytest.fixture
def two_nodes(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    token = fleet.token()
    for name in ("tb", "ta"):
        fleet.start_agent(name, join=token)
    fleet.wait_online("ta", "tb")
    monkeypatch.setenv("GDOS_HOME", str(fleet.daemon_home))
    return fleet


def test_node_rows_appear_update_filter_and_sort(two_nodes: Fleet) -> None:
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: set(rows(app)) == {"ta", "tb"}, "a row per node")
        assert rows(app) == ["ta", "tb"]
        assert cell(app, "ta", "status") == "online"
        await until(pilot, lambda: cell(app, "ta", "cpu").endswith("%"), "ta's CPU figure")
        await until(pilot, lambda: cell(app, "tb", "mem").endswith("%"), "tb's MEM figure")
        assert cell(app, "ta", "version") != "-"

        # shift-N again reverses the name order; the selected node stays selected
        table = app.query_one("#nodes-table", DataTable)
        table.move_cursor(row=table.get_row_index("tb"))
        await pilot.press("N")
        await until(pilot, lambda: rows(app) == ["tb", "ta"], "reversed name order")
        assert app.query_one(NodesView).selected() == "tb"
        await pilot.press("C")
        await until(pilot, lambda: app.query_one(NodesView).sort_by == "cpu", "cpu sort")
        await pilot.pause(0.5)  # a few updates arrive; the selection must hold
        assert app.query_one(NodesView).selected() == "tb"
        await pilot.press("N")

        # / filters by regex on the name; a half-typed regex is only marked,
        # and reported if Enter is pressed on it
        await pilot.press("slash")
        box = app.query_one("#filter", Input)
        assert app.focused is box
        await type_text(pilot, "b$")
        await until(pilot, lambda: rows(app) == ["tb"], "filtered to tb")
        await pilot.press("backspace", "[")  # "b[" is not a regex
        assert box.has_class("-invalid") and message(app) == ""
        assert not [n for n in app._notifications if "invalid" in n.message]  # no pop-up
        assert rows(app) == ["tb"]
        await pilot.press("enter")
        await until(pilot, lambda: "invalid filter /b[/" in message(app), "the bad-regex message")
        assert app.focused is box
        await pilot.press("backspace", "backspace", "enter")
        await until(pilot, lambda: set(rows(app)) == {"ta", "tb"}, "filter cleared")
        assert message(app) == ""

        # d describes the selected node with node.show's fields, one per line
        table.focus()
        table.move_cursor(row=table.get_row_index("ta"))
        await pilot.press("d")
        await until(pilot, lambda: app.screen.query("#text"), "the describe pane")
        text = str(app.screen.query_one("#text", Static).render())
        assert text.startswith("node ") and text.splitlines()[0].endswith(" ta"), text
        assert "hostname  " in text and "{" not in text
        await pilot.press("escape")

        # ? shows help, : jumps views
        await pilot.press("question_mark")
        await until(pilot, lambda: app.screen.query("#text"), "the help pane")
        assert ":tasks" in str(app.screen.query_one("#text", Static).render())
        await pilot.press("escape")
        await pilot.press("colon")
        await type_text(pilot, "tasks")
        await pilot.press("enter")
        await until(pilot, lambda: app.query_one(ContentSwitcher).current == "tasks", "tasks view")

    run_app(app, scenario)


def test_exec_form_shows_per_host_results(two_nodes: Fleet) -> None:
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.client is not None, "the connection")
        app.show_view("tasks")
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ExecForm), "the exec form")
        await type_text(pilot, "ta tb")
        await pilot.press("enter")
        await type_text(pilot, "sh -c 'exit 3'")
        await pilot.press("enter")
        await until(
            pilot,
            lambda: (
                cell(app, "ta", "status", "#hosts-table") == "failed"
                and cell(app, "tb", "status", "#hosts-table") == "failed"
            ),
            "both hosts failed",
        )
        assert cell(app, "ta", "exit", "#hosts-table") == "3"
        title = app.query_one("#run-title")
        await until(pilot, lambda: "— failed" in str(title.render()), "the task's final status")
        await until(pilot, lambda: rows(app, "#tasks-table"), "the task in the list")
        task_id = rows(app, "#tasks-table")[0]
        await until(
            pilot, lambda: cell(app, task_id, "status", "#tasks-table") == "failed", "listed"
        )

    run_app(app, scenario)


def test_read_only_refuses_exec_and_cancel(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GDOS_HOME", str(fleet.daemon_home))
    app = GdosApp(read_only=True, refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.client is not None, "the connection")
        app.show_view("tasks")
        await pilot.press("x")
        await until(pilot, lambda: "read-only" in message(app), "the refusal")
        assert not isinstance(app.screen, ExecForm)
        app.show_message("")
        await pilot.press("c")
        await until(pilot, lambda: "read-only" in message(app), "the cancel refusal")

    run_app(app, scenario)


def test_lost_daemon_shows_a_banner_until_it_is_back(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GDOS_HOME", str(fleet.daemon_home))
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.connected, "the connection")
        assert not banner_shown(app)
        await asyncio.to_thread(fleet.stop_daemon)
        await until(pilot, lambda: banner_shown(app), "the unreachable banner")
        assert "reconnecting" in str(app.query_one("#banner", Static).render())
        await asyncio.to_thread(fleet.start_daemon)
        await until(pilot, lambda: not banner_shown(app), "the banner gone after reconnect")
        assert app.client is not None

    run_app(app, scenario)


def test_exec_request_from_form_fields() -> None:
    assert exec_request("a, b", "echo 'x y'") == {
        "argv": ["echo", "x y"],
        "follow": True,
        "targets": ["a", "b"],
    }
    assert exec_request("all", "true")["all"] is True
    assert exec_request("web-*", "true")["match"] == "web-*"
    for targets, command in (("", "true"), ("a", ""), ("a web-*", "true")):
        with pytest.raises(ValueError):
            exec_request(targets, command)


def test_mock_cluster_sorts_by_cpu_with_health_colours(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    agents = 30
    home = short_home("gm-")
    fleet.homes.append(home)
    argv = [sys.executable, "-m", "gdos.cli.main", "dev", "mock-cluster"]
    argv += ["--agents", str(agents), "--join", fleet.token("--uses", str(agents))]
    fleet.agents["mock-cluster"] = fleet._spawn("mock-cluster", argv, home)
    monkeypatch.setenv("GDOS_HOME", str(fleet.daemon_home))
    app = GdosApp(refresh=0.2)

    def cpu_figures() -> list[float]:
        return [float(cell(app, name, "cpu").rstrip("%")) for name in rows(app)]

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: len(rows(app)) == agents, f"{agents} rows")
        await until(
            pilot, lambda: all(cell(app, n, "cpu").endswith("%") for n in rows(app)), "cpu figures"
        )
        table = app.query_one("#nodes-table", DataTable)
        table.move_cursor(row=table.get_row_index("sim-00007"))
        await pilot.press("C")
        await pilot.pause(0.5)  # updates keep arriving while sorted
        figures = cpu_figures()
        assert figures == sorted(figures, reverse=True)
        assert app.query_one(NodesView).selected() == "sim-00007"
        for name in rows(app):
            figure = float(cell(app, name, "cpu").rstrip("%"))
            style = str(table.get_cell(name, "cpu").style)
            assert style == health_style(figure), (name, figure, style)

    run_app(app, scenario)


def test_s_opens_a_remote_shell_in_the_real_terminal(fleet: Fleet) -> None:
    """``gdos tui`` on a pty: ``s`` suspends it, runs ``gdos shell``, and resumes."""
    import pexpect

    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    env = {**fleet.env(fleet.daemon_home), "TERM": "xterm-256color"}
    argv = ["-m", "gdos.cli.main", "tui", "--refresh", "0.2"]
    child = pexpect.spawn(sys.executable, argv, env=env, dimensions=(40, 120), timeout=START_WAIT)
    try:
        child.expect("online")
        child.send("s")
        child.expect_exact("\x1b[?1049l")  # the dashboard leaves the alternate screen
        child.send("exit 7\r")  # read by the remote login shell once it starts
        child.expect("exited with status 7")
        child.send("q")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
