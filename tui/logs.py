"""The Logs view (``:logs``): follow one or more log sources through ``logs.open``.

The targets box takes what ``gdos logs`` takes: ``shop/web@n1``, ``shop/web``,
``shop``, several of them, and ``--file LABEL`` or ``NODE --path /abs/file``.
The view opens one ``logs.open`` stream with ``follow`` (the last
``HISTORY_LINES`` lines first) and writes each line to a ``RichLog`` that
keeps the newest ``MAX_LINES`` only.

Pause stops reading the stream: the client then grants the daemon no more
credit, the daemon grants the agents none, and the agents stop reading; on
resume the lines that waited arrive. Nothing piles up in the dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
from typing import Any

from gdos.tui.commands import PaletteCommand
from gdos.tui.session import DashboardSession, DashboardView
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input, Label, RichLog

from gdos.errors import GdosError
from gdos.safe_text import safe_line, safe_text

MAX_LINES = 5_000  # the pane keeps the newest lines only
HISTORY_LINES = 100
PREFIX_STYLES = ("cyan", "yellow", "green", "magenta", "blue", "red")
MATCH_STYLE = "bold black on yellow"


def logs_request(text: str) -> dict[str, Any]:
    """The ``logs.open`` body for the targets box; ValueError with a sentence if unusable."""
    try:
        words = shlex.split(text.replace(",", " "))
    except ValueError as exc:
        raise ValueError(f"cannot read the targets: {exc}") from None
    body: dict[str, Any] = {"lines": HISTORY_LINES, "follow": True}
    targets: list[str] = []
    options = {"--path": "path", "--file": "file"}
    while words:
        word = words.pop(0)
        if word in options:
            if not words:
                raise ValueError(f"{word} needs a value")
            body[options[word]] = words.pop(0)
        elif word.startswith("-"):
            raise ValueError(f"unknown option {word}; use --file LABEL or --path /abs/file")
        else:
            targets.append(word)
    if not targets:
        raise ValueError("give targets: shop/web@n1, shop/web, shop, or NODE --path /abs/file")
    body["targets"] = targets
    return body


def search_pattern(text: str) -> re.Pattern[str] | None:
    """What ``/`` highlights: a case-insensitive regex, or the literal text if it is none."""
    if not text:
        return None
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error:
        return re.compile(re.escape(text), re.IGNORECASE)


class SourceLabels:
    """``node system/module | `` prefixes when several sources merge (as ``gdos logs``)."""

    def __init__(self, sources: list[dict[str, Any]]) -> None:
        self.prefixes: dict[tuple[str, str | None, str], tuple[str, str]] = {}
        if len(sources) < 2:
            return
        width = max(len(s["node"]) for s in sources)
        inst_width = max(len(s.get("instance") or "") for s in sources)
        for index, s in enumerate(sources):
            label = f"{s['node']:<{width}}"
            if s.get("instance"):
                label += f" {s['instance']:<{inst_width}}"
            style = PREFIX_STYLES[index % len(PREFIX_STYLES)]
            self.prefixes[_key(s)] = (f"{safe_text(label)} | ", style)

    def line(self, event: dict[str, Any], raw: bytes, pattern: re.Pattern[str] | None) -> Text:
        prefix, style = self.prefixes.get(_key(event), ("", ""))
        text = Text(prefix, style=style)
        body = Text(safe_line(raw.rstrip(b"\r")))
        if pattern is not None:
            body.highlight_regex(pattern, MATCH_STYLE)
        return text + body


def _key(item: dict[str, Any]) -> tuple[str, str | None, str]:
    return (item["node"], item.get("instance"), item["file"])


class LogsView(DashboardView):
    BINDINGS = [
        Binding("f", "targets", "Follow…"),
        Binding("p", "pause", "Pause/resume"),
        Binding("slash", "search", "Highlight"),
        Binding("n", "next_match", "Next match"),
        Binding("G,end", "jump_end", "End"),
        Binding("c", "clear", "Clear", show=False),
    ]

    DEFAULT_CSS = """
    LogsView #logs-status { padding: 0 1; text-style: bold; }
    LogsView #logs-log { height: 1fr; }
    """
    MAIN = "#logs-log"

    def __init__(self, session: DashboardSession, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.request: dict[str, Any] | None = None
        self.stream_id: int | None = None
        self.paused = False
        self.pattern: re.Pattern[str] | None = None
        self.received = 0  # lines written since the follow started
        self.running = asyncio.Event()  # cleared while paused: the stream is not read
        self.running.set()
        self.status_text = ""

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="targets: shop/web@n1 shop/web … or NODE --path /abs/file (enter follows)",
            id="logs-targets",
        )
        yield Input(placeholder="highlight (regex; empty clears)", id="logs-search")
        yield Label("not following anything: press f and give targets", id="logs-status")
        yield RichLog(id="logs-log", max_lines=MAX_LINES, markup=False, auto_scroll=True)

    @property
    def pane(self) -> RichLog:
        return self.query_one("#logs-log", RichLog)

    def on_mount(self) -> None:
        self.query_one("#logs-search", Input).display = False

    # -- following ----------------------------------------------------------------
    def follow(self, text: str) -> None:
        """Follow the sources ``text`` names (the targets box's syntax); replaces any other."""
        self.query_one("#logs-targets", Input).value = text
        try:
            body = logs_request(text)
        except ValueError as exc:
            self.say(str(exc))
            return
        self.say("")
        self.request = body
        self.paused = False
        self.running.set()
        self.received = 0
        self.pane.clear()
        self.pane.auto_scroll = True
        self.pane.focus()
        self._follow(body)

    @work(group="logs-follow", exclusive=True)
    async def _follow(self, body: dict[str, Any]) -> None:
        client = self.session.client
        if client is None:
            self.set_status("the daemon is unreachable; press f to try again")
            return
        opened = await self.guard(client.stream("logs.open", **body))
        if opened is None:
            self.set_status("not following: the daemon refused (see the message)")
            return
        reply, events = opened
        stream_id = self.stream_id = int(reply["stream"])
        labels = SourceLabels(reply["sources"])
        what = " ".join(body["targets"])
        self.set_status(f"following {what}: {len(reply['sources'])} source(s)")
        try:
            async for event in events:
                await self.running.wait()
                self.show_event(labels, event, what)
        except GdosError as exc:
            self.set_status(f"lost the stream of {what}: {exc}; press f to follow again")
        finally:
            if client is self.session.client and not client.closed:
                with contextlib.suppress(Exception):
                    await client.notify("stream.cancel", stream=stream_id)
            if self.stream_id == stream_id:
                self.stream_id = None

    def show_event(self, labels: SourceLabels, event: dict[str, Any], what: str) -> None:
        """Write one ``logs.open`` event: its lines, a source's end, or the stream's."""
        if event["type"] == "lines":
            for raw in event["lines"]:
                self.pane.write(labels.line(event, raw, self.pattern))
            self.received += len(event["lines"])
        elif event["type"] == "end":
            self.show_end(event)
        elif event["type"] == "done":
            self.set_status(f"{what}: every source ended")

    def show_end(self, event: dict[str, Any]) -> None:
        where = event["node"] + (f" {event['instance']}" if event.get("instance") else "")
        if event.get("code"):
            line = f"-- {where}: error[{event['code']}]: {event.get('message')}"
            self.pane.write(Text(line, style="red"))
        else:
            self.pane.write(Text(f"-- {where}: ended", style="dim"))

    def set_status(self, text: str) -> None:
        state = " — PAUSED (p resumes)" if self.paused else ""
        self.query_one("#logs-status", Label).update(text + state)
        self.status_text = text

    # -- keys ----------------------------------------------------------------------
    def palette_commands(self) -> list[PaletteCommand]:
        entries = (
            ("follow", "give targets to follow (f)", self.action_targets),
            ("pause or resume", "stop or go on reading (p)", self.action_pause),
            ("highlight", "highlight a regex in new lines (/)", self.action_search),
            ("next match", "scroll to the next match (n)", self.action_next_match),
            ("jump to end", "and follow the newest lines (G)", self.action_jump_end),
            ("clear", "empty the pane (c)", self.action_clear),
        )
        return [PaletteCommand(f"Logs: {title}", text, run) for title, text, run in entries]

    def action_targets(self) -> None:
        box = self.query_one("#logs-targets", Input)
        box.focus()

    def action_pause(self) -> None:
        if self.request is None:
            self.say("not following anything: press f and give targets")
            return
        self.paused = not self.paused
        if self.paused:
            self.running.clear()
        else:
            self.running.set()
        self.set_status(self.status_text)

    def action_search(self) -> None:
        box = self.query_one("#logs-search", Input)
        box.display = True
        box.focus()

    def action_next_match(self) -> None:
        if self.pattern is None:
            self.say("nothing to find: press / and give a pattern")
            return
        log = self.pane
        lines = [strip.text for strip in log.lines]
        start = int(log.scroll_y) + 1
        order = [*range(start, len(lines)), *range(0, min(start, len(lines)))]
        for index in order:
            if self.pattern.search(lines[index]):
                log.auto_scroll = False
                log.scroll_to(y=index, animate=False)
                return
        self.say(f"no line matches /{self.pattern.pattern}/")

    def action_jump_end(self) -> None:
        self.pane.auto_scroll = True
        self.pane.scroll_end(animate=False)

    def action_clear(self) -> None:
        self.pane.clear()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "logs-targets":
            event.stop()
            self.follow(event.value)
        elif event.input.id == "logs-search":
            event.stop()
            self.pattern = search_pattern(event.value)
            event.input.display = bool(event.value)
            self.pane.focus()
