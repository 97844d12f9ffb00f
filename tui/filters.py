"""The ``/`` filter boxes of the tables: a regular expression, checked quietly while typed.

A regex is often invalid halfway through (``b[``): while it is typed the box
is only marked (red border, "not a regex yet" under it) and the table keeps
the last valid filter; a message is shown only if Enter is pressed on it.
"""

from __future__ import annotations

import re

from textual.widgets import Input

INVALID_CLASS = "-invalid"  # Input's own style for a value that does not validate


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
