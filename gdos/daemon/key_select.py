"""Which key an operator means in ``gdos key accept | reject | delete ARG``.

Anyone holding the daemon's public key can make a pending key that claims
any node name, so a name alone must never let such a key change what a
command does to a real node. The rule:

- a fingerprint (``aa:bb:cc:dd...``, as ``gdos key list`` shows it; a prefix
  of at least four groups will do) or the full public key always works;
- a name works only when exactly one key answers to it: for ``accept``
  among the pending keys, for ``reject`` among the accepted and pending
  ones, for ``delete`` among all keys;
- anything else is ``key_ambiguous`` with every candidate's fingerprint, or
  ``key_unknown``.

Node names cannot contain ``:``, so the two forms never overlap.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gdos.errors import ErrorCode, GdosError
from gdos.identity.keys import fingerprint

Row = dict[str, Any]
MIN_FINGERPRINT_HEX = 8  # four groups: 32 bits, so a typo does not match by chance


def is_fingerprint(arg: str) -> bool:
    return ":" in arg


def select(rows: Iterable[Row], arg: str, what: str) -> Row:
    """The one row of ``rows`` that ``arg`` names, else a clear refusal."""
    rows = list(rows)
    exact = [r for r in rows if r["key"] == arg]
    if exact:
        return exact[0]
    if is_fingerprint(arg):
        wanted = arg.replace(":", "").lower()
        if len(wanted) < MIN_FINGERPRINT_HEX:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT,
                f"{arg!r} is too short a fingerprint: give at least four groups "
                "(aa:bb:cc:dd), as 'gdos key list' shows them.",
            )
        found = [r for r in rows if fingerprint(r["key"]).replace(":", "").startswith(wanted)]
    else:
        found = [r for r in rows if r["name"] == arg]
    if len(found) == 1:
        return found[0]
    if not found:
        raise GdosError(
            ErrorCode.KEY_UNKNOWN,
            f"no {what} key matches {arg!r}; run 'gdos key list' to see keys and fingerprints.",
        )
    raise GdosError(
        ErrorCode.KEY_AMBIGUOUS,
        f"{len(found)} keys match {arg!r} ({describe(found)}); "
        "name the one you mean by its fingerprint.",
    )


def describe(rows: Iterable[Row]) -> str:
    """``fp (status, from address)`` for each row, for error messages."""
    return ", ".join(
        f"{fingerprint(r['key'])} {r['status']} from {r.get('address') or '?'}" for r in rows
    )
