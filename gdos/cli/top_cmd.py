"""``gdos top``: live load of every node (or every running instance), sorted.

Fed by the daemon's ``metrics.watch`` subscription (pushed changes with
credit, like ``node.watch``); the table, fitted like every list's
(:mod:`gdos.cli.tables`), is redrawn in place with rich's Live. ``--once``
prints one table (``--json``: the rows) and exits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from gdos.cli.common import JSON_OPTION, parse_duration, run
from gdos.cli.node_cmd import online_mark
from gdos.cli.output import Output, fail, output
from gdos.cli.tables import Column
from gdos.errors import ErrorCode, GdosError
from gdos.model import NodeState
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


def table(rows: list[Row], instances: bool) -> tuple[list[Column], list[list[Any]]]:
    """The columns and cells of ``gdos top``: who, then every metric of the scope
    (on a narrow terminal the catalogue's last metrics are hidden first)."""
    from gdos.metric_catalog import INSTANCE_METRICS, NODE_METRICS

    metrics = INSTANCE_METRICS if instances else NODE_METRICS
    columns = [
        Column("INSTANCE" if instances else "NODE"),
        Column("NODE" if instances else "STATUS"),
    ]
    columns += [Column(m.name.upper(), drop=i, justify="right") for i, m in enumerate(metrics, 1)]
    cells = []
    for row in rows:
        node = safe_cell(row["node"])
        who = [safe_cell(row["instance"]), node] if instances else [node, _status(row)]
        cells.append(who + [m.format(row.get(m.name)) for m in metrics])
    return columns, cells


def _status(row: Row) -> str:
    if not row["online"] or row["state"] == NodeState.NORMAL:
        return online_mark(row["online"])
    return f"[yellow]{row['state']}[/]"


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
    out = output(json)
    if once or json:
        rows = sorted(run(lambda client: _first(client, instances, interval)).values(), key=key)
        title = f"{len(rows)} {what}, by {sort}"
        out.show(rows, lambda out, rows: out.table(*table(rows, instances), title=title))
        return
    try:
        run(lambda client: _live(client, out, instances, interval, key, what, sort))
    except KeyboardInterrupt:
        out.line()


async def _first(client: Any, instances: bool, interval: float) -> dict[str, Row]:
    """The subscription's first snapshot: every row as it is now (a large one comes in
    several events, all but the last marked ``more``)."""
    _, events = await client.stream("metrics.watch", instances=instances, interval=interval)
    rows: dict[str, Row] = {}
    async for event in events:
        apply(rows, event)
        if not event.get("more"):
            break
    return rows


async def _live(
    client: Any,
    out: Output,
    instances: bool,
    interval: float,
    key: Callable[[Row], tuple[Any, ...]],
    what: str,
    sort: str,
) -> None:
    from rich.live import Live

    from gdos.cli.tables import fitted_table

    screen = out.console()
    _, events = await client.stream("metrics.watch", instances=instances, interval=interval)
    rows: dict[str, Row] = {}
    with Live(console=screen, auto_refresh=False, transient=False) as live:
        async for event in events:
            apply(rows, event)
            ordered = sorted(rows.values(), key=key)
            shown = ordered[: max(1, screen.size.height - 4)]
            title = f"{len(ordered)} {what}, by {sort} (showing {len(shown)}; Ctrl-C quits)"
            fitted, _ = fitted_table(screen.width, *table(shown, instances), title=title)
            live.update(fitted, refresh=True)
