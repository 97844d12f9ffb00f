"""The Tasks view: recent tasks, an exec form, and per-host results of a run.

The task list is reloaded every few seconds through ``task.list``. An exec
started from the form follows its stream: every ``host`` event updates that
host's row (status, exit code, duration) as it arrives, and ``output`` events
become ``host | line`` lines in a log pane that keeps the last
``OUTPUT_LINES`` lines. Cancel asks first unless the task has ended.
"""

from __future__ import annotations

import shlex
from typing import Any

from gdos.tui.commands import PaletteCommand
from gdos.tui.forms import ConfirmScreen, EnterSubmits
from gdos.tui.session import DashboardSession, DashboardView
from gdos.tui.widgets import status_text, when
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, RichLog

from gdos.errors import GdosError
from gdos.model import TaskStatus
from gdos.safe_text import safe_cell, safe_line
from gdos.units import human_duration

TASK_COLUMNS = (
    ("ID", "id"),
    ("WHEN", "when"),
    ("USER", "user"),
    ("STATUS", "status"),
    ("OK/HOSTS", "ok"),
    ("COMMAND", "command"),
)
HOST_COLUMNS = (
    ("HOST", "node"),
    ("STATUS", "status"),
    ("EXIT", "exit"),
    ("DURATION", "duration"),
    ("REASON", "reason"),
)
OUTPUT_LINES = 2_000  # the exec log pane keeps the newest lines only
ENDED = frozenset(TaskStatus) - {TaskStatus.RUNNING}


class HostLines:
    """Turns ``output`` chunks into complete ``host | line`` lines.

    Chunks split lines anywhere; the unfinished end of each host's stream
    waits for the rest, and ``flush(node)`` releases it when the host ends.
    Names are padded to the widest one seen so the bars line up.
    """

    def __init__(self, nodes: list[str] | None = None) -> None:
        self.partial: dict[tuple[str, str], bytes] = {}
        self.width = max((len(n) for n in nodes or []), default=0)

    def feed(self, node: str, stream: str, data: bytes) -> list[tuple[str, str]]:
        """The complete lines in this chunk as (text, stream)."""
        joined = self.partial.pop((node, stream), b"") + data
        *lines, rest = joined.split(b"\n")
        if rest:
            self.partial[(node, stream)] = rest
        return [(self.line(node, raw), stream) for raw in lines]

    def flush(self, node: str) -> list[tuple[str, str]]:
        out = []
        for stream in ("stdout", "stderr"):
            rest = self.partial.pop((node, stream), None)
            if rest:
                out.append((self.line(node, rest), stream))
        return out

    def line(self, node: str, raw: bytes) -> str:
        self.width = max(self.width, len(node))
        return f"{node:<{self.width}} | {raw.decode('utf-8', 'replace').rstrip(chr(13))}"


def exec_request(targets: str, command: str) -> dict[str, Any]:
    """The ``exec.start`` body for the form's two fields.

    Targets are node names separated by spaces or commas; ``all`` means every
    node and a word with ``*`` or ``?`` is a glob. Raises ValueError with a
    sentence for the operator.
    """
    words = [w for w in targets.replace(",", " ").split() if w]
    argv = shlex.split(command)
    if not words:
        raise ValueError("give targets: node names, a glob such as web-*, or all")
    if not argv:
        raise ValueError("give a command to run")
    body: dict[str, Any] = {"argv": argv, "follow": True}
    globs = [w for w in words if any(c in w for c in "*?[")]
    if words == ["all"]:
        body["all"] = True
    elif globs:
        if len(words) > 1:
            raise ValueError("give either one glob or node names, not both")
        body["match"] = globs[0]
    else:
        body["targets"] = words
    return body


class ExecForm(EnterSubmits, ModalScreen[dict[str, Any] | None]):
    """Targets and a command; returns the ``exec.start`` body, or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]
    DEFAULT_CSS = """
    ExecForm { align: center middle; }
    ExecForm > Vertical {
        width: 80; height: auto; border: round $accent; background: $surface; padding: 1;
    }
    ExecForm #exec-error { color: $error; }
    """

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "exec"
            yield Label("Targets (names, a glob, or all)")
            yield Input(placeholder="web-1 web-2", id="exec-targets")
            yield Label("Command")
            yield Input(placeholder="uptime", id="exec-command")
            yield Label("", id="exec-error", markup=False)
            with Horizontal():
                yield Button("Run", variant="primary", id="exec-run")
                yield Button("Cancel", id="exec-cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "exec-run":
            self.submit()
        else:
            self.dismiss(None)

    def submit(self) -> None:
        targets = self.query_one("#exec-targets", Input).value
        command = self.query_one("#exec-command", Input).value
        try:
            body = exec_request(targets, command)
        except ValueError as exc:
            self.query_one("#exec-error", Label).update(str(exc))
            return
        self.dismiss(body)


class TasksView(DashboardView):
    BINDINGS = [
        Binding("x", "exec", "Exec"),
        Binding("c", "cancel", "Cancel task"),
        Binding("r", "reload", "Reload"),
    ]
    DEFAULT_CSS = """
    TasksView #run-title { padding: 0 1; text-style: bold; }
    TasksView #tasks-table, TasksView #hosts-table { height: 1fr; }
    TasksView #exec-log { height: 2fr; border-top: solid $panel; }
    """
    RELOAD_SECONDS = 3.0
    MAIN = "#tasks-table"

    def __init__(self, session: DashboardSession, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.statuses: dict[int, str] = {}  # task id -> status, from the list and the stream

    def compose(self) -> ComposeResult:
        tasks: DataTable[Any] = DataTable(id="tasks-table", cursor_type="row")
        for label, key in TASK_COLUMNS:
            tasks.add_column(label, key=key)
        yield tasks
        yield Label("no exec started from the dashboard yet", id="run-title", markup=False)
        hosts: DataTable[Any] = DataTable(id="hosts-table", cursor_type="row")
        for label, key in HOST_COLUMNS:
            hosts.add_column(label, key=key)
        yield hosts
        yield RichLog(id="exec-log", max_lines=OUTPUT_LINES, markup=False, auto_scroll=True)

    def on_mount(self) -> None:
        self.set_interval(self.RELOAD_SECONDS, self.action_reload)

    def on_show(self) -> None:
        self.action_reload()

    # -- the task list -------------------------------------------------------
    def action_reload(self) -> None:
        if self.session.client is not None:
            self._reload()

    @work(group="task-list", exclusive=True)
    async def _reload(self) -> None:
        client = self.session.client
        if client is None:
            return
        reply = await self.guard(client.call("task.list", limit=200), quiet=True)
        if reply is not None:
            self.show_tasks(reply["tasks"])

    def show_tasks(self, tasks: list[dict[str, Any]]) -> None:
        table = self.table
        keys = [str(t["id"]) for t in tasks]
        selected = self.selected_task()
        self.statuses.update({int(t["id"]): str(t["status"]) for t in tasks})
        with self.app.batch_update():
            for row_key in [k for k in table.rows if k.value not in keys]:
                table.remove_row(row_key)
            for task, key in zip(tasks, keys, strict=True):
                cells = [
                    key,
                    when(task.get("created")),
                    safe_cell(task.get("user") or "-"),
                    status_text(task["status"]),
                    f"{task['succeeded']}/{task['hosts']}",
                    safe_cell(shlex.join(task["argv"])),
                ]
                if key not in table.rows:
                    table.add_row(*cells, key=key)
                    continue
                for (_, column), value in zip(TASK_COLUMNS, cells, strict=True):
                    if table.get_cell(key, column) != value:
                        # widen the column: "running" becomes "succeeded", never "succeed"
                        table.update_cell(key, column, value, update_width=True)
            table.sort("id", key=lambda v: -int(str(v)))
            if selected is not None and selected in table.rows:
                table.move_cursor(row=table.get_row_index(str(selected)))

    def selected_task(self) -> int | None:
        key = self.selected()
        return int(key) if key is not None else None

    # -- exec and cancel -------------------------------------------------------
    def palette_commands(self) -> list[PaletteCommand]:
        return [
            PaletteCommand("Tasks: exec", "run a command on nodes (x)", self.action_exec),
            PaletteCommand("Tasks: cancel task", "cancel the selected one (c)", self.action_cancel),
            PaletteCommand("Tasks: reload", "reload the task list now (r)", self.action_reload),
        ]

    def action_exec(self) -> None:
        if self.refused("exec"):
            return
        self.app.push_screen(ExecForm(), self._start)

    def _start(self, body: dict[str, Any] | None) -> None:
        if body is not None:
            self.run_worker(self._follow(body), group="exec", exclusive=True)

    async def _follow(self, body: dict[str, Any]) -> None:
        client = self.session.client
        if client is None:
            self.say("the daemon is unreachable; exec not started")
            return
        opened = await self.guard(client.stream("exec.start", **body))
        if opened is None:
            return
        reply, events = opened
        title = self.query_one("#run-title", Label)
        command = shlex.join(body["argv"])
        title.update(f"task {reply['task']}: {command} — running")
        hosts = self.query_one("#hosts-table", DataTable)
        hosts.clear()
        log = self.query_one("#exec-log", RichLog)
        log.clear()
        lines = HostLines([h["node"] for h in reply["hosts"]])
        self.statuses[int(reply["task"])] = TaskStatus.RUNNING
        for host in reply["hosts"]:
            self.show_host(host)
        self.action_reload()
        try:
            async for event in events:
                if event["type"] == "output":
                    self.show_output(log, lines.feed(event["node"], event["stream"], event["data"]))
                elif event["type"] == "host":
                    self.show_output(log, lines.flush(event["node"]))
                    self.show_host(event)
                elif event["type"] == "done":
                    self.statuses[int(reply["task"])] = event["status"]
                    title.update(f"task {reply['task']}: {command} — {event['status']}")
        except GdosError as exc:
            self.say(f"lost task {reply['task']}: {exc}")
        self.action_reload()

    def show_output(self, log: RichLog, lines: list[tuple[str, str]]) -> None:
        for text, stream in lines:
            log.write(Text(safe_line(text), style="red" if stream == "stderr" else ""))

    def show_host(self, host: dict[str, Any]) -> None:
        table = self.query_one("#hosts-table", DataTable)
        code = host.get("exit_code")
        cells = [
            safe_cell(host["node"]),
            status_text(host["status"]),
            "-" if code is None else str(code),
            human_duration(host.get("duration"), fine_below=0.0),
            safe_cell(host.get("reason") or ""),
        ]
        name = host["node"]
        if name not in table.rows:
            table.add_row(*cells, key=name)
            return
        for (_, column), value in zip(HOST_COLUMNS, cells, strict=True):
            table.update_cell(name, column, value, update_width=True)

    def action_cancel(self) -> None:
        if self.refused("cancel"):
            return
        task_id = self.selected_task()
        if task_id is None:
            self.say("no task selected")
            return
        status = self.statuses.get(task_id)
        if status in ENDED:
            self.say(f"task {task_id} already ended ({status}); nothing to cancel")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._cancel(task_id), group="cancel")
            else:
                self.say(f"task {task_id} left running")

        question = f"Cancel task {task_id} on every node where it still runs?"
        self.app.push_screen(ConfirmScreen("cancel task", question, yes="Cancel task"), answered)

    async def _cancel(self, task_id: int) -> None:
        client = self.session.client
        if client is None:
            self.say("the daemon is unreachable; cannot cancel")
            return
        reply = await self.guard(client.call("task.cancel", id=task_id))
        if reply is not None:
            self.say(f"canceling task {task_id} on {reply['open']} host(s)")
            self.action_reload()
