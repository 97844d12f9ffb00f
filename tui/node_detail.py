"""The node detail pane: static facts and sparklines of recent history.

``enter`` on a node opens it. Facts come from one ``node.show``; history
from ``metrics.history`` for that node only, asked at most once a second
while the pane is open and never after it closes. Names, units and
formatting come from the metric catalogue's METRICS table
(``gdos.metric_catalog``), so a value reads here as in ``gdos metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from gdos.tui.session import DashboardSession, guard
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Sparkline, Static

from gdos.metric_catalog import Metric, find_metric
from gdos.safe_text import safe_text
from gdos.units import human_bytes, human_duration

CHARTED = ("cpu", "mem", "net_rx", "net_tx")  # node metrics with a sparkline
HISTORY_SECONDS = 600.0  # how far back the sparklines reach
REFRESH_SECONDS = 1.0

Series = dict[str, list[float]]  # metric name -> values, oldest first


def fact_lines(node: dict[str, Any]) -> str:
    """The pane's static facts: ``node.show``'s view and the agent's facts, a few lines."""
    facts = node.get("facts")
    facts = facts if isinstance(facts, dict) else {}
    status = "online" if node.get("online") else "offline"
    cores, threads = facts.get("cpu_cores"), facts.get("cpu_threads")
    cpu = str(facts.get("cpu_model") or "-")
    if cores or threads:
        cpu += f" ({cores or '?'} cores, {threads or '?'} threads)"
    os_name = facts.get("distro") or facts.get("os") or "-"
    kernel = " ".join(str(facts[k]) for k in ("kernel", "arch") if facts.get(k))
    # Node text, shown in a Static: each line made safe (controls visible).
    return "\n".join(
        safe_text(line)
        for line in [
            f"status   {status}, {node.get('state') or '-'}"
            f"      uptime {human_duration(node.get('uptime'), fine_below=0.0)}"
            f"      agent {node.get('agent_version') or '-'}",
            *([f"reason   {node['state_reason']}"] if node.get("state_reason") else []),
            f"host     {facts.get('hostname') or '-'}      address {node.get('address') or '-'}",
            f"system   {os_name}" + (f"      kernel {kernel}" if kernel else ""),
            f"cpu      {cpu}      memory {human_bytes(facts.get('memory_total'))}",
        ]
    )


def summary(metric: Metric, values: Sequence[float]) -> str:
    """``now 12.0%  min 3.0%  max 40.0%`` formatted by the metric's unit, '-' without data."""
    numbers = [v for v in values if not math.isnan(v)]
    now = numbers[-1] if numbers else None
    low = min(numbers) if numbers else None
    high = max(numbers) if numbers else None
    return (
        f"now {metric.format(now)}   min {metric.format(low)}   max {metric.format(high)}"
        f"   ({len(numbers)} samples)"
    )


def history_series(reply: dict[str, Any]) -> Series:
    """``metrics.history``'s reply as values per metric name, oldest first."""
    return {s["name"]: [float(p[1]) for p in s["points"]] for s in reply.get("series", [])}


class NodeDetailScreen(ModalScreen[None]):
    """One node's facts and history; escape or q closes it (and stops its requests)."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    NodeDetailScreen { align: center middle; }
    NodeDetailScreen > VerticalScroll {
        width: 90%; height: 90%; border: round $accent; background: $surface; padding: 0 1;
    }
    NodeDetailScreen #detail-facts { margin-bottom: 1; }
    NodeDetailScreen .metric { height: auto; margin-bottom: 1; }
    NodeDetailScreen .metric-label { text-style: bold; }
    NodeDetailScreen Sparkline { height: 3; }
    """

    def __init__(self, name: str, session: DashboardSession) -> None:
        """With ``session.poll`` false it asks the daemon nothing (tests feed ``show_*``)."""
        super().__init__()
        self.node_name, self.session = name, session
        self.metrics = [find_metric(m, None) for m in CHARTED]
        self.samples = 0

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = f"node {self.node_name}"
            scroll.border_subtitle = "escape closes"
            yield Static("asking the daemon …", id="detail-facts", markup=False)
            for metric in self.metrics:
                with Vertical(classes="metric"):
                    yield Label(
                        f"{metric.name} — {metric.description}",
                        classes="metric-label",
                        markup=False,
                    )
                    yield Label("-", id=f"summary-{metric.name}", markup=False)
                    yield Sparkline([], id=f"spark-{metric.name}", summary_function=max)

    def on_mount(self) -> None:
        if self.session.poll:
            self._facts()
            self._history()
            self.set_interval(REFRESH_SECONDS, self._history)

    # -- data ------------------------------------------------------------------------
    def show_facts(self, node: dict[str, Any]) -> None:
        self.query_one("#detail-facts", Static).update(fact_lines(node))

    def show_history(self, series: Series) -> None:
        """Redraw each sparkline and its now/min/max line."""
        self.samples = max((len(v) for v in series.values()), default=0)
        for metric in self.metrics:
            values = series.get(metric.name, [])
            self.query_one(f"#summary-{metric.name}", Label).update(summary(metric, values))
            self.query_one(f"#spark-{metric.name}", Sparkline).data = values

    def sparkline_data(self, name: str) -> Sequence[float]:
        return self.query_one(f"#spark-{name}", Sparkline).data or []

    # -- daemon requests ---------------------------------------------------------------
    @work(group="detail-facts", exclusive=True)
    async def _facts(self) -> None:
        await self._ask("node.show", self.show_facts, lambda r: r["node"], name=self.node_name)

    @work(group="detail-history", exclusive=True)
    async def _history(self) -> None:
        await self._ask(
            "metrics.history",
            self.show_history,
            history_series,
            node=self.node_name,
            metrics=list(CHARTED),
            since=HISTORY_SECONDS,
        )

    async def _ask(
        self,
        kind: str,
        show: Callable[[Any], None],
        pick: Callable[[dict[str, Any]], Any],
        **body: Any,
    ) -> None:
        client = self.session.client
        if client is None:
            return
        reply = await guard(client.call(kind, timeout=5.0, **body))
        if reply is not None and self.is_attached:
            show(pick(reply))
