"""``gdos node list | show | rm | drain | disable | enable``."""

from __future__ import annotations

import sys
from typing import Any

import typer

from gdos.cli.common import (
    JSON_OPTION,
    ago,
    complete_node_names,
    console,
    human_bytes,
    human_duration,
    percent,
    print_json,
    request,
)

app = typer.Typer(help="List and inspect nodes; set their maintenance state.", no_args_is_help=True)
NAME = typer.Argument(..., help="Node name.", autocompletion=complete_node_names)


@app.command("list")
def list_nodes(json: bool = JSON_OPTION) -> None:
    """Every enrolled node with its state and latest load."""
    nodes = request("node.list")["nodes"]
    if json:
        print_json(nodes)
        return
    from gdos.cli.tables import Column, print_table

    columns = [
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
    rows = []
    for n in nodes:
        status = "[green]online[/]" if n["online"] else "[red]offline[/]"
        state = n["state"] if n["state"] == "normal" else f"[yellow]{n['state']}[/]"
        if n.get("state_reason"):
            state += f" ({escape(n['state_reason'])})"
        load = "-" if n["load1"] is None else f"{n['load1']:.2f}"
        rows.append(
            [
                n["name"],
                status,
                state,
                percent(n["cpu_percent"]),
                percent(n["mem_percent"]),
                load,
                percent(n["disk_percent"]),
                human_duration(n["uptime"]),
                n["agent_version"] or "-",
                ago(n["last_seen"]),
            ]
        )
    online = sum(1 for n in nodes if n["online"])
    print_table(columns, rows, footer=f"{online} online, {len(nodes) - online} offline")


@app.command()
def show(name: str = NAME, json: bool = JSON_OPTION) -> None:
    """All facts and the latest metrics of one node."""
    node = request("node.show", name=name)["node"]
    if json:
        print_json(node)
        return
    _render_node(node)


def _render_node(node: dict[str, Any]) -> None:
    f, m = node.get("facts", {}), node.get("metrics", {})
    lines = [
        f"[bold]{node['name']}[/]  {'[green]online[/]' if node['online'] else '[red]offline[/]'}"
        f"  state {node['state']}  agent {node['agent_version'] or '-'}",
        *_state_line(node),
        f"os        {f.get('distro', '-')}  kernel {f.get('kernel', '-')}"
        f"  arch {f.get('arch', '-')}",
        f"cpu       {f.get('cpu_model') or '-'}  {f.get('cpu_cores', '-')} cores / "
        f"{f.get('cpu_threads', '-')} threads  max {f.get('cpu_max_mhz') or '-'} MHz",
        f"memory    {human_bytes(f.get('memory_total'))}  swap {human_bytes(f.get('swap_total'))}",
        f"address   {node.get('address') or '-'}  key {node.get('key') or '-'}",
        f"last seen {ago(node.get('last_seen'))}  first seen {ago(node.get('first_seen'))}",
    ]
    for d in f.get("disks", []):
        lines.append(
            f"disk      {d['mount']}  {d['device']}  {d['fstype']}  {human_bytes(d['total'])}"
        )
    for nic in f.get("nics", []):
        addrs = ", ".join(nic.get("ipv4", []) + nic.get("ipv6", []))
        lines.append(
            f"nic       {nic['name']}  {nic.get('mac') or '-'}  {addrs or '-'}"
            f"  {nic.get('speed_mbps') or '-'} Mb/s"
        )
    for g in f.get("gpus", []):
        lines.append(
            f"gpu       {g.get('name')}  {human_bytes(g.get('memory_total'))}  "
            f"driver {g.get('driver')}  cc {g.get('compute_capability')}"
        )
    if m:
        lines.append(
            f"load      cpu {percent(m.get('cpu_percent'))}  mem {percent(m.get('mem_percent'))}"
            f"  load {m.get('load1', 0):.2f} {m.get('load5', 0):.2f} {m.get('load15', 0):.2f}"
            f"  procs {m.get('procs', '-')}  up {human_duration(m.get('uptime'))}"
        )
        lines.append(
            f"io        disk r {human_bytes(m.get('disk_read_bps'))}/s "
            f"w {human_bytes(m.get('disk_write_bps'))}/s  net rx "
            f"{human_bytes(m.get('net_rx_bps'))}/s tx {human_bytes(m.get('net_tx_bps'))}/s"
        )
    console().print("\n".join(lines), highlight=False)


def escape(text: str) -> str:
    """Operator text shown through rich markup, printed as typed."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _state_line(node: dict[str, Any]) -> list[str]:
    """``drained 5m ago: reason`` for a node out of normal service."""
    if node["state"] == "normal":
        return []
    since = f" since {ago(node['state_since'])}" if node.get("state_since") else ""
    why = f": {escape(node['state_reason'])}" if node.get("state_reason") else ""
    return [f"{node['state']:<9} {since.strip()}{why}"]


@app.command()
def rm(name: str = NAME) -> None:
    """Forget a node (its key stays; delete it with 'gdos key delete')."""
    request("node.rm", name=name)
    sys.stdout.write(f"node {name} removed\n")


REASON = typer.Option(
    None, "--reason", "-r", help="Why (shown in node list/show, the dashboard and the audit)."
)


def _set_state(name: str, state: str, json: bool, reason: str | None = None) -> None:
    reply = request("node.set_state", name=name, state=state, reason=reason)
    if json:
        print_json(reply)
    else:
        why = f": {reply['reason']}" if reply.get("reason") else ""
        sys.stdout.write(f"node {name} is now {state}{why}\n")


@app.command()
def drain(name: str = NAME, reason: str | None = REASON, json: bool = JSON_OPTION) -> None:
    """Maintenance: keep heartbeats and running work, take no new work."""
    _set_state(name, "maintenance", json, reason)


@app.command()
def disable(name: str = NAME, reason: str | None = REASON, json: bool = JSON_OPTION) -> None:
    """Disabled: refuse all work except heartbeats."""
    _set_state(name, "disabled", json, reason)


@app.command()
def enable(name: str = NAME, json: bool = JSON_OPTION) -> None:
    """Back to normal: take work again."""
    _set_state(name, "normal", json)
