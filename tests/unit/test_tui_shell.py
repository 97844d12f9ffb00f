"""The dashboard's ``s`` key (remote shell) without a daemon: refusal and argv.

The real suspend-and-run path, on a pty, is in tests/integration/test_tui.py.
"""

from __future__ import annotations

import asyncio
import sys

import pytest
from gdos.tui.app import GdosApp, shell_argv
from gdos.tui.nodes import NodesView
from textual.widgets import Static

NODE = {"name": "web-1", "online": True, "state": "normal", "agent_version": "0.1.0"}


def press_s(app: GdosApp) -> str:
    """Show one node, select it, press ``s``; the message line afterwards."""

    async def main() -> str:
        async with app.run_test(size=(120, 40)) as pilot:
            app.query_one(NodesView).apply({"changed": [NODE]}, full=True)
            await pilot.pause()
            assert app.query_one(NodesView).selected() == "web-1"
            await pilot.press("s")
            await pilot.pause()
            return str(app.query_one("#message", Static).render())

    return asyncio.run(main())


def test_shell_argv_runs_gdos_shell_with_this_interpreter() -> None:
    # -P: the shell never imports from the dashboard's working directory (issue 13 item 1)
    argv = [sys.executable, "-P", "-m", "gdos.cli.main", "shell", "web-1"]
    assert shell_argv("web-1") == argv


def test_shell_is_refused_in_read_only_mode() -> None:
    text = press_s(GdosApp(read_only=True, connect=False))
    assert "read-only mode: shell is disabled" in text


def test_shell_without_a_suspendable_terminal_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    # Headless pilot drivers cannot suspend: the action reports it, never crashes,
    # and never starts the subprocess.
    started: list[list[str]] = []

    def call(argv: list[str]) -> int:
        started.append(argv)
        return 0

    monkeypatch.setattr("gdos.tui.app.subprocess.call", call)
    text = press_s(GdosApp(connect=False))
    assert "cannot be suspended" in text
    assert started == []


def test_shell_exit_status_is_notified(monkeypatch: pytest.MonkeyPatch) -> None:
    # With suspend stubbed out (no real terminal here), the argv reaches the
    # subprocess and its exit status becomes a notification.
    import contextlib

    calls: list[list[str]] = []

    def call(argv: list[str]) -> int:
        calls.append(argv)
        return 3

    monkeypatch.setattr("gdos.tui.app.subprocess.call", call)
    app = GdosApp(connect=False)
    monkeypatch.setattr(app, "suspend", contextlib.nullcontext)
    press_s(app)
    assert calls == [shell_argv("web-1")]
    assert any("exited with status 3" in n.message for n in app._notifications)
