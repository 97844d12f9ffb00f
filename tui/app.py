"""``GdosApp``: the dashboard's frame, its connection, and its command mode.

The app owns one ``gdos.client.control.Client``. A connection worker keeps it alive:
it subscribes to ``node.watch``, ``svc.watch`` and ``metrics.watch`` (instance
rows) and feeds the Nodes and Services views; when the daemon goes away it
shows a banner and reconnects with backoff, and the banner goes once the
daemon answers again.

Attributes down, messages up (``tui.session``): every view is built with the
one ``DashboardSession`` (the client of the moment, read-only, whether to
poll) and reaches the daemon through it; it speaks up only by posting
messages (``Say``, ``FleetChanged``, ``OpenNodeDetail``, ``FollowLogs``,
``OpenShell``), handled by the ``on_*`` methods here. The app calls down
into views (feeding data, ``take_focus``, ``close_filter``) and never names
a widget inside one.

Every action also has a command-palette entry (``ctrl+p``, ``tui.commands``):
the views, the current view's actions and the themes. An entry calls the
same action method as the key, so read-only refusals apply to both.

``:`` opens the command prompt (a line under the header, with view names
completed). It is a priority binding whose action moves the focus at once,
not on the next idle tick: keys typed right after ``:`` are handled after
it, so they land in the prompt however fast they come, and never reach a
view's bindings (``s`` on the Nodes view opens a shell). Whenever an
overlay closes (prompt, palette, form, question, pane), the focus goes back
to the table of the view on screen, so keys and row actions act on it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from gdos.tui.commands import DashboardCommands, PaletteCommand
from gdos.tui.footer import KeysFooter
from gdos.tui.header import header_text, short_path
from gdos.tui.logs import LogsView
from gdos.tui.node_detail import NodeDetailScreen
from gdos.tui.nodes import NodesView
from gdos.tui.records import AlertsView, AuditView
from gdos.tui.services import ServicesView
from gdos.tui.session import (
    DashboardSession,
    DashboardView,
    FleetChanged,
    FollowLogs,
    OpenNodeDetail,
    OpenShell,
    Say,
)
from gdos.tui.tasks import TasksView
from gdos.tui.widgets import HELP, TextScreen
from textual import work
from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.theme import BUILTIN_THEMES
from textual.widgets import ContentSwitcher, Input, Static

from gdos.client.control import Client
from gdos.errors import GdosError
from gdos.paths import resolve as resolve_paths
from gdos.safe_text import safe_text

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
COMMAND_WORDS = ("nodes", "svc", "services", "tasks", "logs", "alerts", "audit", "quit")
PROMPT_HINT = "nodes  svc  tasks  logs  alerts  audit  q   (tab completes, escape closes)"
BANNER = "daemon unreachable — reconnecting"
BACKOFF_MIN, BACKOFF_MAX = 0.2, 5.0
DEFAULT_THEME = "textual-dark"


def theme_names() -> list[str]:
    """The themes ``--theme`` accepts: Textual's built-in ones."""
    return sorted(BUILTIN_THEMES)


def shell_argv(node: str) -> list[str]:
    """The remote shell the ``s`` key runs: ``gdos shell NODE`` with this interpreter."""
    return [sys.executable, "-P", "-m", "gdos.cli.main", "shell", node]


def command_target(text: str) -> str | None:
    """The view (or ``quit``) a prompt line names; a unique prefix will do (``se``, ``al``)."""
    word = text.strip().lstrip(":").strip().lower()
    if word == "q":
        return "quit"
    if word in VIEWS or word == "quit":
        return VIEWS.get(word, word)
    targets = {VIEWS.get(w, w) for w in COMMAND_WORDS if word and w.startswith(word)}
    return targets.pop() if len(targets) == 1 else None


class CommandInput(Input):
    """The ``:`` prompt: one line; tab takes the completion shown after the cursor."""

    BINDINGS = [Binding("tab", "complete", "Complete", show=False)]

    def action_complete(self) -> None:
        self.cursor_position = len(self.value)
        self.action_cursor_right()  # at the end, Input takes the suggestion


class DashboardScreen(Screen[None]):
    """The dashboard's screen: when an overlay on it closes, the view's table gets the focus."""

    def on_screen_resume(self) -> None:
        focus_view = getattr(self.app, "focus_view", None)
        if focus_view is not None:
            focus_view()


class GdosApp(App[None]):
    TITLE = "gdos"
    CSS = """
    DashboardScreen { overflow: hidden hidden; }
    #header { height: 1; background: $panel; }
    #views { height: 1fr; }
    #banner { display: none; background: $error; color: $text; text-style: bold; padding: 0 1; }
    #banner.down { display: block; }
    #message { height: auto; max-height: 3; color: $warning; padding: 0 1; }
    #command {
        display: none; height: 1; border: none; padding: 0 1; background: $boost;
    }
    #command:focus { border: none; }
    """
    BINDINGS = [
        Binding("colon", "command", "Command", priority=True),
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
        self.socket_path, self.refresh_seconds = socket_path, refresh
        self.session = DashboardSession(read_only=read_only, poll=connect)
        self.connected = False
        self.daemon_label = short_path(socket_path or resolve_paths().control_socket)

    @property
    def client(self) -> Client | None:
        """The daemon's client while connected (the session's; views read it there)."""
        return self.session.client

    @property
    def read_only(self) -> bool:
        return self.session.read_only

    def get_default_screen(self) -> Screen[Any]:
        return DashboardScreen(id="_default")

    def compose(self) -> ComposeResult:
        yield Static("", id="header", markup=False)
        yield Static(BANNER, id="banner")
        yield CommandInput(
            placeholder=PROMPT_HINT,
            id="command",
            suggester=SuggestFromList(COMMAND_WORDS, case_sensitive=False),
            select_on_focus=False,
        )
        session = self.session
        with ContentSwitcher(initial="nodes", id="views"):
            yield NodesView(session, id="nodes")
            yield TasksView(session, id="tasks")
            yield ServicesView(session, id="services")
            yield LogsView(session, id="logs")
            yield AlertsView(session, id="alerts")
            yield AuditView(session, id="audit")
        yield Static("", id="message", markup=False)
        yield KeysFooter()

    def on_mount(self) -> None:
        self.sub_title = "read-only" if self.read_only else ""
        if self.session.poll:
            self._connection()
        self.update_header()
        self.query_one(NodesView).take_focus()

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
                self.session.client = client
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
                self.session.client = None
                await client.close()
            self._set_down(True)
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)

    def _set_down(self, down: bool) -> None:
        self.connected = not down
        self.query_one("#banner").set_class(down, "down")
        self.update_header()

    @property
    def dashboard(self) -> Screen[Any]:
        """The dashboard's own screen, even while an overlay covers it."""
        return self.screen_stack[0]

    def update_header(self) -> None:
        """Redraw the header line (on a view's ``FleetChanged``, a view switch, a reconnect)."""
        if not self.is_running or not self.screen_stack:
            return
        dashboard = self.dashboard
        text = header_text(
            self.current_view(),
            dashboard.query_one(NodesView).nodes.values(),
            dashboard.query_one(ServicesView).instances.values(),
            self.daemon_label,
            self.connected,
            self.read_only,
        )
        dashboard.query_one("#header", Static).update(text)

    # -- what the views post ---------------------------------------------------------
    def on_say(self, message: Say) -> None:
        self.show_message(message.text)

    def on_fleet_changed(self, _: FleetChanged) -> None:
        self.update_header()

    def on_open_node_detail(self, message: OpenNodeDetail) -> None:
        self.open_node_detail(message.name)

    def on_follow_logs(self, message: FollowLogs) -> None:
        self.follow_logs(message.target)

    def on_open_shell(self, message: OpenShell) -> None:
        self.open_shell(message.node)

    def show_message(self, text: str) -> None:
        """The message line (and a toast): refusals and hints; "" clears it."""
        text = safe_text(text)  # often carries a node's error sentence
        self.dashboard.query_one("#message", Static).update(text)
        if text:
            self.notify(text, severity="warning", markup=False)

    def open_node_detail(self, name: str) -> None:
        """The detail pane of node ``name``: facts and sparklines (``enter`` on a node)."""
        self.push_screen(NodeDetailScreen(name, self.session))

    def follow_logs(self, target: str) -> None:
        """Switch to the Logs view and follow ``target`` (``l`` on an instance)."""
        self.show_view("logs")
        self.query_one(LogsView).follow(target)

    def open_shell(self, node: str) -> None:
        """Suspend the dashboard, run ``gdos shell NODE``, resume and tell how it ended."""
        try:
            with self.suspend():
                code = subprocess.call(shell_argv(node))
        except SuspendNotSupported:
            self.show_message("this terminal cannot be suspended; run gdos shell instead")
            return
        except OSError as exc:
            self.show_message(f"could not start gdos shell: {exc}")
            return
        self.notify(
            f"shell on {node} exited with status {code}",
            severity="information" if code == 0 else "warning",
            markup=False,
        )

    # -- modes and views ------------------------------------------------------------
    def show_view(self, name: str) -> None:
        self.query_one("#views", ContentSwitcher).current = name
        self.update_header()
        self.focus_view()

    def focus_view(self) -> None:
        """Give the focus to the table (or pane) of the view on screen, now.

        Called when the prompt or a filter closes and when the dashboard's
        screen resumes after an overlay, so arrow keys and row actions act on
        the view's table, never on a hidden input.
        """
        if self.screen_stack and self.screen is self.dashboard:
            self.view_on(self.dashboard).take_focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """``:`` opens the prompt on the dashboard's screen, unless an input is typed in."""
        if action == "command":
            on_dashboard = bool(self.screen_stack) and self.screen is self.dashboard
            return on_dashboard and not isinstance(self.focused, Input)
        return True

    def action_command(self) -> None:
        box = self.query_one("#command", Input)
        box.value, box.display = "", True
        # Focus now (``focus()`` waits for the next idle tick): the keys typed
        # right after ``:`` are already queued and must land in the prompt.
        self.screen.set_focus(box)

    def action_close_input(self) -> None:
        self.query_one("#command", Input).display = False
        if self.screen_stack and self.screen is self.dashboard:
            self.view_on(self.dashboard).close_filter()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "command":
            return
        event.input.display = False
        target = command_target(event.value)
        if target == "quit":
            self.exit()
        elif target is not None:
            self.show_view(target)
            self.show_message("")
        else:
            word = event.value.strip().lstrip(":")
            self.show_message(
                f"unknown command :{word}; try :nodes, :svc, :tasks, :logs, :alerts or :audit"
            )
            self.focus_view()

    def current_view(self) -> str:
        return self.dashboard.query_one("#views", ContentSwitcher).current or "nodes"

    def view_on(self, screen: Screen[Any]) -> DashboardView:
        """The view the dashboard's ``screen`` shows."""
        current = screen.query_one("#views", ContentSwitcher).current or "nodes"
        return screen.query_one(f"#{current}", DashboardView)

    def palette_commands(self, screen: Screen[Any]) -> list[PaletteCommand]:
        """The palette's entries: views, the current view's actions, help, themes.

        ``screen`` is the dashboard's screen (the palette covers it meanwhile).
        """
        entries = [
            PaletteCommand(f"View: {name}", f":{name}", partial(self.show_view, name))
            for name in VIEW_NAMES
        ]
        entries += self.view_on(screen).palette_commands()
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


async def _feed(
    events: AsyncIterator[dict[str, Any]],
    apply: Callable[[dict[str, Any], bool], None],
    running: Callable[[], bool],
) -> None:
    """Apply a watch stream's events to a view; the first one starts from empty.

    A snapshot too large for one frame arrives as several events (``more``
    set on all but the last): the first replaces the view, the rest add to it.

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
