"""The command palette (``ctrl+p``): every dashboard action, found by typing.

``DashboardCommands`` asks the app for its entries each time the palette
opens (``GdosApp.palette_commands``): the views, the actions of the view on
screen, help and the themes. Each entry's callback is the very action method
its key runs, so ``--read-only`` refuses an entry exactly as it refuses the key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from textual.command import DiscoveryHit, Hit, Hits, Provider


class PaletteCommand(NamedTuple):
    title: str
    help: str
    run: Callable[[], Any]


class DashboardCommands(Provider):
    def entries(self) -> list[PaletteCommand]:
        palette_commands = getattr(self.app, "palette_commands", None)
        return palette_commands(self.screen) if palette_commands is not None else []

    async def discover(self) -> Hits:
        for entry in self.entries():
            yield DiscoveryHit(entry.title, entry.run, help=entry.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for entry in self.entries():
            score = matcher.match(entry.title)
            if score > 0:
                yield Hit(score, matcher.highlight(entry.title), entry.run, help=entry.help)
