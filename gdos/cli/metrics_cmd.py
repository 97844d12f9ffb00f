"""``gdos metrics TARGET``: recent history of a node or an instance, with sparklines.

TARGET is ``NODE`` or ``SYSTEM/MODULE@NODE``. The daemon keeps the history
in memory (gdos/daemon/metrics.py): 360 samples per node and per running
instance, so ``--since`` reaches back at most that far.
"""

from __future__ import annotations

from typing import Any

import typer

from gdos.cli.common import JSON_OPTION, parse_duration, request
from gdos.cli.output import Output, fail, output
from gdos.cli.tables import Column, visible_width
from gdos.errors import ErrorCode, GdosError

BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 48


def register(app: typer.Typer) -> None:
    app.command("metrics")(metrics_command)


def parse_target(target: str) -> tuple[str, str | None]:
    """``NODE`` -> (node, None); ``SYSTEM/MODULE@NODE`` -> (node, instance)."""
    from gdos.metric_catalog import INSTANCE_PATTERN
    from gdos.names import check_name

    instance, at, node = target.rpartition("@")
    try:
        if not at:
            if "/" in target:
                raise GdosError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"{target!r} names no node; use SYSTEM/MODULE@NODE, e.g. shop/web@n1.",
                )
            return check_name(target), None
        check_name(node)
        if not INSTANCE_PATTERN.match(instance):
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT,
                f"{target!r} is not SYSTEM/MODULE@NODE (e.g. shop/web@n1) or a node name.",
            )
    except GdosError as error:
        fail(error)
    return node, instance


def sparkline(values: list[float], width: int = SPARK_WIDTH) -> str:
    """Unicode blocks scaled from the series' min (▁) to its max (█), averaged to ``width``."""
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [
            sum(chunk) / len(chunk)
            for chunk in (values[int(i * step) : int((i + 1) * step) or 1] for i in range(width))
            if chunk
        ]
    low, high = min(values), max(values)
    if high - low < 1e-9:
        return BLOCKS[0] * len(values)
    scale = (len(BLOCKS) - 1) / (high - low)
    return "".join(BLOCKS[round((v - low) * scale)] for v in values)


def summarise(series: dict[str, Any]) -> dict[str, Any]:
    """A series from the daemon plus min/avg/max/last of its points."""
    values = [p[1] for p in series["points"]]
    stats: dict[str, Any] = dict.fromkeys(("min", "avg", "max", "last"))
    if values:
        stats = {
            "min": min(values),
            "avg": sum(values) / len(values),
            "max": max(values),
            "last": values[-1],
        }
    return {**series, **stats, "samples": len(values)}


def metrics_command(
    target: str = typer.Argument(..., help="NODE or SYSTEM/MODULE@NODE."),
    since: str = typer.Option("15m", "--since", help="How far back: 90s, 15m, 1h (max 7d)."),
    metric: list[str] = typer.Option(
        [], "--metric", "-m", help="Only this metric (repeatable); default: all of the scope."
    ),
    json: bool = JSON_OPTION,
) -> None:
    """Recent history of a node's or an instance's metrics: sparkline, min, avg, max, last."""
    from gdos.metric_catalog import find_metric

    node, instance = parse_target(target)
    window = parse_duration(since, "--since")
    try:
        metrics = [find_metric(name, instance) for name in metric]
    except GdosError as error:
        fail(error)
    reply = request(
        "metrics.history",
        node=node,
        instance=instance,
        since=window,
        metrics=[m.name for m in metrics] or None,
    )
    reply["series"] = [summarise(s) for s in reply["series"]]
    output(json).show(reply, lambda out, reply: _render(out, reply, target, since))


def _render(out: Output, reply: dict[str, Any], target: str, since: str) -> None:
    from gdos.metric_catalog import find_metric

    samples = max((s["samples"] for s in reply["series"]), default=0)
    rows = []
    for s in reply["series"]:
        m = find_metric(s["name"], reply["instance"])
        rows.append([s["name"], *(m.format(s[k]) for k in ("min", "avg", "max", "last"))])
    # The sparkline takes what the figures leave (they are never cut), 8 to 48 blocks.
    width, spark = out.width, SPARK_WIDTH
    if width is not None and rows:
        figures = sum(max(visible_width(r[i]) for r in rows) + 2 for i in range(5))
        spark = max(8, min(SPARK_WIDTH, width - figures - 6))
    for row, s in zip(rows, reply["series"], strict=True):
        row.insert(1, f"[cyan]{sparkline([p[1] for p in s['points']], spark)}[/]")
    columns = [
        Column("METRIC"),
        Column("HISTORY", drop=1),
        *(Column(name, justify="right") for name in ("MIN", "AVG", "MAX", "LAST")),
    ]
    out.table(columns, rows, title=f"{target}: last {since}, {samples} samples")
    if not samples:
        out.line("no samples in that window yet; metrics arrive every few seconds.")
