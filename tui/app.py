"""``GdosApp``: the dashboard's frame, its connection, and its command mode.

The app owns one ``gdos.client.Client``. A connection worker keeps it alive:
it subscribes to ``node.watch``, ``svc.watch`` and ``metrics.watch`` (instance
rows) and feeds the Nodes and Services views; when the daemon goes away it
shows a banner and reconnects with backoff, and the banner goes once the
daemon answers again. Views reach the daemon only through ``app.client`` and
report refusals with ``show_message``.

Every action also has a command-palette entry (``ctrl+p``, ``tui.commands``):
the views, the current view's actions and the themes. An entry calls the
same action method as the key, so read-only refusals apply to both.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.theme import BUILTIN_THEMES
from textual.widgets import ContentSwitcher, Footer, Input, Static

from gdos.client import Client
from gdos.errors import GdosError
from gdos.safe_text import safe_text
from tui.commands import DashboardCommands, PaletteCommand
from tui.logs import LogsView
from tui.node_detail import NodeDetailScreen
from tui.nodes import NodesView
from tui.records import AlertsView, AuditView
from tui.services import ServicesView
from tui.tasks import TasksView
from tui.widgets import HELP, TextScreen

T = TypeVar("T")
VIEWS = {
    "nodes": "nodes",
    "tasks": "tasks",
    "svc": "services",
    "services": "services",
    "logs": "logs",
    "alerts": "alerts",
    "audit": "audit",
}
VIEW_NAMES = ("nodes", "services", "tasks", "logs", "alerts", "audit")
TABLES = {
    "nodes": "#nodes-table",
    "tasks": "#tasks-table",
    "services": "#svc-table",
    "logs": "#logs-log",
    "alerts": "#alerts-table",
    "audit": "#audit-table",
}
View = NodesView | TasksView | ServicesView | LogsView | AlertsView | AuditView
BANNER = "daemon unreachable — reconnecting"
BACKOFF_MIN, BACKOFF_MAX = 0.2, 5.0
DEFAULT_THEME = "textual-dark"


def theme_names() -> list[str]:
    """The themes ``--theme`` accepts: Textual's built-in ones."""
    return sorted(BUILTIN_THEMES)


class GdosApp(App[None]):
    TITLE = "gdos"
    CSS = """
    #banner { display: none; background: $error; color: $text; text-style: bold; padding: 0 1; }
    #banner.down { display: block; }
    #message { height: auto; color: $warning; padding: 0 1; }
    #command, #filter { display: none; }
    #run-title { padding: 0 1; text-style: bold; }
    #tasks-table { height: 1fr; }
    #hosts-table { height: 1fr; }
    #exec-log { height: 2fr; border-top: solid $panel; }
    #svc-table { height: 1fr; }
    #svc-progress { padding: 0 1; }
    #logs-status, #alerts-summary, #audit-summary { padding: 0 1; text-style: bold; }
    #logs-log { height: 1fr; }
    #alerts-table, #audit-table { height: 1fr; }
    #logs-search, #alerts-filter, #audit-filter { display: none; }
    """
    BINDINGS = [
        Binding("colon", "command", "Command"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("escape", "close_input", "Close", show=False),
    ]
    COMMANDS = App.COMMANDS | {DashboardCommands}

    def __init__(
        self,
        socket_path: Path | None = None,
        read_only: bool = False,
        refresh: float = 1.0,
        connect: bool = True,
        theme: str = DEFAULT_THEME,
    ) -> None:
        """``connect=False`` never dials the daemon (tests feed the views directly).

        ``theme`` is one of ``theme_names()``; an unknown name raises
        ``textual.app.InvalidThemeError`` (the CLI checks it first).
        """
        super().__init__()
        self.theme = theme
        self.socket_path, self.read_only, self.refresh_seconds = socket_path, read_only, refresh
        self.connect = connect
        self.client: Client | None = None
        self.connected = False

    def compose(self) -> ComposeResult:
        yield Static(BANNER, id="banner")
        with ContentSwitcher(initial="nodes", id="views"):
            yield NodesView(id="nodes")
            yield TasksView(id="tasks")
            yield ServicesView(id="services")
            yield LogsView(id="logs")
            yield AlertsView(id="alerts")
            yield AuditView(id="audit")
        yield Static("", id="message", markup=False)
        yield Input(placeholder=":nodes  :svc  :tasks  :logs  :alerts  :audit  :q", id="command")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "read-only" if self.read_only else ""
        if self.connect:
            self._connection()
        self.query_one("#nodes-table").focus()

    # -- the connection --------------------------------------------------------
    @work(group="connection", exclusive=True)
    async def _connection(self) -> None:
        """Keep a client and its watch subscriptions; reconnect with backoff."""
        backoff = BACKOFF_MIN
        while True:
            try:
                client = await Client.connect(self.socket_path, timeout=2.0)
            except GdosError:
                self._set_down(True)
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            try:
                _, nodes = await client.stream("node.watch", interval=self.refresh_seconds)
                _, instances = await client.stream("svc.watch", interval=self.refresh_seconds)
                _, usage = await client.stream(
                    "metrics.watch", instances=True, interval=self.refresh_seconds
                )
                backoff = BACKOFF_MIN
                self.client = client
                self._set_down(False)
                services = self.query_one(ServicesView)

                def running() -> bool:
                    return self.is_running

                await _until_first_ends(
                    _feed(nodes, self.query_one(NodesView).apply, running),
                    _feed(instances, services.apply, running),
                    _feed(usage, services.apply_metrics, running),
                )
            except GdosError:
                pass
            finally:
                self.client = None
                await client.close()
            self._set_down(True)
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)

    def _set_down(self, down: bool) -> None:
        self.connected = not down
        self.query_one("#banner").set_class(down, "down")

    async def guard(self, call: Awaitable[T], quiet: bool = False) -> T | None:
        """Await a client call; show its refusal (unless ``quiet``) and return None."""
        try:
            return await call
        except GdosError as exc:
            if not quiet:
                self.show_message(str(exc))
            return None

    # -- messages, modes, views ----------------------------------------------------
    def show_message(self, text: str) -> None:
        text = safe_text(text)  # often carries a node's error sentence
        self.query_one("#message", Static).update(text)
        if text:
            self.notify(text, severity="warning", markup=False)

    def refuse_in_read_only(self, what: str) -> bool:
        if self.read_only:
            self.show_message(f"read-only mode: {what} is disabled (started with --read-only)")
        return self.read_only

    def show_view(self, name: str) -> None:
        self.query_one("#views", ContentSwitcher).current = name
        self.query_one(TABLES[name]).focus()

    def action_command(self) -> None:
        box = self.query_one("#command", Input)
        box.value, box.display = "", True
        box.focus()

    def action_close_input(self) -> None:
        self.query_one("#command", Input).display = False
        view = self.query_one(f"#{self.current_view()}")
        close = getattr(view, "close_filter", None)
        if close is not None:
            close()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "command":
            return
        event.input.display = False
        word = event.value.strip().lstrip(":").lower()
        if word in ("q", "quit"):
            self.exit()
        elif word in VIEWS:
            self.show_view(VIEWS[word])
            self.show_message("")
        else:
            self.show_message(
                f"unknown command :{word}; try :nodes, :svc, :tasks, :logs, :alerts or :audit"
            )
            self.show_view(self.current_view())

    def current_view(self) -> str:
        return self.query_one("#views", ContentSwitcher).current or "nodes"

    def palette_commands(self, screen: Screen[Any]) -> list[PaletteCommand]:
        """The palette's entries: views, the current view's actions, help, themes.

        ``screen`` is the dashboard's screen (the palette covers it meanwhile).
        """
        entries = [
            PaletteCommand(f"View: {name}", f":{name}", partial(self.show_view, name))
            for name in VIEW_NAMES
        ]
        current = screen.query_one("#views", ContentSwitcher).current or "nodes"
        view = cast("View", screen.query_one(f"#{current}"))
        entries += view.palette_commands()
        entries.append(PaletteCommand("Help: keys", "the key list (?)", self.action_help))
        entries += [
            PaletteCommand(f"Theme: {name}", "switch the colour theme", self._themer(name))
            for name in theme_names()
        ]
        return entries

    def _themer(self, name: str) -> Callable[[], None]:
        def switch() -> None:
            self.theme = name

        return switch

    def action_help(self) -> None:
        self.push_screen(TextScreen("keys", HELP))

    def open_node_detail(self, name: str) -> None:
        """The detail pane of node ``name``: facts and sparklines (``enter`` on a node)."""
        self.push_screen(NodeDetailScreen(name, poll=self.connect))

    def follow_logs(self, target: str) -> None:
        """Switch to the Logs view and follow ``target`` (``l`` on an instance)."""
        self.show_view("logs")
        self.query_one(LogsView).follow(target)

    def describe_node(self, name: str) -> None:
        self.run_worker(self._describe(name), group="describe", exclusive=True)

    async def _describe(self, name: str) -> None:
        if self.client is None:
            self.show_message("the daemon is unreachable")
            return
        reply = await self.guard(self.client.call("node.show", name=name))
        if reply is not None:
            text = json.dumps(reply["node"], indent=2, sort_keys=True, default=str)
            self.push_screen(TextScreen(f"node {name}", text))


async def _feed(
    events: AsyncIterator[dict[str, Any]],
    apply: Callable[[dict[str, Any], bool], None],
    running: Callable[[], bool],
) -> None:
    """Apply a watch stream's events to a view; the first one lists everything.

    Once the dashboard is shutting down (``running()`` is false) its widgets
    are going away: the feed waits to be cancelled instead of applying.
    """
    full = True
    async for event in events:
        if not running():
            await asyncio.Event().wait()
        apply(event, full)
        full = False


async def _until_first_ends(*feeds: Awaitable[None]) -> None:
    """Run the feeds together; when one ends or fails, cancel the rest and re-raise."""
    tasks = [asyncio.ensure_future(feed) for feed in feeds]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome


def run(
    socket_path: Path | None = None,
    read_only: bool = False,
    refresh: float = 1.0,
    theme: str = DEFAULT_THEME,
) -> None:
    GdosApp(socket_path, read_only=read_only, refresh=refresh, theme=theme).run()
