"""The key footer, fitted to the terminal's width by priority instead of cut at the edge.

Textual's footer lists the bindings of the focused widget, then its parents,
then the app, and a narrow terminal cuts the end: at 80 columns the app's
``:`` (the way to any view) and ``?`` (every key) were the first to go.
``KeysFooter`` always keeps those two (and ``q``), then the view's keys in
the order the view declares them, as many as fit; the rest stay bound, and
``?`` and the palette list them all.
"""

from __future__ import annotations

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

KEPT = ("command", "help", "quit")  # app actions shown whatever the width, in this order
MIN_WIDTH = 20


def key_width(key: FooterKey) -> int:
    """Columns a compact footer key takes: ``KEY Description`` and one space after it."""
    return cell_len(f"{key.key_display} {key.description}") + 1


def fit(keys: list[FooterKey], width: int) -> list[FooterKey]:
    """The keys to show in ``width`` columns: the KEPT ones always, then others in order."""
    kept = sorted((k for k in keys if k.action in KEPT), key=lambda k: KEPT.index(k.action))
    room = width - sum(key_width(k) for k in kept)
    shown: list[FooterKey] = []
    for key in keys:
        if key.action in KEPT:
            continue
        if key_width(key) > room:
            break  # keep the declared order: a later key never shows without an earlier one
        shown.append(key)
        room -= key_width(key)
    return shown + kept


class KeysFooter(Footer):
    """A compact footer that drops the view's lowest-priority keys when narrow."""

    def __init__(self) -> None:
        super().__init__(compact=True)
        self.fitted_width = 0

    def compose(self) -> ComposeResult:
        widgets = list(super().compose())
        palette = [
            w for w in widgets if isinstance(w, FooterKey) and w.has_class("-command-palette")
        ]
        keys = [w for w in widgets if isinstance(w, FooterKey) and w not in palette]
        self.fitted_width = self.app.size.width
        width = max(MIN_WIDTH, self.fitted_width - sum(key_width(k) + 2 for k in palette))
        yield from fit(keys, width)
        yield from palette

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self.fitted_width:
            self.call_after_refresh(self.recompose)
