"""Validation of names an operator or a peer gives us (nodes, later services).

A name ends up in file paths, routing ids and shell completions, so it is
refused at the edge unless it is short, printable and free of separators.
"""

from __future__ import annotations

import re

from gdos.errors import ErrorCode, GdosError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")


def check_name(name: str, what: str = "node name") -> str:
    """Return ``name`` if valid, else raise GdosError(invalid_argument)."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"{what} {name!r} is not valid: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
        )
    return name
