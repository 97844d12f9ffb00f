"""The dashboard's Services view against a real daemon, a real agent and real processes.

A sleeper package is built with ``build_zip``, pushed, and deployed to one
agent as two modules of system ``app`` through the real CLI; then Textual's
pilot presses keys like an operator. Every state the view shows is also
checked where it really is: ``gdos status --json``, which reports what the
agent supervises.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from gdos.tui.app import GdosApp
from gdos.tui.forms import ConfirmScreen, DeployForm, deploy_request
from gdos.tui.services import Run, ServicesView
from gdos.tui.widgets import TextScreen
from textual.pilot import Pilot
from textual.widgets import DataTable, Label, Static

from tests.harness import Fleet
from tests.integration.services_kit import SLEEPER, ok, package, status
from tests.integration.test_tui import cell, message, rows, type_text, until

SIZE = (120, 40)
TABLE = "#svc-table"
A, B = "app/a@n1", "app/b@n1"


@pytest.fixture
def deployed(fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    """Agent n1 with app/a and app/b deployed (stopped), and GDOS_HOME set for the app."""
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    ok(fleet.gdos("package", "push", str(package(tmp_path, "sleeper", SLEEPER))))
    ok(fleet.gdos("system", "create", "app"))
    for module in ("a", "b"):
        ok(fleet.gdos("system", "add", "app", module, "--package", "sleeper"))
    ok(fleet.gdos("deploy", "app/a", "--node", "n1", "--wait"))
    monkeypatch.setenv("GDOS_HOME", str(fleet.daemon_home))
    return fleet


def run_app(app: GdosApp, scenario: Callable[[Pilot[Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.client is not None, "the connection")
            app.show_view("services")
            await pilot.pause()  # the focus moves to the services table
            await scenario(pilot)

    asyncio.run(main())


def state(app: GdosApp, instance: str) -> str:
    return cell(app, instance, "state", TABLE)


async def node_state(fleet: Fleet, instance: str) -> str | None:
    """The instance's state as ``gdos status --json`` reports it."""
    rows = await asyncio.to_thread(status, fleet)
    return rows[instance]["state"] if instance in rows else None


def select(app: GdosApp, instance: str) -> None:
    table = app.query_one(TABLE, DataTable)
    table.move_cursor(row=table.get_row_index(instance))


def progress(app: GdosApp) -> str:
    return str(app.query_one("#svc-progress", Label).render())


def test_start_then_stop_the_selected_instance(deployed: Fleet) -> None:
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: state(app, A) == "stopped", f"{A} listed as stopped")
        assert cell(app, A, "pid", TABLE) == "-" and cell(app, A, "version", TABLE) == "1.0.0"
        assert cell(app, A, "cpu", TABLE) == "-" and cell(app, A, "rss", TABLE) == "-"

        select(app, A)
        await pilot.press("S")
        await until(pilot, lambda: "start app/a@n1: ok" in progress(app), "the start outcome")
        await until(pilot, lambda: state(app, A) == "running", f"{A} running in the view")
        assert await node_state(deployed, A) == "running"
        pid = (await asyncio.to_thread(status, deployed))[A]["pid"]
        await until(pilot, lambda: cell(app, A, "pid", TABLE) == str(pid), "its pid")
        await until(pilot, lambda: cell(app, A, "uptime", TABLE).endswith("s"), "its uptime")

        await pilot.press("T")
        await until(pilot, lambda: "stop app/a@n1: ok" in progress(app), "the stop outcome")
        await until(pilot, lambda: state(app, A) == "stopped", f"{A} stopped in the view")
        assert await node_state(deployed, A) == "stopped"
        assert cell(app, A, "uptime", TABLE) == "-"

    run_app(app, scenario)


def test_rollback_key_returns_to_the_previous_version(deployed: Fleet, tmp_path: Path) -> None:
    ok(deployed.gdos("start", A))
    ok(deployed.gdos("package", "push", str(package(tmp_path, "sleeper", SLEEPER, "2.0.0"))))
    ok(deployed.gdos("deploy", "app/a", "--node", "n1", "--wait"))  # latest pushed: 2.0.0
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: cell(app, A, "version", TABLE) == "2.0.0", f"{A} at 2.0.0")
        assert (await asyncio.to_thread(status, deployed))[A]["previous_version"] == "1.0.0"
        select(app, A)
        await pilot.press("B")
        await until(pilot, lambda: "rollback app/a@n1: ok" in progress(app), "the outcome")
        await until(pilot, lambda: cell(app, A, "version", TABLE) == "1.0.0", "1.0.0 shown")
        row = (await asyncio.to_thread(status, deployed))[A]
        assert (row["version"], row["state"]) == ("1.0.0", "running")

    run_app(app, scenario)


def test_deploy_form_then_mark_two_and_start_both(deployed: Fleet) -> None:
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: state(app, A) == "stopped", f"{A} listed")
        # p: the form starts from the selected row; b goes to n1 the same way
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, DeployForm), "the deploy form")
        hint = app.screen.query_one("#deploy-hint", Label)
        await until(pilot, lambda: "a (sleeper@latest)" in str(hint.render()), "the module hint")
        assert "b (sleeper@latest)" in str(hint.render())
        await pilot.press(*["backspace"] * len("app/a"))
        await type_text(pilot, "app/b")
        await pilot.press("enter")  # the nodes field is prefilled (n1): enter submits
        await until(pilot, lambda: state(app, B) == "stopped", f"{B} deployed and listed")
        await until(pilot, lambda: "deploy app/b: ok" in progress(app), "the deploy outcome")
        assert rows(app, TABLE) == [A, B]

        view = app.query_one(ServicesView)
        table = app.query_one(TABLE, DataTable)
        await until(pilot, lambda: app.focused is table, "focus back on the table after the form")
        select(app, A)
        await until(pilot, lambda: view.selected() == A, f"{A} selected")
        await pilot.press("space")  # marks a and moves down
        await until(pilot, lambda: view.marked == {A} and view.selected() == B, "a marked, on b")
        await pilot.press("space")
        await until(pilot, lambda: view.marked == {A, B}, "both marked")
        assert cell(app, A, "mark", TABLE) == "●"
        await pilot.press("S")
        await until(pilot, lambda: "start 2 instances: ok" in progress(app), "both started")
        assert view.marked == set() and cell(app, B, "mark", TABLE).strip() == ""
        await until(pilot, lambda: {state(app, A), state(app, B)} == {"running"}, "both running")
        assert await node_state(deployed, A) == "running"
        assert await node_state(deployed, B) == "running"

    run_app(app, scenario)


def test_read_only_hides_and_refuses_changes(deployed: Fleet) -> None:
    app = GdosApp(read_only=True, refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: state(app, A) == "stopped", f"{A} listed")
        shown = {b.binding.description for b in app.screen.active_bindings.values()}
        changes = {"Start", "Stop", "Restart", "Rollback", "Deploy", "Destroy"}
        assert "Mark" in shown and not shown & changes
        select(app, A)
        for key in ("S", "B", "p", "ctrl+d"):
            app.show_message("")
            await pilot.press(key)
            await until(pilot, lambda: "read-only" in message(app), f"{key} refused")
            assert not isinstance(app.screen, DeployForm | ConfirmScreen)
        await pilot.pause(0.5)
        assert await node_state(deployed, A) == "stopped"
        assert state(app, A) == "stopped"

    run_app(app, scenario)


def test_destroy_asks_first_and_cancel_keeps_the_instance(deployed: Fleet) -> None:
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: state(app, A) == "stopped", f"{A} listed")
        select(app, A)
        await pilot.press("ctrl+d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        question = str(app.screen.query_one("#confirm-question", Label).render())
        assert A in question
        await pilot.press("enter")  # the focus is on No: enter cancels
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "dismissed")
        assert "destroy canceled" in message(app)
        await pilot.pause(0.5)
        assert state(app, A) == "stopped"
        assert await node_state(deployed, A) == "stopped"

        await pilot.press("ctrl+d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "asked again")
        await pilot.press("y")
        await until(pilot, lambda: A not in rows(app, TABLE), f"{A} gone from the view")
        assert await node_state(deployed, A) is None

        # d on an empty table says so rather than failing
        await pilot.press("d")
        await until(pilot, lambda: "no instance selected" in message(app), "nothing to describe")
        assert not app.screen.query("#text")

    run_app(app, scenario)


def test_describe_shows_fields_with_local_times_and_ages_and_focus_returns(
    deployed: Fleet,
) -> None:
    ok(deployed.gdos("start", A))
    started = float((status(deployed))[A]["started"])
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: state(app, A) == "running", f"{A} running")
        select(app, A)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, TextScreen), "the describe pane")
        text = str(app.screen.query_one("#text", Static).render())
        local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        assert re.search(rf"^started +{local} \(\d+s ago\)$", text, re.M), text
        assert re.search(r"^state +running$", text, re.M)
        assert re.search(r"^node +n1 \(online\)$", text, re.M)
        assert "{" not in text and str(int(started)) not in text  # no JSON, no epoch
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.dashboard, "the pane closed")
        assert app.focused is app.query_one(TABLE)

    run_app(app, scenario)


def test_deploy_request_from_form_fields() -> None:
    assert deploy_request(" shop/web ", "a, b") == {
        "action": "deploy",
        "target": "shop/web",
        "wait": True,
        "nodes": ["a", "b"],
    }
    assert deploy_request("shop", "all")["match"] == "*"
    assert deploy_request("shop", "web-*")["match"] == "web-*"
    for target, nodes in (("", "a"), ("shop", ""), ("shop/web@a", "a"), ("shop", "a web-*")):
        with pytest.raises(ValueError):
            deploy_request(target, nodes)


def test_run_outcome_names_each_failure() -> None:
    run = Run("start", "2 instances", total=2)
    run.results = [
        {"instance": "s/a@n1", "ok": True},
        {"instance": "s/b@n1", "ok": False, "code": "start_failed", "message": "probe failed"},
    ]
    run.settled = {"s/a@n1", "s/b@n1"}
    assert run.line() == "start 2 instances: 2/2 settled, 1 failed …"
    ok_, sentence = run.outcome()
    assert not ok_
    assert sentence.splitlines() == [
        "start 2 instances: 1 of 2 failed",
        "s/b@n1: error[start_failed]: probe failed",
    ]
    run.results = run.results[:1]
    assert run.outcome() == (True, "start 2 instances: ok (1 instance(s))")


def test_updates_touch_only_changed_cells() -> None:
    """A push changes only the cells that differ; the clock moves only uptime cells."""
    now = [1_000_000.0]
    base = {"system": "s", "kind": "managed", "restarts": 0, "version": "1", "node_online": True}
    first = [
        {**base, "instance": "s/a@n1", "module": "a", "node": "n1", "state": "stopped"},
        {
            **base,
            "instance": "s/b@n1",
            "module": "b",
            "node": "n1",
            "state": "running",
            "pid": 10,
            "started": now[0] - 5,
        },
    ]

    async def main() -> None:
        app = GdosApp(connect=False)
        async with app.run_test(size=SIZE) as pilot:
            app.show_view("services")
            view = app.query_one(ServicesView)
            view.clock = lambda: now[0]
            view.apply({"changed": first, "removed": []}, full=True)
            table = view.table
            updates: list[tuple[str, str]] = []
            real = table.update_cell

            def spy(row: Any, column: Any, value: Any, **kw: Any) -> None:
                updates.append((str(row), str(column)))
                real(row, column, value, **kw)

            table.update_cell = spy  # type: ignore[method-assign,assignment]
            started = {**first[0], "state": "running", "pid": 11, "started": now[0]}
            view.apply({"changed": [started], "removed": []})
            assert sorted(updates) == [("s/a@n1", "pid"), ("s/a@n1", "state"), ("s/a@n1", "uptime")]
            updates.clear()
            view.render_rows()
            assert updates == []
            now[0] += 2
            view.render_rows()
            assert sorted(updates) == [("s/a@n1", "uptime"), ("s/b@n1", "uptime")]
            assert rows(app, TABLE) == ["s/a@n1", "s/b@n1"]
            await pilot.pause()

    asyncio.run(main())
