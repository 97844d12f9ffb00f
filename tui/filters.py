"""The ``/`` filter boxes of the tables: a regular expression, checked quietly while typed.

A regex is often invalid halfway through (``b[``): while it is typed the box
is only marked (red border, "not a regex yet" under it) and the table keeps
the last valid filter; a message is shown only if Enter is pressed on it.
``FilteredView`` is that behaviour once, for every view with such a box.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from gdos.tui.session import DashboardSession, DashboardView
from textual import on
from textual.widgets import Input

INVALID_CLASS = "-invalid"  # Input's own style for a value that does not validate
BOX = "regex-filter"  # the CSS class of a view's "/" box


def compile_filter(box: Input, text: str, flags: int = 0) -> tuple[bool, re.Pattern[str] | None]:
    """(valid, pattern) for the box's text; None clears the filter. Marks the box if invalid."""
    try:
        pattern = re.compile(text, flags) if text else None
    except re.error:
        box.add_class(INVALID_CLASS)
        box.border_subtitle = "not a regex yet"
        return False, None
    box.remove_class(INVALID_CLASS)
    box.border_subtitle = None
    return True, pattern


def filter_error(text: str) -> str:
    """The sentence for a filter still invalid when Enter is pressed."""
    try:
        re.compile(text)
    except re.error as exc:
        return f"invalid filter /{text}/: {exc}; fix it or clear it with escape"
    return ""


def filter_box(placeholder: str, box_id: str) -> Input:
    """A view's ``/`` box, hidden until ``/`` (``FilteredView.action_filter``) shows it."""
    box = Input(placeholder=placeholder, id=box_id, classes=BOX)
    box.display = False
    return box


class FilteredView(DashboardView):
    """A view whose rows ``/`` filters by a regex typed in its ``filter_box``.

    ``pattern`` is the valid filter in force (None: every row); subclasses
    redraw their rows with it in ``refilter``.
    """

    FILTER_FLAGS: ClassVar[int] = 0

    def __init__(self, session: DashboardSession, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.pattern: re.Pattern[str] | None = None

    def refilter(self) -> None:
        raise NotImplementedError

    def action_filter(self) -> None:
        box = self.query_one(f".{BOX}", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, f".{BOX}")
    def _filter_typed(self, event: Input.Changed) -> None:
        """Filter as the regex is typed; a half-typed one is marked, quietly, and ignored."""
        event.stop()
        valid, pattern = compile_filter(event.input, event.value, self.FILTER_FLAGS)
        if valid:
            self.pattern = pattern
            self.refilter()

    @on(Input.Submitted, f".{BOX}")
    def _filter_entered(self, event: Input.Submitted) -> None:
        """Enter closes the filter; a regex that is still invalid is reported now."""
        event.stop()
        if not compile_filter(event.input, event.value, self.FILTER_FLAGS)[0]:
            self.say(filter_error(event.value))
            return
        self.say("")
        self.close_filter()

    def close_filter(self) -> None:
        """Escape or Enter: the box stays shown while it filters, and the table takes the keys."""
        box = self.query_one(f".{BOX}", Input)
        box.display = bool(box.value)
        self.take_focus()
