"""``gdos audit``: the audit trail of every change; ``sessions | replay``: shells.

Bare ``gdos audit`` lists the trail (who, what, which target, how it ended).
Shell recordings are asciicast v2 files kept by the daemon; ``replay`` streams one
from the daemon and plays it at its recorded pace (``--speed`` times faster).
"""

from __future__ import annotations

import shlex
import sys
import time
from typing import Any

import typer

from gdos.cli.common import JSON_OPTION, fail, human_duration, print_json, request
from gdos.errors import ErrorCode, GdosError

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
    if json:
        print_json(rows)
        return
    from rich.markup import escape

    from gdos.cli.tables import Column, print_table

    columns = [
        Column("TIME"),
        Column("USER", drop=1),
        Column("ACTION"),
        Column("TARGET", wrap=True),
        Column("RESULT"),
        Column("DETAIL", drop=2, wrap=True),
    ]
    cells = []
    for r in rows:
        result = "[green]ok[/]" if r["result"] == "ok" else f"[red]{escape(r['result'])}[/]"
        detail = r["detail"]
        if isinstance(detail, dict):
            detail = " ".join(f"{k}={v}" for k, v in detail.items() if v is not None)
        cells.append(
            [
                time.strftime("%m-%d %H:%M:%S", time.localtime(r["time"])),
                escape(r["user"] or "-"),
                escape(r["action"]),
                escape(r["target"] or "-"),
                result,
                escape(str(detail or "")),
            ]
        )
    print_table(columns, cells)


@app.command("sessions")
def sessions(
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="How many."),
    json: bool = JSON_OPTION,
) -> None:
    """Shell sessions, newest first: who, node, command, start, duration, status, exit."""
    rows = request("shell.sessions", limit=limit)["sessions"]
    if json:
        print_json(rows)
        return
    from rich.markup import escape

    from gdos.cli.tables import Column, print_table

    columns = [
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
    cells = []
    for s in rows:
        ended = s["ended"] or time.time()
        cells.append(
            [
                str(s["id"]),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["started"])),
                s["user"] or "-",
                s["node"],
                s["remote_user"] or "-",
                s["status"],
                "-" if s["exit_code"] is None else str(s["exit_code"]),
                human_duration(ended - s["started"]),
                escape(shlex.join(s["argv"])) if s["argv"] else "(login shell)",
            ]
        )
    print_table(columns, cells)


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

    out = sys.stdout.buffer

    def write(text: str) -> None:
        out.write(text.encode("utf-8", "replace"))
        out.flush()

    try:
        await cast.play(chunks(), write, speed, idle_limit)
    except cast.CastError as exc:
        raise GdosError(ErrorCode.BAD_FRAME, f"session {session_id}: {exc}.") from None
