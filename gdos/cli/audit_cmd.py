"""``gdos audit``: the audit trail of every change; ``sessions | replay``: shells.

Bare ``gdos audit`` lists the trail (who, what, which target, how it ended).
Shell recordings are asciicast v2 files kept by the daemon; ``replay`` streams one
from the daemon and plays it at its recorded pace (``--speed`` times faster).
"""

from __future__ import annotations

import shlex
import time
from typing import Any

import typer

from gdos.cli.common import JSON_OPTION, human_duration, request, stamp
from gdos.cli.output import Output, fail, output
from gdos.cli.tables import Column
from gdos.errors import ErrorCode, GdosError
from gdos.safe_text import escape_markup

TRAIL_COLUMNS = [
    Column("TIME"),
    Column("USER", drop=1),
    Column("ACTION"),
    Column("TARGET", wrap=True),
    Column("RESULT"),
    Column("DETAIL", drop=2, wrap=True),
]
SESSION_COLUMNS = [
    Column("ID"),
    Column("STARTED", drop=3),
    Column("USER", drop=2),
    Column("NODE"),
    Column("AS", drop=4),
    Column("STATUS"),
    Column("EXIT"),
    Column("DURATION", drop=1),
    Column("COMMAND", wrap=True),
]

app = typer.Typer(
    help="The audit trail of changes; shell sessions and their replay.",
    invoke_without_command=True,
)


@app.callback()
def trail(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since", help="Only newer rows, e.g. 1h or 2d."),
    user: str | None = typer.Option(None, "--user", help="Only this OS user."),
    action: str | None = typer.Option(
        None, "--action", help="Only this action ('node' matches node.*; globs allowed)."
    ),
    limit: int = typer.Option(50, "-n", "--limit", min=1, help="How many (the newest)."),
    json: bool = JSON_OPTION,
) -> None:
    """List the audit trail, oldest of the selection first (without a sub-command)."""
    if ctx.invoked_subcommand is not None:
        return
    from gdos.cli.common import parse_duration

    after = time.time() - parse_duration(since, "--since") if since else None
    rows = request("audit.list", since=after, user=user, action=action, limit=limit)["rows"]
    output(json).show(rows, _render_trail)


def _render_trail(out: Output, rows: list[dict[str, Any]]) -> None:
    cells = []
    for r in rows:
        result = "[green]ok[/]" if r["result"] == "ok" else f"[red]{escape_markup(r['result'])}[/]"
        detail = r["detail"]
        if isinstance(detail, dict):
            detail = " ".join(f"{k}={v}" for k, v in detail.items() if v is not None)
        cells.append(
            [
                stamp(r["time"], "%m-%d %H:%M:%S"),
                escape_markup(r["user"] or "-"),
                escape_markup(r["action"]),
                escape_markup(r["target"] or "-"),
                result,
                escape_markup(str(detail or "")),
            ]
        )
    out.table(TRAIL_COLUMNS, cells)


@app.command("sessions")
def sessions(
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="How many."),
    json: bool = JSON_OPTION,
) -> None:
    """Shell sessions, newest first: who, node, command, start, duration, status, exit."""
    output(json).show(request("shell.sessions", limit=limit)["sessions"], _render_sessions)


def _render_sessions(out: Output, rows: list[dict[str, Any]]) -> None:
    cells = []
    for s in rows:
        ended = s["ended"] or time.time()
        cells.append(
            [
                str(s["id"]),
                stamp(s["started"]),
                s["user"] or "-",
                s["node"],
                s["remote_user"] or "-",
                s["status"],
                "-" if s["exit_code"] is None else str(s["exit_code"]),
                human_duration(ended - s["started"]),
                escape_markup(shlex.join(s["argv"])) if s["argv"] else "(login shell)",
            ]
        )
    out.table(SESSION_COLUMNS, cells)


@app.command()
def replay(
    session_id: int = typer.Argument(..., help="Session id (see 'gdos audit sessions')."),
    speed: float = typer.Option(1.0, "--speed", "-s", help="Play this many times faster."),
    idle_limit: float | None = typer.Option(
        None, "--idle-limit", "-i", help="Shorten pauses longer than this many seconds."
    ),
) -> None:
    """Play a recorded session in this terminal."""
    if speed <= 0 or (idle_limit is not None and idle_limit <= 0):
        fail(GdosError(ErrorCode.INVALID_ARGUMENT, "--speed and --idle-limit must be positive."))
    from gdos.cli.common import run

    run(lambda client: _replay(client, session_id, speed, idle_limit))


async def _replay(client: Any, session_id: int, speed: float, idle_limit: float | None) -> None:
    from collections.abc import AsyncIterator

    from gdos import cast

    _reply, events = await client.stream("shell.cast", session=session_id)

    async def chunks() -> AsyncIterator[bytes]:
        async for event in events:
            yield event["data"]

    out = output()

    def write(text: str) -> None:
        out.raw(text.encode("utf-8", "replace"))

    try:
        await cast.play(chunks(), write, speed, idle_limit)
    except cast.CastError as exc:
        raise GdosError(ErrorCode.BAD_FRAME, f"session {session_id}: {exc}.") from None
