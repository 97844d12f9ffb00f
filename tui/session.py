"""What passes between the dashboard's app and its views: a session down, messages up.

The app builds one ``DashboardSession`` and hands it to every view (and to
the node detail pane) when it creates them: the client of the moment (None
while the daemon is away; the connection worker swaps it), the read-only
flag, and whether to ask the daemon at all. A view never calls into the app:
it posts one of the messages below, and they bubble up to ``GdosApp``'s
``on_*`` handlers. The app, in turn, never reaches into a view's widgets:
each view says which of its widgets takes the keys (``DashboardView.MAIN``)
and closes its own filter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from gdos.tui.commands import PaletteCommand
from textual.containers import Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable

from gdos.client.control import Client
from gdos.errors import GdosError

T = TypeVar("T")
READ_ONLY = "read-only mode: {} is disabled (started with --read-only)"


@dataclass
class DashboardSession:
    """What every view may read: the daemon's client, and what the operator asked for.

    ``client`` is None while the daemon is unreachable; ``poll=False`` asks the
    daemon nothing (tests feed the views and panes directly).
    """

    client: Client | None = None
    read_only: bool = False
    poll: bool = True


async def guard(call: Awaitable[T], say: Callable[[str], None] | None = None) -> T | None:
    """Await a client call; on a refusal, ``say`` its sentence (unless None) and return None."""
    try:
        return await call
    except GdosError as exc:
        if say is not None:
            say(str(exc))
        return None


# -- messages up: each bubbles from the view to GdosApp's on_* handler ------------------
# (dataclasses: Message.__post_init__ sets up what Textual needs)
@dataclass
class Say(Message):
    """Show ``text`` on the message line (and as a toast); "" clears the line."""

    text: str


class FleetChanged(Message):
    """The nodes or instances a view shows changed: the header's counts follow."""


@dataclass
class OpenNodeDetail(Message):
    """Open the detail pane (facts and sparklines) of node ``name``."""

    name: str


@dataclass
class FollowLogs(Message):
    """Switch to the Logs view and follow ``target`` (the targets box's syntax)."""

    target: str


@dataclass
class OpenShell(Message):
    """Suspend the dashboard and run a remote shell on ``node``."""

    node: str


class DashboardView(Vertical):
    """One view of the dashboard: its session, how it speaks up, and its focus.

    ``MAIN`` selects the widget that takes the keys when the view comes on
    screen or an overlay closes (its table, or its log pane).
    """

    MAIN: ClassVar[str] = ""

    def __init__(self, session: DashboardSession, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session = session

    def say(self, text: str) -> None:
        self.post_message(Say(text))

    def refused(self, what: str) -> bool:
        """True (and said) when the dashboard runs read-only and ``what`` would change things."""
        if self.session.read_only:
            self.say(READ_ONLY.format(what))
        return self.session.read_only

    async def guard(self, call: Awaitable[T], quiet: bool = False) -> T | None:
        """Await a client call; say its refusal (unless ``quiet``) and return None."""
        return await guard(call, None if quiet else self.say)

    @property
    def table(self) -> DataTable[Any]:
        """``MAIN`` as a table (every view's but the Logs view's is one)."""
        return self.query_one(self.MAIN, DataTable)

    def selected(self) -> str | None:
        """The key of the table's row under the cursor; None while the table is empty."""
        table = self.table
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return str(key) if key is not None else None

    def take_focus(self) -> None:
        """Give the keys to ``MAIN`` now: ``focus()`` would wait for the next idle tick."""
        main: Widget = self.query_one(self.MAIN)
        if main.focusable:
            self.screen.set_focus(main)

    def close_filter(self) -> None:
        """Escape: close this view's open input (if any) and give the keys back to ``MAIN``."""
        self.take_focus()

    def palette_commands(self) -> list[PaletteCommand]:
        return []
