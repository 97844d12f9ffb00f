"""The command palette and the theme option, driven by Textual's pilot.

No daemon here (``connect=False``): the palette lists views and actions
whether or not the daemon answers, and ``--theme`` is checked before
``gdos tui`` connects, so an unknown name fails fast with exit code 2.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from gdos.tui.app import GdosApp, theme_names
from gdos.tui.commands import PaletteCommand
from gdos.tui.logs import logs_request, search_pattern
from gdos.tui.nodes import NodesView
from gdos.tui.tasks import HostLines
from textual.app import InvalidThemeError
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import ContentSwitcher, Static
from typer.testing import CliRunner

from gdos.cli.main import app as cli

SIZE = (120, 40)


async def until(pilot: Pilot[Any], predicate: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def choose(pilot: Pilot[Any], text: str) -> None:
    """ctrl+p, type ``text``, run the best hit."""
    app = pilot.app
    await pilot.press("ctrl+p")
    await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
    await pilot.press(*("space" if c == " " else c for c in text))
    hits = app.screen.query_one(CommandList)
    await until(pilot, lambda: hits.option_count > 0, f"hits for {text!r}")
    await pilot.press("down", "enter")
    await until(pilot, lambda: not isinstance(app.screen, CommandPalette), "the palette closed")
    await pilot.pause()


def offline(app: GdosApp, scenario: Callable[[Pilot[Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await scenario(pilot)

    asyncio.run(main())


def message(app: GdosApp) -> str:
    return str(app.query_one("#message", Static).render())


def titles(app: GdosApp) -> list[str]:
    return [entry.title for entry in app.palette_commands(app.screen)]


def test_palette_switches_views_and_lists_the_current_views_actions() -> None:
    app = GdosApp(connect=False)

    async def scenario(pilot: Pilot[Any]) -> None:
        listed = titles(app)
        assert {"View: nodes", "View: services", "View: tasks", "Help: keys"} <= set(listed)
        assert {f"Nodes: sort by {c}" for c in ("name", "cpu", "load", "uptime")} <= set(listed)
        assert "Nodes: shell" in listed and "Services: start" not in listed
        assert {f"Theme: {name}" for name in theme_names()} <= set(listed)

        await choose(pilot, "services")
        assert app.query_one(ContentSwitcher).current == "services"
        assert app.focused is app.query_one("#svc-table")
        listed = titles(app)
        for action in ("start", "stop", "restart", "rollback", "deploy", "destroy", "mark"):
            assert f"Services: {action}" in listed
        assert "Nodes: shell" not in listed

        await choose(pilot, "view tasks")
        assert app.query_one(ContentSwitcher).current == "tasks"
        assert {"Tasks: exec", "Tasks: cancel task", "Tasks: reload"} <= set(titles(app))

        # `:` command mode still works next to the palette
        await pilot.press("colon", "n", "o", "d", "e", "s", "enter")
        await until(pilot, lambda: app.query_one(ContentSwitcher).current == "nodes", "nodes")

    offline(app, scenario)


def test_palette_sort_runs_the_same_action_as_the_key() -> None:
    app = GdosApp(connect=False)
    nodes = [
        {"name": "a", "online": True, "uptime": 10.0},
        {"name": "b", "online": True, "uptime": 99.0},
        {"name": "c", "online": False},
    ]

    async def scenario(pilot: Pilot[Any]) -> None:
        view = app.query_one(NodesView)
        view.apply({"changed": nodes}, full=True)
        await choose(pilot, "sort by uptime")
        assert view.sort_by == "uptime"
        order = [str(r.key.value) for r in view.table.ordered_rows]
        assert order == ["b", "a", "c"]  # largest first, unknown last

    offline(app, scenario)


def test_read_only_refuses_an_action_chosen_from_the_palette() -> None:
    app = GdosApp(connect=False, read_only=True)

    async def scenario(pilot: Pilot[Any]) -> None:
        app.show_view("services")
        await pilot.pause()
        await choose(pilot, "services: rollback")
        assert "read-only mode: rollback is disabled" in message(app)
        await choose(pilot, "services: destroy")
        assert "read-only mode: destroy is disabled" in message(app)
        assert app.screen is app.screen_stack[0]  # no confirmation asked
        app.show_view("tasks")
        await pilot.pause()
        await choose(pilot, "tasks: exec")
        assert "read-only mode: exec is disabled" in message(app)

    offline(app, scenario)


def test_theme_is_applied_and_switched_from_the_palette() -> None:
    app = GdosApp(connect=False, theme="nord")

    async def scenario(pilot: Pilot[Any]) -> None:
        assert app.theme == "nord"
        await choose(pilot, "theme: gruvbox")
        assert app.theme == "gruvbox"

    offline(app, scenario)
    assert GdosApp(connect=False).theme == "textual-dark"
    with pytest.raises(InvalidThemeError):
        GdosApp(connect=False, theme="nope")


def test_unknown_theme_is_refused_before_connecting(tmp_path: Any) -> None:
    # GDOS_HOME has no daemon: were it to connect, the dashboard would open and wait
    env = {"GDOS_HOME": str(tmp_path)}
    result = CliRunner().invoke(cli, ["tui", "--theme", "nope"], env=env)
    assert result.exit_code == 2
    assert "unknown --theme 'nope'" in result.output
    assert "textual-light" in result.output and "nord" in result.output


def test_palette_command_is_a_plain_record() -> None:
    entry = PaletteCommand("View: x", "help", lambda: None)
    assert entry.title == "View: x" and entry.run() is None


def test_output_lines_are_whole_and_prefixed_by_host() -> None:
    lines = HostLines(["n1", "web-10"])
    assert lines.feed("n1", "stdout", b"hel") == []
    assert lines.feed("n1", "stdout", b"lo\nwor") == [("n1     | hello", "stdout")]
    assert lines.feed("web-10", "stderr", b"oops\n") == [("web-10 | oops", "stderr")]
    assert lines.flush("n1") == [("n1     | wor", "stdout")]
    assert lines.flush("n1") == []


def test_observe_views_in_the_palette_and_command_mode() -> None:
    app = GdosApp(connect=False)

    async def scenario(pilot: Pilot[Any]) -> None:
        assert {"View: logs", "View: alerts", "View: audit", "Nodes: details"} <= set(titles(app))
        await choose(pilot, "view alerts")
        assert app.query_one(ContentSwitcher).current == "alerts"
        assert {"Alerts: filter", "Alerts: reload"} <= set(titles(app))
        await choose(pilot, "view logs")
        assert app.query_one(ContentSwitcher).current == "logs"
        logs = {"Logs: follow", "Logs: pause or resume", "Logs: highlight", "Logs: jump to end"}
        assert logs <= set(titles(app))
        await pilot.press("colon", "a", "u", "d", "i", "t", "enter")
        await until(pilot, lambda: app.query_one(ContentSwitcher).current == "audit", "audit")
        assert app.focused is app.query_one("#audit-table")
        await pilot.press("colon", "l", "o", "g", "s", "enter")
        await until(pilot, lambda: app.query_one(ContentSwitcher).current == "logs", "logs")
        # offline, a follow says so instead of failing
        await pilot.press("f")
        await pilot.press(*"shop/web", "enter")
        status = app.query_one("#logs-status")
        await until(pilot, lambda: "unreachable" in str(status.render()), "the status line")

    offline(app, scenario)


def test_logs_targets_box_reads_like_gdos_logs() -> None:
    assert logs_request("shop/web@n1, shop/api") == {
        "lines": 100,
        "follow": True,
        "targets": ["shop/web@n1", "shop/api"],
    }
    assert logs_request("n1 n2 --path /var/log/syslog")["path"] == "/var/log/syslog"
    assert logs_request("shop --file stderr")["file"] == "stderr"
    for bad in ("", "--path /x", "shop --file", "shop -n 5", "'shop"):
        with pytest.raises(ValueError):
            logs_request(bad)
    pattern = search_pattern("a(")  # not a regex: taken literally
    assert pattern is not None and pattern.search("xA(y")
    assert search_pattern("") is None


def test_deploy_form_hint_answering_after_the_form_closed_does_not_fail_the_app() -> None:
    """The module hint is asked from the daemon. An answer that arrives while the form is
    being removed (its label already gone) must be dropped, not crash the dashboard: it
    once failed a CI run. The test takes the label away itself, then lets the answer in."""
    from gdos.tui.forms import DeployForm
    from textual.widgets import Label

    release, answered = asyncio.Event(), asyncio.Event()

    async def slow_describe(system: str) -> str:
        await release.wait()
        answered.set()
        return f"{system}: a (sleeper@latest)"

    app = GdosApp(connect=False)

    async def scenario(pilot: Pilot[Any]) -> None:
        form = DeployForm("app/a", "n1", describe=slow_describe)
        app.push_screen(form)
        await until(pilot, lambda: bool(form.query("#deploy-hint")), "the form's hint label")
        await form.query_one("#deploy-hint", Label).remove()
        release.set()
        await until(pilot, answered.is_set, "the late answer")
        await pilot.pause(0.2)
        assert app.screen is form and app.is_running

    offline(app, scenario)


def test_footer_keeps_the_prompt_and_help_keys_at_80_columns() -> None:
    """At 80 columns the footer used to run off the edge and lose ``:`` and ``?``."""
    from textual.widgets._footer import FooterKey

    app = GdosApp(connect=False)

    async def scenario(pilot: Pilot[Any]) -> None:
        for view in ("nodes", "services", "tasks", "logs", "alerts", "audit"):
            app.show_view(view)

            def laid_out() -> bool:
                keys = list(app.screen.query(FooterKey))
                return bool(keys) and all(k.region.width > 0 for k in keys)

            await until(pilot, laid_out, f"the footer of {view}")
            keys = list(app.screen.query(FooterKey))
            palette = [k for k in keys if k.has_class("-command-palette")]
            shown = [k for k in keys if k not in palette]
            assert {"colon", "question_mark", "q"} <= {k.key for k in shown}, view
            assert len(shown) > 3, f"{view} shows none of its own keys"
            edge = palette[0].region.x if palette else 80
            assert all(0 < k.region.right <= edge for k in shown), (view, shown)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await scenario(pilot)

    asyncio.run(main())
