"""Where an agent's join token comes from, without leaving it in a command line.

A join token carries a secret, and every local user can read any process's
command line (``ps``). So the token is taken from a file (``--join-file``),
standard input (``--join -``), or the ``GDOS_JOIN_TOKEN`` environment variable
(removed once read), and handed to the long-running agent process through an
inherited pipe (``--join-fd``), never its argv or environment. ``--join
TOKEN`` still works, with a warning: the token is visible until the agent
re-executes itself without it.
"""

from __future__ import annotations

import getpass
import logging
import os
import sys
from pathlib import Path

from gdos.errors import ErrorCode, GdosError

ENV = "GDOS_JOIN_TOKEN"
MAX_TOKEN_BYTES = 4096
ARGV_WARNING = (
    "warning: a join token given as '--join TOKEN' is readable by every local user "
    "(ps) until the agent starts; prefer --join-file PATH, --join - (standard input) "
    f"or {ENV}."
)


def take(join: str | None, join_file: Path | None, join_fd: int | None) -> str | None:
    """The token text from whichever one source was given (the env var is removed)."""
    from_env = os.environ.pop(ENV, None)
    given = [s for s in (join, join_file, join_fd, from_env) if s is not None]
    if len(given) > 1:
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"give the join token one way only: --join, --join-file or {ENV}.",
        )
    text: str | None
    if join_fd is not None:
        text = _read_fd(join_fd)
    elif join_file is not None:
        text = _read_file(join_file)
    elif join == "-":
        text = _read_stdin()
    else:
        text = join if join is not None else from_env
    if text is None:
        return None
    text = text.strip()
    if not text:
        raise GdosError(ErrorCode.TOKEN_INVALID, "the join token is empty.")
    return text


def hand_over(token: str) -> int:
    """A pipe a child process inherits, holding ``token``; returns its read end."""
    read_end, write_end = os.pipe()
    os.write(write_end, token.encode())  # far below the pipe buffer: never blocks
    os.close(write_end)
    os.set_inheritable(read_end, True)
    return read_end


def _read_fd(fd: int) -> str:
    try:
        with os.fdopen(fd, "rb") as pipe:
            return pipe.read(MAX_TOKEN_BYTES).decode("utf-8", "replace")
    except OSError as exc:
        raise GdosError(ErrorCode.TOKEN_INVALID, f"cannot read the join token: {exc}") from None


def _read_file(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_mode & 0o077:
                logging.getLogger("gdos.agent").warning(
                    "%s can be read by other users; 'chmod 600 %s' keeps the token secret",
                    path,
                    path,
                )
            return handle.read(MAX_TOKEN_BYTES).decode("utf-8", "replace")
    except OSError as exc:
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"cannot read the join token file {path}: {exc.strerror or exc}.",
        ) from None


def _read_stdin() -> str:
    if sys.stdin is None:
        raise GdosError(ErrorCode.INVALID_ARGUMENT, "--join - needs a standard input.")
    if sys.stdin.isatty():
        return getpass.getpass("join token: ")
    return sys.stdin.readline()[:MAX_TOKEN_BYTES]
