"""Read-only lists reloaded every few seconds: the Alerts and Audit views.

Neither the alert history nor the audit trail has a pushed stream, so each
view asks the daemon again every ``RELOAD_SECONDS`` while it is on screen
(``alert.list`` active and recent; ``audit.list``). A reload touches only
what changed, as the live tables do: gone rows removed, changed cells
updated, new rows added, newest first. ``/`` filters the rows shown by a
regular expression on the row's text.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from gdos.tui.commands import PaletteCommand
from gdos.tui.filters import FilteredView, filter_box
from gdos.tui.session import DashboardSession
from gdos.tui.widgets import Cell, sync_row, when
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Label

from gdos.units import human_duration

Row = list[Cell]  # (text, style) per column: compared to decide whether a cell changed
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow"}
ALERT_HISTORY = 200
AUDIT_ROWS = 200
DETAIL_WIDTH = 60


class RecordsView(FilteredView):
    """A reloaded, filterable, read-only table; subclasses say what to ask and show."""

    NAME: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""
    COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = ()
    RELOAD_SECONDS: ClassVar[float] = 3.0
    FILTER_FLAGS = re.IGNORECASE
    DEFAULT_CSS = """
    RecordsView .summary { padding: 0 1; text-style: bold; }
    RecordsView DataTable { height: 1fr; }
    """
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("r", "reload", "Reload"),
    ]

    def __init__(self, session: DashboardSession, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.records: list[dict[str, Any]] = []
        self.rows: dict[str, Row] = {}

    def compose(self) -> ComposeResult:
        yield filter_box("filter rows by regex (enter/escape closes)", f"{self.NAME}-filter")
        yield Label("", id=f"{self.NAME}-summary", classes="summary", markup=False)
        table: DataTable[Any] = DataTable(
            id=f"{self.NAME}-table", cursor_type="row", zebra_stripes=True
        )
        for label, key in self.COLUMNS:
            table.add_column(label, key=key)
        yield table

    def on_mount(self) -> None:
        self.set_interval(self.RELOAD_SECONDS, self._tick)

    def on_show(self) -> None:
        self.action_reload()

    def _tick(self) -> None:
        if self.display:
            self.action_reload()

    # -- data ------------------------------------------------------------------------
    def action_reload(self) -> None:
        if self.session.client is not None:
            self._reload()

    @work(exclusive=True)
    async def _reload(self) -> None:
        records = await self.fetch()
        if records is not None:
            self.show(records)

    async def fetch(self) -> list[dict[str, Any]] | None:
        raise NotImplementedError

    def cells(self, record: dict[str, Any]) -> Row:
        raise NotImplementedError

    def summary(self, records: list[dict[str, Any]]) -> str:
        raise NotImplementedError

    def show(self, records: list[dict[str, Any]]) -> None:
        """Show ``records`` (any order; shown newest id first), touching only what changed."""
        self.records = records
        self.query_one(f"#{self.NAME}-summary", Label).update(self.summary(records))
        wanted: dict[str, Row] = {}
        for record in records:
            cells = self.cells(record)
            if self.pattern is None or self.pattern.search(" ".join(t for t, _ in cells)):
                wanted[str(record["id"])] = cells
        table = self.table
        with self.app.batch_update():
            for key in [k for k in self.rows if k not in wanted]:
                table.remove_row(key)
                del self.rows[key]
            added = False
            for key, cells in wanted.items():
                added |= sync_row(table, self.rows, key, cells, self.COLUMNS, update_width=True)
            if added:
                table.sort("id", key=lambda v: -int(str(v)))

    # -- keys --------------------------------------------------------------------------
    def palette_commands(self) -> list[PaletteCommand]:
        return [
            PaletteCommand(f"{self.TITLE}: filter", "filter rows by regex (/)", self.action_filter),
            PaletteCommand(f"{self.TITLE}: reload", "ask the daemon now (r)", self.action_reload),
        ]

    def refilter(self) -> None:
        self.show(self.records)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


class AlertsView(RecordsView):
    """Alerts firing now and the recent history (``alert.list``), coloured by severity."""

    NAME, TITLE, MAIN = "alerts", "Alerts", "#alerts-table"
    COLUMNS = (
        ("ID", "id"),
        ("RULE", "rule"),
        ("TARGET", "target"),
        ("SEVERITY", "severity"),
        ("STARTED", "started"),
        ("ENDED", "ended"),
        ("DURATION", "duration"),
        ("MIN/AVG/MAX", "values"),
        ("MESSAGE", "message"),
    )

    async def fetch(self) -> list[dict[str, Any]] | None:
        client = self.session.client
        if client is None:
            return None
        active = await self.guard(client.call("alert.list", active=True, limit=1000), True)
        recent = await self.guard(client.call("alert.list", limit=ALERT_HISTORY), True)
        if active is None or recent is None:
            return None
        merged = {e["id"]: e for e in [*recent["events"], *active["events"]]}
        return list(merged.values())

    def cells(self, event: dict[str, Any]) -> Row:
        style = SEVERITY_STYLE.get(event["severity"], "") if event["active"] else "dim"
        ended = ("firing", "bold") if event["active"] else (when(event["ended"]), "")
        values = "/".join(_number(event.get(k)) for k in ("min", "avg", "max"))
        return [
            (str(event["id"]), "dim"),
            (event["rule"], style),
            (event["target"], ""),
            (event["severity"], style),
            (when(event["started"]), ""),
            ended,
            (human_duration(event.get("duration")), ""),
            (values, ""),
            (event.get("message") or "", ""),
        ]

    def summary(self, events: list[dict[str, Any]]) -> str:
        firing = [e for e in events if e["active"]]
        critical = sum(1 for e in firing if e["severity"] == "critical")
        return (
            f"{len(firing)} firing ({critical} critical, {len(firing) - critical} warning); "
            f"{len(events) - len(firing)} ended in the last {ALERT_HISTORY} — "
            f"reloaded every {self.RELOAD_SECONDS:g}s"
        )


class AuditView(RecordsView):
    """The newest entries of the audit trail (``audit.list``): who did what, and how it ended."""

    NAME, TITLE, MAIN = "audit", "Audit", "#audit-table"
    COLUMNS = (
        ("ID", "id"),
        ("TIME", "time"),
        ("USER", "user"),
        ("ACTION", "action"),
        ("TARGET", "target"),
        ("RESULT", "result"),
        ("DETAIL", "detail"),
    )

    async def fetch(self) -> list[dict[str, Any]] | None:
        client = self.session.client
        if client is None:
            return None
        reply = await self.guard(client.call("audit.list", limit=AUDIT_ROWS), quiet=True)
        return None if reply is None else list(reply["rows"])

    def cells(self, row: dict[str, Any]) -> Row:
        result = str(row.get("result") or "-")
        detail = row.get("detail")
        if isinstance(detail, dict):
            detail = " ".join(f"{k}={v}" for k, v in detail.items() if v is not None)
        text = str(detail or "")
        if len(text) > DETAIL_WIDTH:
            text = text[: DETAIL_WIDTH - 1] + "…"
        return [
            (str(row["id"]), "dim"),
            (when(row.get("time")), ""),
            (row.get("user") or "-", ""),
            (row.get("action") or "-", ""),
            (row.get("target") or "-", ""),
            (result, "green" if result == "ok" else "red"),
            (text, "dim"),
        ]

    def summary(self, rows: list[dict[str, Any]]) -> str:
        return f"the newest {len(rows)} audit entries — reloaded every {self.RELOAD_SECONDS:g}s"
