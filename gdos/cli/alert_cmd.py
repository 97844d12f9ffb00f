"""``gdos alert list`` and ``gdos alert rule add | list | rm``: threshold alerts."""

from __future__ import annotations

from typing import Any

import typer

from gdos.cli.common import JSON_OPTION, human_duration, parse_duration, request, stamp
from gdos.cli.output import Output, fail, output
from gdos.cli.tables import Column
from gdos.errors import ErrorCode, GdosError
from gdos.safe_text import safe_cell, safe_markup

app = typer.Typer(help="Threshold alerts: rules, and what fired.", no_args_is_help=True)
rule_app = typer.Typer(help="Add, list and remove alert rules.", no_args_is_help=True)
app.add_typer(rule_app, name="rule")

COLOURS = {"critical": "red", "warning": "yellow"}
RULE_COLUMNS = [
    Column("NAME"),
    Column("CONDITION"),
    Column("SCOPE", drop=2),
    Column("SEVERITY"),
    Column("FIRING"),
    Column("HOOKS", drop=1, wrap=True),
]
EVENT_COLUMNS = [
    Column("RULE"),
    Column("TARGET"),
    Column("SEVERITY"),
    Column("STATE"),
    Column("STARTED", drop=2),
    Column("ENDED", drop=3),
    Column("DURATION", drop=1),
    Column("MIN/AVG/MAX", drop=4),
    Column("MESSAGE", wrap=True),
]


@rule_app.command("add")
def rule_add(
    name: str = typer.Argument(..., help="Rule name (letters, digits, '.', '_', '-')."),
    metric: str = typer.Option(..., "--metric", help="cpu, mem, disk, load1, net_rx, ..."),
    op: str = typer.Option(..., "--op", help="> >= < <= == !="),
    value: float = typer.Option(..., "--value", help="Threshold."),
    for_: str = typer.Option("0s", "--for", help="How long it must hold first (e.g. 60s)."),
    node: str | None = typer.Option(None, "--node", help="Only nodes matching this glob."),
    instance: str | None = typer.Option(
        None, "--instance", help="Watch instances (SYSTEM/MODULE glob) instead of nodes."
    ),
    severity: str = typer.Option("warning", "--severity", help="warning or critical."),
    command: str | None = typer.Option(
        None, "--command", help="Run on fire and recovery (argv, GDOS_ALERT_* in env)."
    ),
    webhook: str | None = typer.Option(None, "--webhook", help="POST a JSON event here."),
    json: bool = JSON_OPTION,
) -> None:
    """Add a rule: METRIC OP VALUE held for --for fires an alert on each target."""
    seconds = parse_duration(for_, "--for")
    if severity not in ("warning", "critical"):
        fail(GdosError(ErrorCode.INVALID_ARGUMENT, "--severity must be warning or critical."))
    rule = request(
        "alert.rule.add",
        name=name,
        metric=metric,
        op=op,
        value=value,
        for_seconds=seconds,
        node=node,
        instance=instance,
        severity=severity,
        command=command,
        webhook=webhook,
    )["rule"]
    output(json).show(rule, lambda out, r: out.markup(f"rule {r['name']}: {_condition(r)}"))


@rule_app.command("list")
def rule_list(json: bool = JSON_OPTION) -> None:
    """Every rule, built-in ones first, with how many targets fire now."""
    output(json).show(request("alert.rule.list")["rules"], _render_rules)


def _render_rules(out: Output, rules: list[dict[str, Any]]) -> None:
    rows = []
    for r in rules:
        scope = f"instances {r['instance_glob']}" if r["instance_glob"] else "nodes"
        if r["node_glob"]:
            scope += f" on {r['node_glob']}"
        hooks = ", ".join(h for h in (r["command"], r["webhook"]) if h) or "-"
        colour = COLOURS.get(r["severity"], "white")
        firing = f"[{colour}]{r['firing']}[/]" if r["firing"] else "0"
        name = r["name"] + (" (built-in)" if r["builtin"] else "")
        rows.append(
            [
                safe_markup(name),
                _condition(r),
                safe_markup(scope),
                r["severity"],
                firing,
                safe_markup(hooks),
            ]
        )
    out.table(RULE_COLUMNS, rows)


@rule_app.command("rm")
def rule_rm(name: str = typer.Argument(..., help="Rule name.")) -> None:
    """Remove a rule (built-in rules stay); its open alerts are closed."""
    request("alert.rule.rm", name=name)
    output().markup(f"rule {name} removed")


@app.command("list")
def alert_list(
    active: bool = typer.Option(False, "--active", help="Only alerts firing now."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="How many, newest first."),
    json: bool = JSON_OPTION,
) -> None:
    """Alert history: start, end or ongoing, duration, min/avg/max while firing."""
    output(json).show(request("alert.list", active=active, limit=limit)["events"], _render_events)


def _render_events(out: Output, events: list[dict[str, Any]]) -> None:
    rows = []
    for e in events:
        colour = COLOURS.get(e["severity"], "white") if e["active"] else "dim"
        show = _formatter(e)
        rows.append(
            [
                f"[{colour}]{safe_markup(e['rule'])}[/]",
                safe_cell(e["target"]),
                f"[{colour}]{e['severity']}[/]",
                "[bold]firing[/]" if e["active"] else "ended",
                stamp(e["started"]),
                stamp(e["ended"]),
                human_duration(e["duration"]),
                "/".join(show(e[k]) for k in ("min", "avg", "max")),
                safe_cell(e["message"] or ""),
            ]
        )
    out.table(EVENT_COLUMNS, rows)


def _condition(rule: dict[str, Any]) -> str:
    show = _formatter({"metric": rule["metric"], "instance_rule": bool(rule.get("instance_glob"))})
    text = f"{rule['metric']} {rule['op']} {show(rule['value'])}"
    return text + (f" for {human_duration(rule['for_seconds'])}" if rule["for_seconds"] else "")


def _formatter(event: dict[str, Any]) -> Any:
    """Values of the event's metric with their unit (the metric catalogue's format)."""
    from gdos.metric_catalog import find_metric

    try:
        metric = find_metric(str(event.get("metric")), "*" if event.get("instance_rule") else None)
    except GdosError:  # a pseudo-metric (online, failed) or a removed rule: plain numbers
        return lambda v: "-" if v is None else f"{v:g}"
    return metric.format
