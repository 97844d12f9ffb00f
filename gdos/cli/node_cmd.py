"""``gdos node list | show | rm | drain | disable | enable``."""

from __future__ import annotations

from typing import Any

import typer

from gdos.cli.common import (
    JSON_OPTION,
    ago,
    complete_node_names,
    human_duration,
    percent,
    request,
)
from gdos.cli.output import Output, output
from gdos.cli.tables import Column
from gdos.model import NodeState
from gdos.safe_text import safe_cell, safe_markup
from gdos.units import number

app = typer.Typer(help="List and inspect nodes; set their maintenance state.", no_args_is_help=True)
NAME = typer.Argument(..., help="Node name.", autocompletion=complete_node_names)


COLUMNS = [
    Column("NAME"),
    Column("STATUS"),
    Column("STATE"),
    Column("CPU", drop=1, justify="right"),
    Column("MEM", drop=2, justify="right"),
    Column("LOAD", drop=4, justify="right"),
    Column("DISK", drop=3, justify="right"),
    Column("UPTIME", drop=5),
    Column("VERSION", drop=7),
    Column("LAST SEEN", drop=6),
]


@app.command("list")
def list_nodes(json: bool = JSON_OPTION) -> None:
    """Every enrolled node with its state and latest load."""
    output(json).show(request("node.list")["nodes"], _render_list)


def _render_list(out: Output, nodes: list[dict[str, Any]]) -> None:
    rows = []
    for n in nodes:
        status = online_mark(n["online"])
        state = safe_markup(n["state"])
        state = state if n["state"] == NodeState.NORMAL else f"[yellow]{state}[/]"
        if n.get("state_reason"):
            state += f" ({safe_markup(n['state_reason'])})"
        rows.append(
            [
                safe_cell(n["name"]),
                status,
                state,
                percent(n["cpu_percent"]),
                percent(n["mem_percent"]),
                _fixed(n["load1"]),
                percent(n["disk_percent"]),
                human_duration(n["uptime"]),
                safe_cell(n["agent_version"] or "-"),
                ago(n["last_seen"]),
            ]
        )
    online = sum(1 for n in nodes if n["online"])
    out.table(COLUMNS, rows, footer=f"{online} online, {len(nodes) - online} offline")


@app.command()
def show(name: str = NAME, json: bool = JSON_OPTION) -> None:
    """All facts and the latest metrics of one node."""
    output(json).show(request("node.show", name=name)["node"], _render_node)


def online_mark(online: bool) -> str:
    """A node's link as a list shows it: green online, red offline."""
    return "[green]online[/]" if online else "[red]offline[/]"


def _fixed(value: Any) -> str:
    figure = number(value)
    return "-" if value is None else "?" if figure is None else f"{figure:.2f}"


def _render_node(out: Output, node: dict[str, Any]) -> None:
    """The rows the dashboard's ``d`` shows too (``gdos.node_detail``), times as ages,
    labelled ``label:`` as the other detail view (``daemon status``) is.

    Every label and value is node-supplied and goes through safe_markup: this
    text is Rich markup, and only the colour added here is read as markup.
    """
    from gdos.node_detail import node_rows, node_styles

    styles = node_styles(node)
    rows = []
    for label, text in node_rows(node, ago):
        shown, style = safe_markup(text), styles.pop(label, "")
        rows.append((f"{safe_markup(label)}:", f"[{style}]{shown}[/]" if style else shown))
    out.fields(rows, markup=True)


@app.command()
def rm(name: str = NAME) -> None:
    """Forget a node (its key stays; delete it with 'gdos key delete')."""
    request("node.rm", name=name)
    output().line(f"node {name} removed")


REASON = typer.Option(
    None, "--reason", "-r", help="Why (shown in node list/show, the dashboard and the audit)."
)


def _set_state(name: str, state: NodeState, json: bool, reason: str | None = None) -> None:
    def render(out: Output, reply: dict[str, Any]) -> None:
        why = f": {reply['reason']}" if reply.get("reason") else ""
        out.line(f"node {name} is now {state}{why}")

    output(json).show(request("node.set_state", name=name, state=state, reason=reason), render)


@app.command()
def drain(name: str = NAME, reason: str | None = REASON, json: bool = JSON_OPTION) -> None:
    """Maintenance: keep heartbeats and running work, take no new work."""
    _set_state(name, NodeState.MAINTENANCE, json, reason)


@app.command()
def disable(name: str = NAME, reason: str | None = REASON, json: bool = JSON_OPTION) -> None:
    """Disabled: refuse all work except heartbeats."""
    _set_state(name, NodeState.DISABLED, json, reason)


@app.command()
def enable(name: str = NAME, json: bool = JSON_OPTION) -> None:
    """Back to normal: take work again."""
    _set_state(name, NodeState.NORMAL, json)
