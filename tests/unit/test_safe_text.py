"""Node text on a terminal: controls shown, markup never read (gdos/safe_text.py)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from gdos.safe_text import safe_cell, safe_line, safe_markup, safe_text

HOSTILE = "web\x1b]0;pwned\x07\x1b[2J\x9b31m[reverse]x[/reverse]\u202eevil\r\n"


def rendered(*renderables: object) -> str:
    console = Console(record=True, width=200, force_terminal=False, color_system=None)
    for item in renderables:
        console.print(item)
    return console.export_text()


def test_controls_become_visible_escapes_and_nothing_is_lost() -> None:
    text = safe_text(HOSTILE)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)
    assert "\u202e" not in text
    assert text == (
        "web\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m[reverse]x[/reverse]\\u202eevil\\x0d\\x0a"
    )
    assert safe_text(None) == "" and safe_text(b"\xffok") == "\ufffdok"
    assert safe_line("a\tb\x1b") == "a\tb\\x1b"  # log lines keep their tabs


def test_markup_is_shown_literally_in_rich_markup_and_cells() -> None:
    table = Table()
    table.add_column("NAME")
    table.add_row(safe_cell(HOSTILE))
    out = rendered(f"[bold]{safe_markup(HOSTILE)}[/]", table)
    assert out.count("[reverse]x[/reverse]") == 2
    assert "\x1b" not in out and "\x07" not in out


def test_a_trailing_backslash_cannot_escape_the_callers_closing_tag() -> None:
    assert rendered(f"[bold]{safe_markup('end' + chr(92))}[/]").strip() == "end" + chr(92)
