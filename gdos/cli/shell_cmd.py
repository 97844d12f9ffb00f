"""``gdos shell NODE [-- CMD ARGS...]``: a shell on a node, bridged through the daemon.

Like ``ssh host [cmd]``: a pseudo-terminal when stdin is a terminal (or with
``-t``), plain pipes otherwise so binary streams pass unchanged. The work
happens in ``gdos.cli.shell_bridge``; this module only parses arguments.
"""

from __future__ import annotations

import typer

from gdos.cli.common import complete_node_names, parse_duration
from gdos.cli.exec_cmd import CommandAfterDashDash


def register(app: typer.Typer) -> None:
    app.command("shell", cls=CommandAfterDashDash, no_args_is_help=True)(shell_command)


def shell_command(
    ctx: typer.Context,
    node: str = typer.Argument(..., help="Node name.", autocompletion=complete_node_names),
    user: str | None = typer.Option(None, "--user", "-u", help="Run as this user (agent root)."),
    cwd: str | None = typer.Option(None, "--cwd", help="Working directory (default: home)."),
    tty: bool = typer.Option(
        False, "--tty", "-t", help="Force a pseudo-terminal even when stdin is not a terminal."
    ),
    idle_timeout: str | None = typer.Option(
        None, "--idle-timeout", help="Close after this long without input or output (e.g. 30m)."
    ),
) -> None:
    """Open a shell on a node (gdos shell web-1), or run a command (gdos shell web-1 -- top).

    Exits with the remote program's status, or 255 when the session was lost.
    """
    argv = ctx.meta.get("gdos.remote_argv") or []
    idle = parse_duration(idle_timeout, "--idle-timeout") if idle_timeout else None
    from gdos.cli.common import run
    from gdos.cli.shell_bridge import run_session

    code = run(
        lambda client: run_session(
            client,
            node,
            argv=argv,
            user=user,
            cwd=cwd,
            force_tty=tty,
            idle_timeout=idle,
        )
    )
    raise typer.Exit(code)
