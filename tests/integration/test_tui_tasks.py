"""The Tasks view against a real daemon and real agents: streamed output and cancel.

An exec started from the dashboard's form follows ``exec.start``'s stream;
each host's output lands in the log pane as ``host | line``, and ``c`` asks
before canceling a task that still runs. What the view shows is checked
against the daemon's own record of the task (``task.show``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from gdos.tui.app import GdosApp
from gdos.tui.forms import ConfirmScreen
from gdos.tui.tasks import OUTPUT_LINES, ExecForm
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, RichLog
from textual.widgets.data_table import ColumnKey

from tests.harness import START_WAIT, Fleet
from tests.integration.test_tui import cell, message, rows, run_app, until

HOSTS = "#hosts-table"


@pytest.fixture
def two_nodes(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    token = fleet.token()
    for name in ("n1", "n2"):
        fleet.start_agent(name, join=token)
    fleet.wait_online("n1", "n2")
    monkeypatch.setenv("GDOS_HOME", str(fleet.daemon_home))
    return fleet


def log_lines(app: GdosApp) -> list[str]:
    return [strip.text.rstrip() for strip in app.query_one("#exec-log", RichLog).lines]


async def start_exec(pilot: Pilot[Any], targets: str, command: str) -> None:
    app = pilot.app
    await pilot.press("x")
    await until(pilot, lambda: isinstance(app.screen, ExecForm), "the exec form")
    app.screen.query_one("#exec-targets", Input).value = targets
    app.screen.query_one("#exec-command", Input).value = command
    app.screen.query_one("#exec-command", Input).focus()
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, ExecForm), "the form closed")


async def task_status(app: GdosApp, task_id: int) -> str:
    assert app.client is not None
    return str((await app.client.call("task.show", id=task_id))["task"]["status"])


def test_exec_output_streams_per_host_into_a_bounded_pane(two_nodes: Fleet) -> None:
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.client is not None, "the connection")
        app.show_view("tasks")
        await pilot.pause()
        assert app.query_one("#exec-log", RichLog).max_lines == OUTPUT_LINES
        command = "sh -c 'echo hello-from-$0; printf part; sleep 0.3; echo ial; echo oops >&2' x"
        await start_exec(pilot, "n1 n2", command)

        def shown(line: str) -> bool:
            return line in log_lines(app)

        def succeeded(node: str) -> bool:
            return cell(app, node, "status", HOSTS) == "succeeded"

        for node in ("n1", "n2"):
            for line in ("hello-from-x", "partial", "oops"):  # oops is stderr
                await until(pilot, partial(shown, f"{node} | {line}"), f"{node} | {line}")
            await until(pilot, partial(succeeded, node), f"{node}'s row")
        title = app.query_one("#run-title", Label)
        await until(pilot, lambda: "— succeeded" in str(title.render()), "the final status")

    run_app(app, scenario)


def test_cancel_asks_first_and_no_keeps_the_task_running(two_nodes: Fleet) -> None:
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.client is not None, "the connection")
        app.show_view("tasks")
        await pilot.pause()
        await start_exec(pilot, "n1", "sleep 30")
        await until(pilot, lambda: cell(app, "n1", "status", HOSTS) == "running", "n1 running")
        await until(pilot, lambda: rows(app, "#tasks-table"), "the task in the list")
        task_id = int(rows(app, "#tasks-table")[0])
        table = app.query_one("#tasks-table", DataTable)
        table.focus()
        table.move_cursor(row=0)

        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        question = str(app.screen.query_one("#confirm-question", Label).render())
        assert f"task {task_id}" in question
        await pilot.press("n")
        await until(pilot, lambda: f"task {task_id} left running" in message(app), "declined")
        assert app.focused is table  # the keys go back to the list after the question
        await pilot.pause(0.5)
        assert await task_status(app, task_id) == "running"
        assert cell(app, "n1", "status", HOSTS) == "running"

        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "asked again")
        await pilot.press("y")
        await until(pilot, lambda: cell(app, "n1", "status", HOSTS) == "canceled", "n1 canceled")
        title = app.query_one("#run-title", Label)
        await until(pilot, lambda: "— canceled" in str(title.render()), "the task canceled")
        assert await task_status(app, task_id) == "canceled"

        # an ended task is not asked about
        app.show_message("")
        await pilot.press("c")
        await until(pilot, lambda: "already ended" in message(app), "nothing to cancel")
        assert not isinstance(app.screen, ConfirmScreen)

    run_app(app, scenario)


def test_task_status_column_widens_from_running_to_succeeded(two_nodes: Fleet) -> None:
    """The STATUS column was sized by "running" and then showed "succeed"."""
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.client is not None, "the connection")
        app.show_view("tasks")
        await pilot.pause()
        await start_exec(pilot, "n1", "sleep 3")
        listed = partial(rows, app, "#tasks-table")
        await until(pilot, listed, "the task in the list", timeout=START_WAIT)
        task = rows(app, "#tasks-table")[0]
        assert cell(app, task, "status", "#tasks-table") == "running"
        await until(
            pilot,
            lambda: cell(app, task, "status", "#tasks-table") == "succeeded",
            "the task succeeded in the list",
            timeout=START_WAIT,  # the agent starts `sleep 3`, then reports
        )
        # DataTable measures updated cells when its message queue is idle, so a
        # loaded machine can show "succeeded" a moment before the column widens.
        status = app.query_one("#tasks-table", DataTable).columns[ColumnKey("status")]
        await until(
            pilot, lambda: status.content_width >= len("succeeded"), "the STATUS column widened"
        )

    run_app(app, scenario)
