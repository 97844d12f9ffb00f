"""``gdos node list | show | rm | drain | disable | enable``."""

from __future__ import annotations

from typing import Any

import typer

from gdos.cli.common import (
    JSON_OPTION,
    ago,
    complete_node_names,
    human_bytes,
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


def _records(value: Any) -> list[dict[str, Any]]:
    """The maps of a fact list; a row an older daemon stored unchecked may hold anything."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _render_node(out: Output, node: dict[str, Any]) -> None:
    """Every node-supplied value goes through safe_markup: this text is Rich markup."""
    f = node.get("facts") or {}
    f = f if isinstance(f, dict) else {}
    s = safe_markup
    online = online_mark(node["online"])
    heading = [
        f"[bold]{s(node['name'])}[/]  {online}"
        f"  state {s(node['state'])}  agent {s(node['agent_version'] or '-')}",
        *_state_line(node),
    ]
    rows = [
        (
            "os",
            f"{s(f.get('distro', '-'))}  kernel {s(f.get('kernel', '-'))}"
            f"  arch {s(f.get('arch', '-'))}",
        ),
        (
            "cpu",
            f"{s(f.get('cpu_model') or '-')}  {s(f.get('cpu_cores', '-'))} cores / "
            f"{s(f.get('cpu_threads', '-'))} threads  max {s(f.get('cpu_max_mhz') or '-')} MHz",
        ),
        (
            "memory",
            f"{human_bytes(f.get('memory_total'))}  swap {human_bytes(f.get('swap_total'))}",
        ),
        ("address", f"{s(node.get('address') or '-')}  key {s(node.get('key') or '-')}"),
        ("last seen", f"{ago(node.get('last_seen'))}  first seen {ago(node.get('first_seen'))}"),
        *_hardware(f),
        *_load(node.get("metrics") or {}),
    ]
    out.fields(rows, heading, markup=True)


def _hardware(f: dict[str, Any]) -> list[tuple[str, str]]:
    """One detail row per disk, NIC and GPU the node reported."""
    s = safe_markup
    rows = [
        (
            "disk",
            f"{s(d.get('mount'))}  {s(d.get('device'))}  {s(d.get('fstype'))}"
            f"  {human_bytes(d.get('total'))}",
        )
        for d in _records(f.get("disks"))
    ]
    for nic in _records(f.get("nics")):
        addrs = [*_texts(nic.get("ipv4")), *_texts(nic.get("ipv6"))]
        rows.append(
            (
                "nic",
                f"{s(nic.get('name'))}  {s(nic.get('mac') or '-')}"
                f"  {s(', '.join(addrs) or '-')}  {s(nic.get('speed_mbps') or '-')} Mb/s",
            )
        )
    rows += [
        (
            "gpu",
            f"{s(g.get('name'))}  {human_bytes(g.get('memory_total'))}  "
            f"driver {s(g.get('driver'))}  cc {s(g.get('compute_capability'))}",
        )
        for g in _records(f.get("gpus"))
    ]
    return rows


def _load(m: dict[str, Any]) -> list[tuple[str, str]]:
    """The latest load and IO rates, when the node has sent metrics (read by catalogue name)."""
    if not m:
        return []
    from gdos.metric_catalog import value as v

    loads = " ".join(_fixed(m.get(k, 0)) for k in ("load1", "load5", "load15"))
    return [
        (
            "load",
            f"cpu {percent(v(m, 'cpu'))}  mem {percent(v(m, 'mem'))}"
            f"  load {loads}  procs {safe_markup(m.get('procs', '-'))}"
            f"  up {human_duration(m.get('uptime'))}",
        ),
        (
            "io",
            f"disk r {human_bytes(v(m, 'disk_read'))}/s "
            f"w {human_bytes(v(m, 'disk_write'))}/s  net rx "
            f"{human_bytes(v(m, 'net_rx'))}/s tx {human_bytes(v(m, 'net_tx'))}/s",
        ),
    ]


def _state_line(node: dict[str, Any]) -> list[str]:
    """``drained 5m ago: reason`` for a node out of normal service."""
    if node["state"] == NodeState.NORMAL:
        return []
    since = f" since {ago(node['state_since'])}" if node.get("state_since") else ""
    why = f": {safe_markup(node['state_reason'])}" if node.get("state_reason") else ""
    return [f"{safe_markup(node['state']):<9} {since.strip()}{why}"]


def _texts(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


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
