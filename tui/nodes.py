"""The Nodes view: a live table fed by the daemon's ``node.watch`` stream.

Rows are keyed by node name. Each update touches only what changed, inside
one ``batch_update``: ``remove_row`` for gone or filtered-out nodes,
``add_row`` for new ones, ``update_cell`` for cells whose text or colour
changed. Sorting reorders rows in place, and the selected node stays selected.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from gdos.tui.commands import PaletteCommand
from gdos.tui.details import node_detail
from gdos.tui.filters import FilteredView, filter_box
from gdos.tui.session import (
    DashboardSession,
    FleetChanged,
    OpenNodeDetail,
    OpenShell,
)
from gdos.tui.widgets import Cell, TextScreen, merge_watch, node_cells, sync_row
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable

from gdos.names import natural_key

COLUMNS = (
    ("NAME", "name"),
    ("STATUS", "status"),
    ("STATE", "state"),
    ("CPU", "cpu"),
    ("MEM", "mem"),
    ("LOAD", "load"),
    ("DISK", "disk"),
    ("UPTIME", "uptime"),
    ("VERSION", "version"),
)
# Sortable columns: numbers sort largest first (as in htop), text naturally (g2 before g10).
NUMBER_FIELDS = {
    "cpu": "cpu_percent",
    "mem": "mem_percent",
    "load": "load1",
    "disk": "disk_percent",
    "uptime": "uptime",
}
TEXT_FIELDS = {"name": "name", "status": "online", "state": "state", "version": "agent_version"}
SORT_KEYS = {"name": "N", "cpu": "C", "mem": "M", "disk": "D"}


class NodesView(FilteredView):
    # In the order of their place in a narrow footer (tui.footer keeps the first ones).
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("s", "shell", "Shell"),
        Binding("d", "describe", "Describe"),
        Binding("N", "sort('name')", "Sort name"),
        Binding("C", "sort('cpu')", "Sort cpu"),
        Binding("M", "sort('mem')", "Sort mem"),
        Binding("D", "sort('disk')", "Sort disk", show=False),
    ]

    MAIN = "#nodes-table"

    def __init__(self, session: DashboardSession, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.nodes: dict[str, dict[str, Any]] = {}
        self.rows: dict[str, list[Cell]] = {}
        self.sort_by, self.reverse = "name", False

    def compose(self) -> ComposeResult:
        yield filter_box("filter nodes by regex (enter/escape to close)", "filter")
        table: DataTable[Any] = DataTable(id="nodes-table", cursor_type="row", zebra_stripes=True)
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        yield table

    # -- data --------------------------------------------------------------
    def apply(self, event: dict[str, Any], full: bool = False) -> None:
        """Merge one ``node.watch`` event; ``full`` means it lists every node."""
        self.nodes = merge_watch(self.nodes, event, "name", full)
        self.render_rows()
        self.post_message(FleetChanged())

    def shown_names(self) -> list[str]:
        if self.pattern is None:
            return list(self.nodes)
        return [n for n in self.nodes if self.pattern.search(n)]

    def render_rows(self) -> None:
        table, selected = self.table, self.selected()
        visible = self.shown_names()
        wanted = set(visible)
        with self.app.batch_update():
            for name in [n for n in self.rows if n not in wanted]:
                table.remove_row(name)
                del self.rows[name]
            for name in visible:
                sync_row(table, self.rows, name, node_cells(self.nodes[name]), COLUMNS)
            self._sort()
            if selected in self.rows:
                table.move_cursor(row=table.get_row_index(selected))

    refilter = render_rows

    def _sort(self) -> None:
        number = NUMBER_FIELDS.get(self.sort_by)
        text = TEXT_FIELDS.get(self.sort_by, "name")

        def key(name: Any) -> Any:
            plain = str(name)
            view = self.nodes.get(plain, {})
            if number is None:
                value = view.get(text)
                label = ("online" if value else "offline") if text == "online" else value
                return (natural_key(label or ""), natural_key(plain))
            figure = view.get(number)
            return (figure is not None, figure or 0.0, natural_key(plain))

        self.table.sort("name", key=key, reverse=self.reverse != (number is not None))

    # -- actions ---------------------------------------------------------------
    def palette_commands(self) -> list[PaletteCommand]:
        entries = [PaletteCommand("Nodes: filter", "filter nodes by name (/)", self.action_filter)]
        for label, column in COLUMNS:
            key = f" ({SORT_KEYS[column]})" if column in SORT_KEYS else ""
            entries.append(
                PaletteCommand(
                    f"Nodes: sort by {column}",
                    f"sort by {label} (again: reverse){key}",
                    partial(self.action_sort, column),
                )
            )
        return [
            *entries,
            PaletteCommand("Nodes: details", "facts and history (enter)", self.action_details),
            PaletteCommand("Nodes: describe", "node show (d)", self.action_describe),
            PaletteCommand("Nodes: shell", "remote shell (s)", self.action_shell),
        ]

    def action_sort(self, column: str) -> None:
        self.reverse = not self.reverse if self.sort_by == column else False
        self.sort_by = column
        self.render_rows()
        self.notify(f"sorted by {column}" + (" (reversed)" if self.reverse else ""), markup=False)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """``enter`` on a node opens its detail pane."""
        if event.data_table.id == "nodes-table":
            event.stop()
            self.action_details()

    def chosen(self) -> str | None:
        """The selected node; says so when there is none."""
        name = self.selected()
        if name is None:
            self.say("no node selected")
        return name

    def action_details(self) -> None:
        name = self.chosen()
        if name is not None:
            self.post_message(OpenNodeDetail(name))

    def action_describe(self) -> None:
        name = self.chosen()
        if name is not None:
            self.run_worker(self._describe(name), group="describe", exclusive=True)

    async def _describe(self, name: str) -> None:
        client = self.session.client
        if client is None:
            self.say("the daemon is unreachable")
            return
        reply = await self.guard(client.call("node.show", name=name))
        if reply is not None:
            text = node_detail(reply["node"], time.time())
            self.app.push_screen(TextScreen(f"node {name}", text))

    def action_shell(self) -> None:
        """A remote shell on the selected node (the app suspends the dashboard for it)."""
        if self.refused("shell"):
            return
        name = self.chosen()
        if name is not None:
            self.post_message(OpenShell(name))
