"""One table renderer for every list command: what fits, and what is never cut.

Each column says how expendable it is (``drop``: 0 is always kept, higher
numbers go first) and whether it holds free text (``wrap``: a message or a
path wraps onto more lines). When the table is wider than the terminal,
whole columns are dropped by priority and a dim line names them; a kept
column other than free text is never shortened, so a status or a value
always reads whole. Piped output (no terminal, no ``COLUMNS``) is not fitted
at all: scripts get every column and every character. ``COLUMNS=N`` fits to
N columns wherever the output goes.

Cells are strings with Rich markup (``[green]online[/]``) or Rich Text;
widths are measured on what an operator sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from gdos.cli.output import Output

GAP = 2  # spaces between columns
MIN_WRAP = 20  # the least room a free-text column is given before others are dropped


@dataclass(frozen=True)
class Column:
    header: str
    drop: int = 0  # 0: always shown; columns with higher numbers are dropped first
    wrap: bool = False  # free text: wraps instead of being cut
    justify: Literal["left", "right"] = "left"


def visible_width(cell: Any) -> int:
    """Terminal cells ``cell`` (markup text or a Rich Text) takes, longest line."""
    from rich.text import Text

    text = cell if isinstance(cell, Text) else Text.from_markup(str(cell))
    return max((line.cell_len for line in text.split("\n")), default=0)


def fit(columns: Sequence[Column], widths: Sequence[int], width: int | None) -> list[int]:
    """Indexes of the columns to show within ``width`` (all of them when None)."""
    kept = list(range(len(columns)))

    def need() -> int:
        sizes = [min(widths[i], MIN_WRAP) if columns[i].wrap else widths[i] for i in kept]
        return sum(sizes) + GAP * (len(kept) - 1)

    while width is not None and need() > width:
        droppable = [i for i in kept if columns[i].drop > 0]
        if not droppable:
            break
        kept.remove(max(droppable, key=lambda i: (columns[i].drop, i)))
    return kept


def render_table(
    out: Output,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    title: str | None = None,
    footer: str | None = None,
) -> None:
    """Write ``rows`` under ``columns`` to ``out``, fitted as the module docstring says."""
    shown, width = fitted_table(out.width, columns, rows, title, footer)
    out.console(width=width).print(shown, highlight=False)


def fitted_table(
    width: int | None,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    title: str | None = None,
    footer: str | None = None,
) -> tuple[Any, int]:
    """The table fitted to ``width`` (title, hidden-columns note and footer
    included) as one Rich renderable, and the console width it needs."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    widths = [
        max([len(c.header), *(visible_width(row[i]) for row in rows)])
        for i, c in enumerate(columns)
    ]
    kept = fit(columns, widths, width)
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1))
    for i in kept:
        column = columns[i]
        if column.wrap:
            table.add_column(column.header, overflow="fold", justify=column.justify)
        else:
            table.add_column(
                column.header,
                no_wrap=True,
                min_width=widths[i],
                justify=column.justify,
            )
    for row in rows:
        table.add_row(*(row[i] for i in kept))
    parts: list[Any] = [title] if title else []
    parts.append(table)
    hidden = [columns[i].header for i in range(len(columns)) if i not in kept]
    if hidden:
        note = f"({', '.join(hidden)} hidden to fit {width} columns; "
        parts.append(Text.from_markup(note + "widen the terminal or use --json)", style="dim"))
    if footer:
        parts.append(Text.from_markup(footer, style="dim"))
    return Group(*parts), _console_width(columns, widths, kept, width)


def _console_width(
    columns: Sequence[Column], widths: Sequence[int], kept: Sequence[int], width: int | None
) -> int:
    """Never let Rich crop a line: the terminal's width, or more when even the kept
    columns need more (then the terminal wraps); piped, the whole table's width."""
    gaps = GAP * max(len(kept) - 1, 0)
    if width is None:
        return max(sum(widths[i] for i in kept) + gaps, 20)
    least = sum(min(widths[i], MIN_WRAP) if columns[i].wrap else widths[i] for i in kept)
    return max(width, least + gaps)
