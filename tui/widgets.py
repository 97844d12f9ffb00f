"""Formatting and small screens shared by the dashboard's views.

Nothing here talks to the daemon: cells are rendered from the plain dicts
the client returns, and screens show what they are given.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gdos.model import InstanceState, NodeState
from gdos.safe_text import safe_line, safe_text
from gdos.units import STATE_STYLE, STATUS_STYLE, human_bytes, human_duration, number, percent

Cell = tuple[str, str]  # (text, style): compared to decide whether a cell changed


def merge_watch(
    items: dict[str, Any],
    event: dict[str, Any],
    key: str,
    full: bool,
    convert: Any = None,
) -> dict[str, Any]:
    """Apply one pushed ``*.watch`` event (``changed`` views, ``removed`` keys) to ``items``.

    ``full`` means the event lists everything (the first after a subscribe), so
    what it does not name is gone. ``convert`` turns a view into what is kept.
    """
    merged = {} if full else items
    for view in event.get("changed", []):
        merged[view[key]] = convert(view) if convert else view
    for name in event.get("removed", []):
        merged.pop(name, None)
    return merged


def sync_row(
    table: Any,
    rows: dict[str, list[Cell]],
    key: str,
    cells: list[Cell],
    columns: Any,
    update_width: bool = False,
) -> bool:
    """Add the row ``key`` or update only its cells that changed; True when added.

    Every live table goes through this, so a 1,000-row refresh touches only
    what moved and row keys (hence selection and scroll) stay stable; and
    every cell is node text made safe here (Text: never markup; controls shown).
    """
    old = rows.get(key)
    rows[key] = cells
    if old is None:
        table.add_row(*(Text(safe_text(t), style=s) for t, s in cells), key=key)
        return True
    for (_, column), new, prev in zip(columns, cells, old, strict=True):
        if new != prev:
            cell = Text(safe_text(new[0]), style=new[1])
            table.update_cell(key, column, cell, update_width=update_width)
    return False


# Health bands for percentages, as glances/htop colour them.
HEALTH = ((90.0, "bold red"), (80.0, "dark_orange"), (60.0, "yellow"), (0.0, "green"))


def health_style(value: float | None) -> str:
    """OK green < 60, CAREFUL yellow 60-80, WARNING orange 80-90, CRITICAL red >= 90."""
    if value is None:
        return "dim"
    return next(style for floor, style in HEALTH if value >= floor)


def percent_cell(value: float | None) -> Cell:
    return (percent(value), health_style(number(value)))


def node_cells(view: dict[str, Any]) -> list[Cell]:
    """A node's row, in the order of ``tui.nodes.COLUMNS``."""
    load = view.get("load1")
    state = view.get("state") or "-"
    shown = f"{state} ({view['state_reason']})" if view.get("state_reason") else state
    return [
        (view["name"], ""),
        ("online", "green") if view.get("online") else ("offline", "red"),
        (shown, "" if state == NodeState.NORMAL else "yellow"),
        percent_cell(view.get("cpu_percent")),
        percent_cell(view.get("mem_percent")),
        ("-" if number(load) is None else f"{number(load):.2f}", ""),
        percent_cell(view.get("disk_percent")),
        (human_duration(view.get("uptime"), fine_below=0.0), ""),
        (view.get("agent_version") or "-", ""),
    ]


MARK = "●"
ERROR_WIDTH = 80  # the LAST ERROR cell; describe (d) shows the whole sentence


def instance_cells(
    view: dict[str, Any],
    now: float,
    marked: bool = False,
    busy: bool = False,
    metrics: dict[str, Any] | None = None,
) -> list[Cell]:
    """An instance's row, in the order of ``tui.services.COLUMNS``.

    Uptime is computed here from ``started`` (the watch stream leaves it out
    so that it does not change every tick). ``busy`` marks an action under
    way on the row; ``metrics`` is the instance's entry of the metrics hook
    (``cpu``, ``rss``: catalogue names), "-" while there is none.
    """
    state = view.get("state") or "-"
    label = state + ("" if view.get("node_online", True) else " (node offline)")
    # number()/str(): rows an older daemon stored unchecked may hold any type.
    started = number(view.get("started"))
    uptime = now - started if state == InstanceState.RUNNING and started else None
    restarts = view.get("restarts") or 0
    error = str(view.get("error") or "")
    if len(error) > ERROR_WIDTH:
        error = error[: ERROR_WIDTH - 1] + "…"
    rss = (metrics or {}).get("rss")
    return [
        (MARK if marked else " ", "bold magenta"),
        (view["instance"], "bold magenta" if marked else ""),
        (label + (" …" if busy else ""), STATE_STYLE.get(state, "")),
        (str(view["pid"]) if view.get("pid") else "-", ""),
        (human_duration(uptime, fine_below=0.0), ""),
        (str(restarts), "yellow" if restarts else ""),
        (view.get("version") or "-", ""),
        percent_cell((metrics or {}).get("cpu")),
        (human_bytes(rss), "" if rss is not None else "dim"),
        (error, "red"),
    ]


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%m-%d %H:%M:%S", time.localtime(ts))


class TextScreen(ModalScreen[None]):
    """A scrollable text pane (describe, help); escape or q closes it."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    TextScreen { align: center middle; }
    TextScreen > VerticalScroll {
        width: 90%; height: 85%; border: round $accent; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, title: str, body: str | Text) -> None:
        """``body``: plain text (each line made safe here), or a ``Text`` from
        ``tui.details.detail_text``, which made each of its values safe already."""
        super().__init__()
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = self.title_text
            body = self.body
            if isinstance(body, str):
                # Panes show node text (errors, versions, facts): each line made safe here.
                body = "\n".join(safe_line(line) for line in body.split("\n"))
            yield Static(body, id="text", markup=False)


HELP = """\
:nodes :svc :tasks :logs :alerts :audit   jump to a view (command prompt; :q quits)
                 tab completes a view name; a unique prefix will do
?                this help
ctrl+p           command palette: every action of this view, the views, themes
q                quit; escape closes a pane or an input

Nodes
  enter          detail pane: facts, CPU / memory / network sparklines with now, min, max
  /              filter by name (regular expression, applied as typed); empty clears it
  N  C  M  D     sort by name, cpu, memory, disk (again: reverse)
  d              describe the selected node (node show)
  s              remote shell on the selected node (refused with --read-only)

Tasks
  x              exec: run a command on nodes (refused with --read-only)
  c              cancel the selected running task, after a yes/no question (refused read-only)
  r              reload the task list now
  (an exec started here streams each host's output as "host | line", last 2,000 lines)

Services (:svc or :services)
  space          mark or unmark a row; actions apply to marked rows, else the selected one
  S  T  R        start, stop, restart (refused with --read-only)
  B              rollback to the version before the last deploy (refused with --read-only)
  p              deploy: SYSTEM[/MODULE] and nodes (refused with --read-only)
  ctrl+d         destroy, after a yes/no confirmation (refused with --read-only)
  d              describe the selected instance
  l              follow the selected instance's log in the Logs view

Logs (:logs; keeps the newest 5,000 lines)
  f              targets to follow: shop/web@n1 shop/web shop [--file LABEL], NODE --path FILE
  p              pause / resume (paused, nothing is read: the agents wait)
  /              highlight a regex in new lines; n scrolls to the next match
  G  end         jump to the end and follow again
  c              clear the pane

Alerts (:alerts) and Audit (:audit), reloaded every 3 seconds
  /              filter rows by regular expression
  r              reload now
  (alerts firing are yellow for warning, red for critical; ended ones are dim)
"""
