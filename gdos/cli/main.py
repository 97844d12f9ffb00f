"""The ``gdos`` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

# Typer vendors Click; its parser errors are these classes, not the `click` package's.
from typer._click import exceptions as click

from gdos import __version__
from gdos.cli import (
    agent_cmd,
    alert_cmd,
    audit_cmd,
    backup_cmd,
    daemon_cmd,
    dev_cmd,
    exec_cmd,
    key_cmd,
    logs_cmd,
    metrics_cmd,
    node_cmd,
    package_cmd,
    service_cmd,
    shell_cmd,
    system_cmd,
    task_cmd,
    token_cmd,
    top_cmd,
    tui_cmd,
)
from gdos.cli.output import Output
from gdos.errors import GdosError

app = typer.Typer(
    name="gdos",
    help="Operate a fleet from the terminal: nodes, exec, services, logs, shell.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: Typer's rich help imports rich and markdown-it (~0.1 s),
    # paid by every `gdos --help` and every usage error.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(daemon_cmd.app, name="daemon")
app.add_typer(agent_cmd.app, name="agent")
app.add_typer(node_cmd.app, name="node")
app.add_typer(key_cmd.app, name="key")
app.add_typer(token_cmd.app, name="token")
app.add_typer(task_cmd.app, name="task")
app.add_typer(dev_cmd.app, name="dev")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(alert_cmd.app, name="alert")
app.add_typer(backup_cmd.app, name="backup")
app.add_typer(package_cmd.app, name="package")
app.add_typer(system_cmd.app, name="system")
service_cmd.register(app)
exec_cmd.register(app)
shell_cmd.register(app)
logs_cmd.register(app)
tui_cmd.register(app)
top_cmd.register(app)
metrics_cmd.register(app)


def _version(value: bool) -> None:
    if value:
        Output().line(f"gdos {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Operate a fleet from the terminal: nodes, exec, services, logs, shell."""
    if not isinstance(ctx.obj, Output):  # a test may hand in its own
        ctx.obj = Output()


def main() -> None:
    """Console-script entry: never show a traceback for an operator error.

    Click runs in non-standalone mode so that its own parser errors (unknown
    option, missing argument, bad value) reach us and are printed like every
    other gdos error: one ``error[usage]: sentence`` line, exit 2.
    """
    try:
        result = app(prog_name="gdos", standalone_mode=False)
    except GdosError as error:
        Output().error(error)
        raise SystemExit(error.exit_code) from None
    except click.NoArgsIsHelpError as shown:
        shown.show()  # a bare group or command: its help, as before
        raise SystemExit(shown.exit_code) from None
    except click.UsageError as usage:
        refusal = usage_error(usage)
        Output().error(refusal)
        raise SystemExit(refusal.exit_code) from None
    except click.ClickException as other:
        Output().error(f"error[invalid_argument]: {other.format_message()}")
        raise SystemExit(other.exit_code) from None
    except typer.Abort:
        Output().note("\naborted")
        raise SystemExit(1) from None
    raise SystemExit(result if isinstance(result, int) else 0)


def usage_error(usage: click.UsageError) -> GdosError:
    """Click's parser complaint as a gdos error naming where to read the usage."""
    from gdos.errors import ErrorCode

    path = usage.ctx.command_path if usage.ctx is not None else "gdos"
    message = usage.format_message().strip()
    if not message.endswith((".", "?", "!")):
        message += "."
    return GdosError(ErrorCode.USAGE, f"{message} See '{path} -h' for the usage.")


if __name__ == "__main__":
    main()
