"""The one output layer of the CLI: where every command's text, JSON and errors go.

Like httpie's ``Environment``, an :class:`Output` holds what a command needs to
know about where it writes: the two streams, whether stdout is a terminal, the
width to fit, whether colour is wanted and whether ``--json`` was given. The
root command makes one per invocation (tests may hand in their own through
Click's ``obj``), and every command renders through its writers, so widths,
truncation, colour and JSON follow one set of rules:

- ``json``/``json_lines``: one encoder for every command (keys in the order the
  daemon sent them; bytes as UTF-8 text, enums by value, paths as text,
  sets sorted).
- ``table``: a list, fitted as :mod:`gdos.cli.tables` says.
- ``fields``: a detail view, ``label  value`` lines under a heading.
- ``error``: ``error[code]: sentence`` on stderr, the CLI's contract.

Colour follows the rule Rich uses, for the ANSI written by hand too: on a
terminal (or with ``FORCE_COLOR``) that is not dumb, unless ``NO_COLOR``.
Nothing heavy is imported here: Rich and ``json`` load when first written with.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from gdos.cli.tables import Column

T = TypeVar("T")

# SGR colours for host prefixes (exec, logs): never red or green, which mean
# failure and success in statuses.
HOST_COLOURS = (36, 33, 35, 34, 96, 93, 95, 94)


class Output:
    """Where one invocation writes, and how: made once, read by every writer."""

    def __init__(
        self,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        *,
        json: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.stdout = sys.stdout if stdout is None else stdout
        self.stderr = sys.stderr if stderr is None else stderr
        self.json_mode = json
        self.tty = _isatty(self.stdout)
        self.interactive = _isatty(sys.stdin)  # may a command ask the operator?
        self.width = _width(env, self.tty)
        self.colour = _colour(env, self.tty)
        self.stderr_colour = _colour(env, _isatty(self.stderr))  # progress, live states
        self._consoles: dict[bool, Console] = {}

    # -- plain text ----------------------------------------------------------
    def line(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def lines(self, lines: Sequence[str]) -> None:
        self.stdout.write("".join(line + "\n" for line in lines))

    def raw(self, data: bytes, stderr: bool = False) -> None:
        """Bytes as they came (node output, a log, a recording), flushed at once;
        piped, what a node sent reaches the reading program unchanged."""
        stream = self.stderr if stderr else self.stdout
        stream.flush()
        binary = getattr(stream, "buffer", None)
        if binary is None:  # a text-only stream (a test's): as close as text allows
            stream.write(data.decode("utf-8", "replace"))
            stream.flush()
        else:
            binary.write(data)
            binary.flush()

    def note(self, text: str) -> None:
        """A line for the operator, not for a script reading stdout."""
        self.stderr.write(text + "\n")

    def error(self, error: Any) -> None:
        """``error[code]: sentence`` on stderr, exactly as ``str(GdosError)`` has it."""
        self.stderr.write(f"{error}\n")

    def paint(self, text: str, sgr: int) -> str:
        """``text`` in an SGR colour when colour is on, else unchanged."""
        return f"\x1b[{sgr}m{text}\x1b[0m" if self.colour else text

    # -- JSON ----------------------------------------------------------------
    def show(self, data: T, render: Callable[[Output, T], None]) -> None:
        """``data`` as the JSON document with ``--json``, else ``render(self, data)``."""
        if self.json_mode:
            self.json(data)
        else:
            render(self, data)

    def json(self, data: Any) -> None:
        """One indented document: the shape of every ``--json``."""
        self.stdout.write(dumps(data, indent=2) + "\n")

    def json_lines(self, documents: Iterable[Any]) -> None:
        """One document per line (a follow: each batch is read as it comes)."""
        self.stdout.write("".join(dumps(data) + "\n" for data in documents))
        self.stdout.flush()

    # -- Rich ----------------------------------------------------------------
    def console(self, stderr: bool = False, width: int | None = None) -> Console:
        """A Rich console on stdout (or stderr) with this output's colour rule;
        ``:name:`` is never an emoji (a fingerprint ``…:ab:…`` once printed 🆎)."""
        if width is None and stderr in self._consoles:
            return self._consoles[stderr]
        from rich.console import Console

        colour = self.stderr_colour if stderr else self.colour
        made = Console(
            file=self.stderr if stderr else self.stdout,
            emoji=False,
            width=width,
            color_system="auto" if colour else None,
        )
        if width is None:
            self._consoles[stderr] = made
        return made

    def markup(self, text: Any) -> None:
        """Rich markup (or a renderable) on stdout, never highlighted."""
        self.console().print(text, highlight=False)

    def table(
        self,
        columns: Sequence[Column],
        rows: Sequence[Sequence[Any]],
        title: str | None = None,
        footer: str | None = None,
    ) -> None:
        """A list command's table, fitted to this output's width."""
        from gdos.cli.tables import render_table

        render_table(self, columns, rows, title=title, footer=footer)

    def fields(
        self,
        rows: Sequence[tuple[str, str]],
        heading: Sequence[str] = (),
        markup: bool = False,
    ) -> None:
        """A detail view: heading lines, then ``label value`` with labels in one column."""
        pad = max((len(label) for label, _ in rows), default=0)
        lines = [*heading, *(f"{label:<{pad}} {value}" for label, value in rows)]
        if markup:
            self.markup("\n".join(lines))
        else:
            self.lines(lines)


def dumps(data: Any, indent: int | None = None) -> str:
    """The one JSON encoder of the CLI; key order is the daemon's (never sorted)."""
    import json

    return json.dumps(data, indent=indent, default=_json_value)


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def output(json: bool = False) -> Output:
    """This invocation's :class:`Output` (``--json`` turns its JSON mode on).

    Outside a command (a unit test calling a helper) a fresh one is made."""
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    out = ctx.find_object(Output) if ctx is not None else None
    if out is None:
        out = Output()
        if ctx is not None:
            ctx.find_root().obj = out
    out.json_mode = out.json_mode or json
    return out


def fail(error: Any) -> NoReturn:
    """Print an error the way every command does, and exit with its code."""
    output().error(error)
    raise typer.Exit(error.exit_code)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stand-in stream
        return False


def _width(env: Mapping[str, str], tty: bool) -> int | None:
    """``COLUMNS``, else the terminal's width, else None (piped: no limit)."""
    columns = env.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if tty:
        import shutil

        return shutil.get_terminal_size().columns
    return None


def _colour(env: Mapping[str, str], tty: bool) -> bool:
    """Rich's rule: ``FORCE_COLOR`` makes any stream a terminal, a dumb terminal
    has no colour, and a non-empty ``NO_COLOR`` turns it off."""
    force = env.get("FORCE_COLOR")
    terminal = force != "" if force is not None else tty
    dumb = env.get("TERM", "").lower() in ("dumb", "unknown")
    return terminal and not dumb and env.get("NO_COLOR", "") == ""
