"""``gdos dev ...``: tools for developing and measuring gdos itself."""

from __future__ import annotations

import typer

app = typer.Typer(help="Developer tools: the mock cluster for scale tests.", no_args_is_help=True)
