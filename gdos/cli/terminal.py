"""The local terminal during ``gdos shell``: raw mode, always restored; its size.

Raw mode hands every key to the remote program (Ctrl-C arrives there as
``\\x03``, Ctrl-Z as ``\\x1a``), as ssh does. ``RawMode`` saves the terminal's
attributes first and puts them back on every way out of the ``with`` block,
exceptions included; callers turn signals into a normal return so the block
is always left through its exit.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

DEFAULT_SIZE = (24, 80)


def window_size(fds: tuple[int, ...] = (0, 1, 2)) -> tuple[int, int]:
    """(rows, columns) of the first terminal among ``fds``, else 24x80."""
    for fd in fds:
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        if size.lines > 0 and size.columns > 0:
            return size.lines, size.columns
    return DEFAULT_SIZE


class RawMode:
    """Raw mode on ``fd`` inside the block; the saved attributes restored on exit."""

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self.saved: list[Any] | None = None

    def __enter__(self) -> RawMode:
        import termios
        import tty

        self.saved = termios.tcgetattr(self.fd)
        tty.setraw(self.fd, termios.TCSADRAIN)
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def restore(self) -> None:
        import termios

        saved, self.saved = self.saved, None
        if saved is not None:
            with contextlib.suppress(termios.error, OSError):  # the terminal may be gone
                termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)
