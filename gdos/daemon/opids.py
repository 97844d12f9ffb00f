"""Service operation ids that are never reused, across daemon runs and restores.

An agent keeps its answer to an operation (``svc.done``) until the daemon
acknowledges it, so an id handed out twice would let an old answer settle a
new operation. Ids therefore continue from a high-water mark kept in a small
file next to the database (not in it: a ``backup restore`` must not wind the
ids back), reserved a block at a time so a busy daemon writes it rarely. The
mark never starts below the wall clock in milliseconds, so even a lost file
does not bring old ids back.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from gdos.errors import ErrorCode, GdosError

BLOCK = 10_000
FILE_NAME = "op-ids"


class OpIds:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._next = max(self._stored(), int(time.time() * 1000))
        self._limit = self._next  # nothing reserved yet: the first take() writes the mark

    def _stored(self) -> int:
        try:
            return int(self.path.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return 0

    def take(self) -> int:
        """The next id; refuses (storage_failed) when the mark cannot be written."""
        if self._next >= self._limit:
            self._reserve(self._next + BLOCK)
        op, self._next = self._next, self._next + 1
        return op

    def _reserve(self, limit: int) -> None:
        partial = self.path.with_name(f".{self.path.name}.tmp")
        try:
            with open(partial, "w", encoding="ascii") as handle:
                handle.write(f"{limit}\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, self.path)
        except OSError as exc:
            raise GdosError(
                ErrorCode.STORAGE_FAILED,
                f"could not record operation ids in {self.path} ({exc.strerror or exc}); "
                "free space on that disk and try again. Nothing was sent.",
            ) from exc
        self._limit = limit
