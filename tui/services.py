"""The Services view: instances pushed by ``svc.watch``, and actions on them.

Rows are keyed by instance name (``system/module@node``) and ordered by
system, then module, then node. Like the Nodes view, each update touches
only what changed inside one ``batch_update``: ``remove_row`` for gone
instances, ``add_row`` for new ones, ``update_cell`` for changed cells.
Uptime is computed here from ``started``; a one-second tick re-renders, so
those cells change at most once a second.

Actions (start, stop, restart, rollback, destroy, deploy) run ``svc.run`` with
``wait`` and follow its events: rows under way show ``…`` after their
state, a status line counts settled instances, and a notification gives
the outcome with each failure's sentence.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gdos.tui.commands import PaletteCommand
from gdos.tui.details import instance_detail
from gdos.tui.forms import ConfirmScreen, DeployForm
from gdos.tui.session import DashboardSession, DashboardView, FleetChanged, FollowLogs
from gdos.tui.widgets import Cell, TextScreen, instance_cells, merge_watch, sync_row
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Label

from gdos.client.control import Client
from gdos.errors import GdosError
from gdos.model import FAILED_STATES, InstanceState
from gdos.names import instance_key
from gdos.safe_text import safe_text

COLUMNS = (
    (" ", "mark"),
    ("INSTANCE", "instance"),
    ("STATE", "state"),
    ("PID", "pid"),
    ("UPTIME", "uptime"),
    ("RESTARTS", "restarts"),
    ("VERSION", "version"),
    ("CPU", "cpu"),
    ("RSS", "rss"),
    ("LAST ERROR", "error"),
)
CHANGES = ("operate", "deploy", "destroy")  # the actions --read-only refuses
# An action's instance has settled (succeeded or not) once it reaches one of these.
SETTLED = FAILED_STATES | {InstanceState.RUNNING, InstanceState.STOPPED, InstanceState.DESTROYED}
UPTIME_TICK = 1.0
# Instance metrics shown, by catalogue name (gdos/metric_catalog.py), as metrics.watch sends
WATCHED_METRICS = ("cpu", "rss")
NOTIFY_FAILURES = 5


@dataclass
class Run:
    """The progress of one action from the dashboard (one or more ``svc.run``)."""

    action: str
    what: str
    total: int = 0
    settled: set[str] = field(default_factory=set)
    level: str = ""
    results: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = f"{self.action} {self.what}: {len(self.settled)}/{self.total} settled"
        if self.level:
            text += f", level {self.level}"
        failed = sum(1 for r in self.results if not r["ok"]) + len(self.refusals)
        return text + (f", {failed} failed" if failed else "") + " …"

    def outcome(self) -> tuple[bool, str]:
        """(ok, sentence): ``ok`` when every instance reached its goal."""
        failures = [
            f"{r['instance']}: error[{r.get('code')}]: {r.get('message')}"
            for r in self.results
            if not r["ok"]
        ] + self.refusals
        if not failures:
            return True, f"{self.action} {self.what}: ok ({len(self.results)} instance(s))"
        count = len(self.results) + len(self.refusals)
        lines = [f"{self.action} {self.what}: {len(failures)} of {count} failed"]
        lines += failures[:NOTIFY_FAILURES]
        if len(failures) > NOTIFY_FAILURES:
            lines.append(f"... and {len(failures) - NOTIFY_FAILURES} more")
        return False, "\n".join(lines)


class ServicesView(DashboardView):
    # In the order of their place in a narrow footer (tui.footer keeps the first ones).
    BINDINGS = [
        Binding("S", "operate('start')", "Start"),
        Binding("T", "operate('stop')", "Stop"),
        Binding("R", "operate('restart')", "Restart"),
        Binding("space", "mark", "Mark"),
        Binding("l", "logs", "Logs"),
        Binding("d", "describe", "Describe"),
        Binding("p", "deploy", "Deploy"),
        Binding("B", "operate('rollback')", "Rollback"),
        Binding("ctrl+d", "destroy", "Destroy"),
        # With --read-only the change keys above are hidden, and these explain why.
        Binding("S", "refuse('start')", show=False),
        Binding("T", "refuse('stop')", show=False),
        Binding("R", "refuse('restart')", show=False),
        Binding("B", "refuse('rollback')", show=False),
        Binding("p", "refuse('deploy')", show=False),
        Binding("ctrl+d", "refuse('destroy')", show=False),
    ]

    DEFAULT_CSS = """
    ServicesView #svc-table { height: 1fr; }
    ServicesView #svc-progress { padding: 0 1; }
    """
    MAIN = "#svc-table"

    def __init__(self, session: DashboardSession, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.instances: dict[str, dict[str, Any]] = {}
        self.rows: dict[str, list[Cell]] = {}
        self.marked: set[str] = set()
        self.busy: Counter[str] = Counter()
        self.metrics: dict[str, dict[str, Any]] = {}
        self.metric_rows: dict[str, dict[str, Any]] = {}  # what metrics.watch last said
        self.clock: Callable[[], float] = time.time

    def compose(self) -> ComposeResult:
        table: DataTable[Any] = DataTable(id="svc-table", cursor_type="row", zebra_stripes=True)
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Label("", id="svc-progress", markup=False)

    def on_mount(self) -> None:
        self.set_interval(UPTIME_TICK, self._tick)

    def on_show(self) -> None:
        self.render_rows()

    # -- data --------------------------------------------------------------
    def apply(self, event: dict[str, Any], full: bool = False) -> None:
        """Merge one ``svc.watch`` event; ``full`` means it lists every instance."""
        self.instances = merge_watch(self.instances, event, "instance", full)
        self.marked &= set(self.instances)
        self.render_rows()
        self.post_message(FleetChanged())

    def merge_metrics(self, metrics: Mapping[str, Mapping[str, Any]], full: bool = False) -> None:
        """The hook for per-instance metrics: ``{instance name: {"cpu", "rss"}}`` (catalogue names).

        ``apply_metrics`` feeds it from ``metrics.watch``; an instance without
        an entry shows "-" for CPU and RSS. ``full`` replaces every entry.
        """
        if full:
            self.metrics = {}
        self.metrics.update({name: dict(values) for name, values in metrics.items()})
        self.render_rows()

    def apply_metrics(self, event: dict[str, Any], full: bool = False) -> None:
        """Merge one ``metrics.watch`` event (``instances``) through ``merge_metrics``.

        Its rows are keyed ``system/module@node`` like this view's; an instance
        that stops running leaves the stream's rows and its cells go back to "-".
        """
        self.metric_rows = merge_watch(
            self.metric_rows,
            event,
            "key",
            full,
            lambda row: {name: row.get(name) for name in WATCHED_METRICS},
        )
        self.merge_metrics(self.metric_rows, full=True)

    def render_rows(self) -> None:
        table, selected = self.table, self.selected()
        now = self.clock()
        gone = [n for n in self.rows if n not in self.instances]
        added = False
        with self.app.batch_update():
            for name in gone:
                table.remove_row(name)
                del self.rows[name]
            for name, view in self.instances.items():
                cells = instance_cells(
                    view, now, name in self.marked, self.busy[name] > 0, self.metrics.get(name)
                )
                # update_width: states and errors grow, widen their column
                added |= sync_row(table, self.rows, name, cells, COLUMNS, update_width=True)
            if added:
                views = self.instances
                table.sort("instance", key=lambda name: instance_key(views.get(str(name), {})))
            if (added or gone) and selected in self.rows:
                table.move_cursor(row=table.get_row_index(selected))

    def _tick(self) -> None:
        running = (v.get("state") == InstanceState.RUNNING for v in self.instances.values())
        if self.display and any(running):
            self.render_rows()

    def targets(self) -> list[str]:
        """The marked instances in table order, else the selected one."""
        if self.marked:
            return [str(r.key.value) for r in self.table.ordered_rows if r.key.value in self.marked]
        name = self.selected()
        return [name] if name is not None else []

    def chosen(self) -> list[str]:
        """``targets()``, saying so when there is none."""
        names = self.targets()
        if not names:
            self.say("no instance selected")
        return names

    def one_chosen(self) -> str | None:
        """The selected instance, saying so when there is none."""
        name = self.selected()
        if name is None or name not in self.instances:
            self.say("no instance selected")
            return None
        return name

    # -- keys --------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in CHANGES:
            return not self.session.read_only
        if action == "refuse":
            return self.session.read_only
        return True

    def action_refuse(self, what: str) -> None:
        self.refused(what)

    def palette_commands(self) -> list[PaletteCommand]:
        """The view's actions for the palette; change actions refuse in read-only mode."""
        entries = [PaletteCommand("Services: mark", "mark a row (space)", self.action_mark)]
        for action, key in (("start", "S"), ("stop", "T"), ("restart", "R"), ("rollback", "B")):
            entries.append(
                PaletteCommand(
                    f"Services: {action}",
                    f"{action} the marked rows or the selected one ({key})",
                    partial(self.action_operate, action),
                )
            )
        return [
            *entries,
            PaletteCommand("Services: deploy", "deploy form (p)", self.action_deploy),
            PaletteCommand("Services: destroy", "after a question (ctrl+d)", self.action_destroy),
            PaletteCommand("Services: describe", "the selected instance (d)", self.action_describe),
            PaletteCommand("Services: logs", "follow the selected instance (l)", self.action_logs),
        ]

    def action_mark(self) -> None:
        name = self.selected()
        if name is None:
            return
        self.marked ^= {name}
        self.render_rows()
        table = self.table
        table.move_cursor(row=min(table.cursor_row + 1, table.row_count - 1))

    def action_operate(self, action: str) -> None:
        if self.refused(action):
            return
        names = self.chosen()
        if not names:
            return
        self.marked.clear()
        self.start([{"action": action, "target": n, "wait": True} for n in names])

    def action_destroy(self) -> None:
        if self.refused("destroy"):
            return
        names = self.chosen()
        if not names:
            return
        listed = "\n".join(f"  {n}" for n in names[:10])
        more = f"\n  ... and {len(names) - 10} more" if len(names) > 10 else ""
        question = f"Stop and remove {len(names)} instance(s) from their nodes?\n{listed}{more}"

        def answered(yes: bool | None) -> None:
            if yes:
                self.marked.clear()
                self.start([{"action": "destroy", "target": n, "wait": True} for n in names])
            else:
                self.say("destroy canceled")

        self.app.push_screen(ConfirmScreen("destroy", question, yes="Destroy"), answered)

    def action_deploy(self) -> None:
        if self.refused("deploy"):
            return
        target = nodes = ""
        name = self.selected()
        if name in self.instances:
            view = self.instances[name]
            target, nodes = f"{view['system']}/{view['module']}", str(view["node"])
        form = DeployForm(target, nodes, describe=self.describe_system)

        def submitted(body: dict[str, Any] | None) -> None:
            if body is not None:
                self.start([body])

        self.app.push_screen(form, submitted)

    def action_describe(self) -> None:
        name = self.one_chosen()
        if name is None:
            return
        text = instance_detail(self.instances[name], self.metrics.get(name), self.clock())
        self.app.push_screen(TextScreen(f"instance {name}", text))

    def action_logs(self) -> None:
        name = self.one_chosen()
        if name is not None:
            self.post_message(FollowLogs(name))

    # -- daemon requests -----------------------------------------------------------
    async def describe_system(self, system: str) -> str:
        """The deploy form's hint: the system's modules, packages and start order."""
        client = self.session.client
        if client is None:
            return "the daemon is unreachable"
        try:
            reply = await client.call("system.show", name=system)
        except GdosError as exc:
            return exc.message
        modules = [
            f"{m['name']} ({m['package']}@{m.get('version') or 'latest'})" for m in reply["modules"]
        ]
        if not modules:
            return f"{system} has no modules; add one with 'gdos system add'"
        order = " ".join(f"[{', '.join(level)}]" for level in reply["levels"])
        return f"modules: {', '.join(modules)}; start order {order}"

    def start(self, bodies: list[dict[str, Any]]) -> None:
        """Run ``svc.run`` once per body, concurrently, and follow them all."""
        self.run_worker(self._follow(bodies), group="svc-run")

    async def _follow(self, bodies: list[dict[str, Any]]) -> None:
        action = bodies[0]["action"]
        client = self.session.client
        if client is None:
            self.say(f"the daemon is unreachable; {action} not sent")
            return
        what = bodies[0]["target"] if len(bodies) == 1 else f"{len(bodies)} instances"
        run = Run(action, what)
        progress = self.query_one("#svc-progress", Label)
        progress.update(run.line())
        await asyncio.gather(*(self._follow_one(client, body, run) for body in bodies))
        ok, sentence = run.outcome()
        # Failure messages come from nodes: each line made safe (controls shown).
        sentence = "\n".join(safe_text(line) for line in sentence.splitlines())
        progress.update(sentence.splitlines()[0] if sentence else "")
        self.notify(sentence, severity="information" if ok else "error", markup=False)

    async def _follow_one(self, client: Client, body: dict[str, Any], run: Run) -> None:
        progress = self.query_one("#svc-progress", Label)
        try:
            reply, events = await client.stream("svc.run", **body)
        except GdosError as exc:
            run.refusals.append(f"{body['target']}: {exc}")
            progress.update(run.line())
            return
        names = list(reply["instances"])
        run.total += len(names)
        self.busy.update(names)
        self.render_rows()
        try:
            async for event in events:
                if event["type"] == "level":
                    run.level = f"{event['level']}/{event['of']}"
                elif event["type"] == "state" and event.get("state") in SETTLED:
                    run.settled.add(event["instance"])
                elif event["type"] in ("results", "done"):  # results: ahead of a large done
                    run.results += event.get("results") or []
                    run.settled.update(r["instance"] for r in event.get("results") or [])
                    if event["type"] == "done" and not event.get("ok") and not event.get("results"):
                        run.refusals.append(f"{body['target']}: {event.get('message')}")
                progress.update(run.line())
        except GdosError as exc:
            run.refusals.append(f"{body['target']}: {exc}")
        finally:
            self.busy.subtract(names)
            self.busy = +self.busy
            self.render_rows()
