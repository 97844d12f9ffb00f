"""``gdos top``: live load of every node (or every running instance), sorted.

Fed by the daemon's ``metrics.watch`` subscription (pushed changes with
credit, like ``node.watch``); the table is redrawn in place with rich's
Live. ``--once`` prints one table (``--json``: the rows) and exits.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer

from gdos.cli.common import JSON_OPTION, fail, parse_duration, print_json, run
from gdos.errors import ErrorCode, GdosError
from gdos.names import natural_key
from gdos.safe_text import safe_cell

Row = dict[str, Any]

# Sort keys beyond the metric names of the scope: "name" and a few aliases.
NODE_ALIASES = {"load": ("load1",), "net": ("net_rx", "net_tx"), "io": ("disk_read", "disk_write")}
INSTANCE_ALIASES = {
    "mem": ("rss",),
    "disk": ("read", "write"),
    "io": ("read", "write"),
    "files": ("open_files",),
}


def register(app: typer.Typer) -> None:
    app.command("top")(top_command)


def sort_key(sort: str, instances: bool) -> Callable[[Row], tuple[Any, ...]]:
    """Rows sort by ``sort``: names ascending, figures descending (missing last)."""
    from gdos.metric_catalog import INSTANCE_METRICS, NODE_METRICS

    metrics = [m.name for m in (INSTANCE_METRICS if instances else NODE_METRICS)]
    aliases = INSTANCE_ALIASES if instances else NODE_ALIASES
    if sort == "name":
        return lambda r: (natural_key(r.get("instance") or ""), natural_key(r["node"]))
    fields = aliases.get(sort) or ((sort,) if sort in metrics else None)
    if fields is None:
        choices = ", ".join(["name", *metrics, *aliases])
        fail(
            GdosError(ErrorCode.INVALID_ARGUMENT, f"cannot sort by {sort!r}; use one of {choices}.")
        )

    def key(row: Row) -> tuple[Any, ...]:
        values = [row.get(f) for f in fields]
        if all(v is None for v in values):
            return (1, 0.0, natural_key(row["key"]))
        return (0, -sum(v or 0.0 for v in values), natural_key(row["key"]))

    return key


def apply(rows: dict[str, Row], event: dict[str, Any]) -> None:
    """Merge one ``metrics.watch`` event into the rows by key."""
    for name in event.get("removed", []):
        rows.pop(name, None)
    for row in event.get("changed", []):
        rows[row["key"]] = row


def render(rows: list[Row], instances: bool, title: str) -> Any:
    from rich.table import Table

    from gdos.metric_catalog import INSTANCE_METRICS, NODE_METRICS

    metrics = INSTANCE_METRICS if instances else NODE_METRICS
    table = Table(box=None, header_style="bold", title=title, title_justify="left")
    if instances:
        table.add_column("INSTANCE", no_wrap=True)
    table.add_column("NODE", no_wrap=True)
    if not instances:
        table.add_column("STATUS", no_wrap=True)
    for m in metrics:
        table.add_column(m.name.upper(), justify="right", no_wrap=True)
    for row in rows:
        node = safe_cell(row["node"])
        cells = [safe_cell(row["instance"]), node] if instances else [node, _status(row)]
        cells += [m.format(row.get(m.name)) for m in metrics]
        table.add_row(*cells, style=None if instances or row["online"] else "dim")
    return table


def _status(row: Row) -> str:
    if not row["online"]:
        return "[red]offline[/]"
    return "[green]online[/]" if row["state"] == "normal" else f"[yellow]{row['state']}[/]"


def top_command(
    instances: bool = typer.Option(
        False, "--instances", "-i", help="Running instances, not nodes."
    ),
    sort: str = typer.Option("cpu", "--sort", "-s", help="name, a metric (cpu, mem, rss, ...)."),
    once: bool = typer.Option(False, "--once", help="Print one table and exit."),
    refresh: str = typer.Option("1s", "--refresh", help="How often changes are pushed (min 0.2s)."),
    json: bool = JSON_OPTION,
) -> None:
    """Live load of every node, or every running instance, sorted; Ctrl-C quits."""
    key = sort_key(sort, instances)
    interval = parse_duration(refresh, "--refresh")
    what = "instances" if instances else "nodes"
    if once or json:
        rows = sorted(run(lambda client: _first(client, instances, interval)).values(), key=key)
        if json:
            print_json(rows)
        else:
            from gdos.cli.common import console

            console().print(render(rows, instances, f"{len(rows)} {what}, by {sort}"))
        return
    try:
        run(lambda client: _live(client, instances, interval, key, what, sort))
    except KeyboardInterrupt:
        sys.stdout.write("\n")


async def _first(client: Any, instances: bool, interval: float) -> dict[str, Row]:
    """The subscription's first event: every row as it is now."""
    _, events = await client.stream("metrics.watch", instances=instances, interval=interval)
    rows: dict[str, Row] = {}
    async for event in events:
        apply(rows, event)
        break
    return rows


async def _live(
    client: Any,
    instances: bool,
    interval: float,
    key: Callable[[Row], tuple[Any, ...]],
    what: str,
    sort: str,
) -> None:
    from rich.live import Live

    from gdos.cli.common import console

    screen = console()
    _, events = await client.stream("metrics.watch", instances=instances, interval=interval)
    rows: dict[str, Row] = {}
    with Live(console=screen, auto_refresh=False, transient=False) as live:
        async for event in events:
            apply(rows, event)
            ordered = sorted(rows.values(), key=key)
            shown = ordered[: max(1, screen.size.height - 4)]
            title = f"{len(ordered)} {what}, by {sort} (showing {len(shown)}; Ctrl-C quits)"
            live.update(render(shown, instances, title), refresh=True)
