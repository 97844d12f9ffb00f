"""``gdos task list | show | cancel``: the history of every exec."""

from __future__ import annotations

import shlex
import sys
import time

import typer

from gdos.cli.common import JSON_OPTION, human_duration, print_json, request
from gdos.names import natural_key
from gdos.safe_text import safe_cell, safe_line, safe_text

app = typer.Typer(help="List, inspect and cancel tasks.", no_args_is_help=True)


@app.command("list")
def list_tasks(
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="How many."),
    json: bool = JSON_OPTION,
) -> None:
    """Recent tasks, newest first."""
    tasks = request("task.list", limit=limit)["tasks"]
    if json:
        print_json(tasks)
        return
    from gdos.cli.tables import Column, print_table

    columns = [
        Column("ID"),
        Column("WHEN", drop=2),
        Column("USER", drop=1),
        Column("STATUS"),
        Column("OK/HOSTS"),
        Column("COMMAND", wrap=True),
    ]
    rows = []
    for t in tasks:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t["created"]))
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
    print_table(columns, rows)


@app.command()
def show(task_id: int = typer.Argument(..., help="Task id."), json: bool = JSON_OPTION) -> None:
    """One task: every host's status, exit code, duration, reason and output."""
    task = request("task.show", id=task_id)["task"]
    if json:
        print_json(task)
        return
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(task["created"]))
    tty = sys.stdout.isatty()
    out = [
        f"task {task['id']}  {task['status']}  by {task['user']}  at {when}",
        f"command: {shlex.join(task['argv'])}",
    ]
    for h in sorted(task["hosts"], key=lambda h: natural_key(h["node"])):
        duration = (h["ended"] - h["started"]) if h["ended"] and h["started"] else None
        out.append(
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
            if text and tty:  # a node's ESC sequences are shown, not run
                text = "\n".join(safe_line(line) for line in text.split("\n"))
            if text:
                note = " (truncated at 1 MiB)" if h[f"{stream}_truncated"] else ""
                out.append(f"-- {stream}{note}\n{text.rstrip()}")
    sys.stdout.write("\n".join(out) + "\n")


@app.command()
def cancel(task_id: int = typer.Argument(..., help="Task id."), json: bool = JSON_OPTION) -> None:
    """Cancel a running task on every node (process groups are killed)."""
    reply = request("task.cancel", id=task_id)
    if json:
        print_json(reply)
        return
    sys.stdout.write(f"canceling task {reply['task']} on {reply['open']} host(s)\n")
