"""Node-supplied text made safe for a terminal: the one place that escapes it.

Instance names, errors, versions, facts and log lines come from nodes, and a
node may be compromised. On a terminal, an ESC or OSC sequence in such text
would set the window title, clear the screen or forge output, and in a Rich
or Textual cell ``[reverse]`` would be read as markup. Every rendering path
(CLI tables and plain lines, TUI cells and panes, log and exec output shown
on a tty) passes node text through here:

- ``safe_text``: one line, every control character shown as a visible
  escape (``\\x1b``), so nothing is lost and nothing is interpreted;
- ``safe_markup``: ``safe_text`` with Rich markup escaped, for strings that
  end up inside markup (Rich consoles, Textual ``Static``/``Label``);
- ``safe_line``: a log or output line for a terminal: like ``safe_text`` but
  keeps tabs.

Piped and ``--json`` output is not passed through here: it stays
byte-faithful, since another program, not a terminal, reads it.
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls, DEL, C1 controls (8-bit CSI/OSC), and the Unicode format
# characters that reorder or hide text on a terminal (bidi overrides and
# isolates, zero-width marks, line/paragraph separators, BOM).
_FORMAT = "\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_FORMAT}]")
_UNSAFE_BUT_TAB = re.compile(f"[\x00-\x08\x0a-\x1f\x7f-\x9f{_FORMAT}]")
# What Rich (``[bold]``) and Textual (``[$accent]``, ``[@click=...]``) read as a tag.
_TAG = re.compile(r"(\\*)(\[[a-z#/@$][^[]*?])")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def safe_text(value: Any) -> str:
    """``value`` as one line of text with every control character made visible."""
    return _UNSAFE.sub(_visible, _text(value))


def safe_line(value: Any) -> str:
    """A log or output line for a terminal: ``safe_text`` that keeps tabs."""
    return _UNSAFE_BUT_TAB.sub(_visible, _text(value))


def escape_markup(text: str) -> str:
    """Escape markup tags the way ``rich.markup.escape`` does, Textual's ``$`` too."""
    text = _TAG.sub(lambda m: f"{m.group(1)}{m.group(1)}\\{m.group(2)}", text)
    # A trailing backslash would escape the closing tag the caller adds after it.
    return text + "\\" if text.endswith("\\") and not text.endswith("\\\\") else text


def safe_markup(value: Any) -> str:
    """``safe_text`` for a string that will be read as Rich or Textual markup."""
    return escape_markup(safe_text(value))


def safe_cell(value: Any) -> Any:
    """A table cell (Rich table or Textual DataTable) that is never read as markup."""
    from rich.text import Text

    return Text(safe_text(value))
