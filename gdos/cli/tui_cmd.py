"""``gdos tui``: the keyboard-driven dashboard (Textual, imported only here)."""

from __future__ import annotations

import typer

from gdos.cli.common import parse_duration
from gdos.cli.output import fail
from gdos.errors import ErrorCode, GdosError


def register(app: typer.Typer) -> None:
    app.command("tui")(tui_command)


def tui_command(
    read_only: bool = typer.Option(
        False, "--read-only", help="Look only: exec, cancel, shell and service actions are refused."
    ),
    refresh: str = typer.Option(
        "1s", "--refresh", help="How often node and instance changes are pushed (min 0.2s)."
    ),
    theme: str = typer.Option(
        "textual-dark", "--theme", help="Colour theme: a Textual built-in such as nord or gruvbox."
    ),
) -> None:
    """Open the live dashboard: nodes, services, tasks, logs, alerts, audit (? keys, ctrl+p all)."""
    seconds = parse_duration(refresh, "--refresh")
    if seconds < 0.2:
        fail(GdosError(ErrorCode.INVALID_ARGUMENT, "--refresh must be at least 0.2s."))
    from gdos.tui.app import run, theme_names

    if theme not in theme_names():
        allowed = ", ".join(theme_names())
        message = f"unknown --theme {theme!r}; use one of: {allowed}."
        fail(GdosError(ErrorCode.INVALID_ARGUMENT, message))
    run(read_only=read_only, refresh=seconds, theme=theme)
