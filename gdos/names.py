"""Names an operator or a peer gives us (nodes, later services): validation and order.

A name ends up in file paths, routing ids and shell completions, so it is
refused at the edge unless it is short, printable and free of separators.
Names are listed in natural order (``g2`` before ``g10``) by ``natural_key``,
the one sort key every list of names uses, CLI and dashboard alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gdos.errors import ErrorCode, GdosError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
DIGITS = re.compile(r"(\d+)")

NaturalKey = tuple[tuple[str | int, ...], str]


def natural_key(name: object) -> NaturalKey:
    """Sort key for names as people read them: ``g1, g2, g10`` rather than ``g1, g10, g2``.

    Runs of digits compare as numbers and the rest case-insensitively; the
    name itself breaks ties (``g01`` and ``g1``, ``Web`` and ``web``), so the
    order is total and stable. Anything else is sorted by its ``str``.
    """
    text = str(name)
    # split() alternates text and digits, so equal positions always hold the same type
    parts = DIGITS.split(text)
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), text


def check_name(name: str, what: str = "node name") -> str:
    """Return ``name`` if valid, else raise GdosError(invalid_argument)."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"{what} {name!r} is not valid: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
        )
    return name


def instance_key(view: Mapping[str, Any]) -> tuple[NaturalKey, NaturalKey, NaturalKey]:
    """Order of service instances: by system, then module, then node, each naturally."""
    return (
        natural_key(view.get("system") or ""),
        natural_key(view.get("module") or ""),
        natural_key(view.get("node") or ""),
    )
