"""``gdos task list | show | cancel``: the history of every exec."""

from __future__ import annotations

import shlex
from typing import Any

import typer

from gdos.cli.common import JSON_OPTION, human_duration, request, stamp
from gdos.cli.output import Output, output
from gdos.cli.tables import Column
from gdos.names import natural_key
from gdos.safe_text import safe_cell, safe_line, safe_text

app = typer.Typer(help="List, inspect and cancel tasks.", no_args_is_help=True)
COLUMNS = [
    Column("ID"),
    Column("WHEN", drop=2),
    Column("USER", drop=1),
    Column("STATUS"),
    Column("OK/HOSTS"),
    Column("COMMAND", wrap=True),
]


@app.command("list")
def list_tasks(
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="How many."),
    json: bool = JSON_OPTION,
) -> None:
    """Recent tasks, newest first."""
    output(json).show(request("task.list", limit=limit)["tasks"], _render_list)


def _render_list(out: Output, tasks: list[dict[str, Any]]) -> None:
    rows = []
    for t in tasks:
        when = stamp(t["created"])
        rows.append(
            [
                str(t["id"]),
                when,
                safe_cell(t["user"] or "-"),
                safe_cell(t["status"]),
                f"{t['succeeded']}/{t['hosts']}",
                safe_cell(shlex.join(t["argv"])),
            ]
        )
    out.table(COLUMNS, rows)


@app.command()
def show(task_id: int = typer.Argument(..., help="Task id."), json: bool = JSON_OPTION) -> None:
    """One task: every host's status, exit code, duration, reason and output."""
    output(json).show(request("task.show", id=task_id)["task"], _render_task)


def _render_task(out: Output, task: dict[str, Any]) -> None:
    when = stamp(task["created"])
    lines = [
        f"task {task['id']}  {task['status']}  by {task['user']}  at {when}",
        f"command: {shlex.join(task['argv'])}",
    ]
    for h in sorted(task["hosts"], key=lambda h: natural_key(h["node"])):
        duration = (h["ended"] - h["started"]) if h["ended"] and h["started"] else None
        lines.append(
            "\n== "
            + safe_text(
                f"{h['node']}: {h['status']}  exit {h['exit_code']}  "
                f"{human_duration(duration)}  {h['reason'] or ''}".rstrip()
            )
        )
        for stream in ("stdout", "stderr"):
            text = (
                h[stream].decode("utf-8", "replace")
                if isinstance(h[stream], bytes)
                else str(h[stream])
            )
            if text and out.tty:  # a node's ESC sequences are shown, not run
                text = "\n".join(safe_line(line) for line in text.split("\n"))
            if text:
                note = " (truncated at 1 MiB)" if h[f"{stream}_truncated"] else ""
                lines.append(f"-- {stream}{note}\n{text.rstrip()}")
    out.lines(lines)


@app.command()
def cancel(task_id: int = typer.Argument(..., help="Task id."), json: bool = JSON_OPTION) -> None:
    """Cancel a running task on every node (process groups are killed)."""
    output(json).show(
        request("task.cancel", id=task_id),
        lambda out, r: out.line(f"canceling task {r['task']} on {r['open']} host(s)"),
    )
