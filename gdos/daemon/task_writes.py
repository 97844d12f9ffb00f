"""Exec host rows on their way to the store: batched, retried, never lost.

Every host result (and every host given up on) becomes a row written within
``BATCH_DELAY`` together with the others, in one transaction. What waited on
a row (acknowledging the result to its agent, finishing the task) runs only
once it is stored. When the disk refuses, the batch is kept and tried again
after ``RETRY_DELAY``; meanwhile nothing is acknowledged, so agents keep
their results. A row whose values the store refuses fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gdos.daemon.storage import storage_error, storage_failure
from gdos.daemon.store import Store
from gdos.errors import GdosError

log = logging.getLogger("gdosd.tasks")

BATCH_DELAY = 0.02  # results written together within this window
RETRY_DELAY = 1.0  # a batch the disk refused is tried again after this
MAX_UNSAVED_BYTES = 256 * 1024 * 1024  # output held for the disk; past it agents keep theirs


@dataclass
class PendingWrite:
    """One host row waiting to be stored, with what to do once it is (or cannot be)."""

    row: dict[str, Any]
    stored: Callable[[], None] | None = None
    refused: Callable[[str], None] | None = None


class HostWrites:
    """The queue of host rows not yet stored, and the last storage problem."""

    def __init__(self, store: Store, on_problem: Callable[[GdosError, set[int]], None]) -> None:
        self.store = store
        self.pending: list[PendingWrite] = []
        self.unsaved_bytes = 0  # output bytes in pending
        self.problem: GdosError | None = None  # the last refused write, until one works
        self._on_problem = on_problem  # told (failure, task ids waiting) on a new problem
        self._flush_handle: asyncio.TimerHandle | None = None

    @property
    def full(self) -> bool:
        """Too much output waits for the disk: leave new results with their agents."""
        return self.unsaved_bytes > MAX_UNSAVED_BYTES

    def waiting(self, task_id: int) -> bool:
        return any(w.row["task_id"] == task_id for w in self.pending)

    def queue(self, write: PendingWrite) -> None:
        self.pending.append(write)
        self.unsaved_bytes += _output_bytes(write.row)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(BATCH_DELAY, self.flush)

    def flush_due(self) -> None:
        """Rows queued while no flush is scheduled (a loop-less moment): write them now."""
        if self.pending and self._flush_handle is None:
            self.flush()

    def flush(self) -> None:
        """Store every queued row in one transaction, then run what waited on it.

        When the disk refuses, the rows stay queued and are tried again after
        ``RETRY_DELAY``; nothing is acknowledged meanwhile.
        """
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        try:
            refused = self.store.update_hosts([w.row for w in batch])
        except Exception as exc:
            self.pending = batch + self.pending
            self.failed(exc, f"storing {len(batch)} task host rows")
            with contextlib.suppress(RuntimeError):  # no loop: at shutdown
                loop = asyncio.get_running_loop()
                self._flush_handle = loop.call_later(RETRY_DELAY, self.flush)
            return
        self.unsaved_bytes -= sum(_output_bytes(w.row) for w in batch)
        if self.problem is not None:
            log.info("storage works again; %d task host rows stored", len(batch))
            self.problem = None
        for index, write in enumerate(batch):
            if index in refused:
                if write.refused is not None:
                    write.refused(refused[index])
                else:
                    log.error("task host row %s refused: %s", write.row, refused[index])
            elif write.stored is not None:
                write.stored()

    def failed(self, exc: Exception, what: str) -> None:
        """A write the store refused: remember why, and tell the waiting tasks once."""
        failure = storage_failure(exc, self.store.path)
        if failure is None:
            log.exception("%s failed; trying again", what)
            failure = storage_error(self.store.path, f"{type(exc).__name__}: {exc}")
        if self.problem is None or self.problem.message != failure.message:
            log.error("%s failed, kept to try again: %s", what, failure)
            self._on_problem(failure, {w.row["task_id"] for w in self.pending})
        self.problem = failure

    def close(self) -> None:
        self.flush()
        if self.pending:
            log.warning(
                "%d task host rows could not be stored; agents resend unacknowledged results",
                len(self.pending),
            )


def _output_bytes(row: dict[str, Any]) -> int:
    return len(row.get("stdout") or b"") + len(row.get("stderr") or b"")
