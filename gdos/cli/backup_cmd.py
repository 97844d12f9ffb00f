"""``gdos backup create | list | restore``: copies of the daemon's state database."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from gdos.cli.common import JSON_OPTION, human_bytes, request, stamp
from gdos.cli.output import Output, fail, output
from gdos.cli.tables import Column
from gdos.errors import ErrorCode, GdosError

app = typer.Typer(help="Back up and restore the daemon's state database.", no_args_is_help=True)

RESTART_WAIT = 60.0
COLUMNS = [Column("TIME"), Column("SIZE"), Column("SCHEMA", drop=1), Column("PATH", wrap=True)]


@app.command()
def create(
    path: Path | None = typer.Argument(
        None, help="File to write (default: state/backups/gdos-YYYYmmdd-HHMMSS.db)."
    ),
    json: bool = JSON_OPTION,
) -> None:
    """Take an online, consistent copy while the daemon keeps serving."""
    made = request("backup.create", path=str(path.absolute()) if path else None)
    output(json).show(
        made,
        lambda out, m: out.line(f"{m['path']} ({human_bytes(m['size'])}, {m['seconds']:.2f}s)"),
    )


@app.command("list")
def list_backups(json: bool = JSON_OPTION) -> None:
    """Backups in the daemon's state/backups folder, oldest first."""
    output(json).show(request("backup.list")["backups"], _render_list)


def _render_list(out: Output, rows: list[dict[str, Any]]) -> None:
    cells = [
        [
            stamp(b["time"]),
            human_bytes(b["size"]),
            str(b["schema_version"] if b["schema_version"] is not None else "?"),
            b["path"],
        ]
        for b in rows
    ]
    out.table(COLUMNS, cells)


@app.command()
def restore(
    path: Path = typer.Argument(..., help="Backup file (see 'gdos backup list')."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json: bool = JSON_OPTION,
) -> None:
    """Replace the daemon's state with a backup; the daemon restarts to load it.

    The current database is kept as state/backups/pre-restore-*.db first.
    """
    if not path.is_file():
        fail(GdosError(ErrorCode.BACKUP_INVALID, f"{path} is not a file; see 'gdos backup list'."))
    if not yes:
        if not output().interactive:
            fail(GdosError(ErrorCode.INVALID_ARGUMENT, "restore replaces all state; pass --yes."))
        typer.confirm(f"Replace all daemon state with {path}?", abort=True)
    from gdos.cli.common import run

    reply = run(lambda client: client.call("backup.restore", path=str(path.absolute())))
    output(json).show({**reply, "daemon": _wait_restarted(reply)}, _render_restore)


def _render_restore(out: Output, reply: dict[str, Any]) -> None:
    counts = ", ".join(f"{n} {table}" for table, n in reply["counts"].items())
    out.lines(
        [
            f"restored {reply['path']} (schema {reply['schema_version']}): {counts}",
            f"previous state kept in {reply['pre_restore']}",
            f"daemon answering again (pid {reply['daemon']['pid']}); "
            "agents reconnect by themselves",
        ]
    )


def _wait_restarted(reply: dict[str, Any]) -> dict[str, Any]:
    """Wait until the re-executed daemon answers (a new start time)."""
    from gdos.cli.common import quiet_call

    deadline = time.monotonic() + RESTART_WAIT
    while time.monotonic() < deadline:
        info = quiet_call("ping")
        if info and info.get("started") != reply["started"]:
            return info
        time.sleep(0.1)
    fail(
        GdosError(
            ErrorCode.DAEMON_UNAVAILABLE,
            f"the daemon did not come back within {RESTART_WAIT:g}s after the restore; "
            "check its log and start it with 'gdos daemon start'.",
        )
    )
