"""The daemon's folder of session recordings: journals, conversions, replay.

Each session has a journal (``ID.rec``) while it runs and an asciicast v2
file (``ID.cast``) once a child process has converted it (see
``recording``). This module owns the naming, runs the conversions one at a
time, lists what exists, and streams a recording to a client, converting a
journal on the fly when the session is still live or not converted yet.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from gdos.daemon.control import Stream
from gdos.daemon.recording import SessionJournal, cast_lines
from gdos.daemon.store import Store
from gdos.errors import ErrorCode, GdosError
from gdos.paths import ensure_private_dir
from gdos.wire import protocol

log = logging.getLogger("gdosd.recordings")


class Recordings:
    def __init__(self, folder: Path, store: Store) -> None:
        self.folder, self.store = folder, store
        self._converting: set[asyncio.Task[None]] = set()
        self._slot = asyncio.Semaphore(1)
        ensure_private_dir(folder)

    def cast(self, session_id: int) -> Path:
        """The asciicast v2 file of a session (once its journal is converted)."""
        return self.folder / f"{session_id}.cast"

    def journal(self, session_id: int) -> Path:
        return self.folder / f"{session_id}.rec"

    def start(self, session_id: int, head: dict[str, Any], record_input: bool) -> SessionJournal:
        return SessionJournal(self.journal(session_id), head, record_input)

    def finished(self, session_id: int) -> None:
        """The session's journal is complete: convert it in the background."""
        task = asyncio.ensure_future(self._convert(session_id))
        self._converting.add(task)
        task.add_done_callback(self._converting.discard)

    def convert_leftovers(self) -> int:
        """Convert the journals a previous run did not (it died, or was stopped)."""
        ids = [int(p.stem) for p in self.folder.glob("*.rec") if p.stem.isdigit()]
        for session_id in ids:
            self.finished(session_id)
        return len(ids)

    async def _convert(self, session_id: int) -> None:
        """Journal to asciicast in a child process, one at a time: the CPU is not the relay's."""
        async with self._slot:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",
                "-m",
                "gdos.daemon.recording",
                str(self.journal(session_id)),
                str(self.cast(session_id)),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await process.communicate()
            if process.returncode:
                log.error(
                    "converting the recording of shell session %d failed: %s",
                    session_id,
                    err.decode(errors="replace").strip()[-500:],
                )

    def close(self) -> None:
        """At shutdown; a journal not converted yet is converted at the next start."""
        for task in self._converting:
            task.cancel()

    def describe(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add ``cast`` (the file, once converted) and ``recording`` (ready/pending/None)."""
        for row in rows:
            path = self.cast(row["id"])
            ready, pending = path.exists(), self.journal(row["id"]).exists()
            row["cast"] = str(path) if ready else None
            row["recording"] = "ready" if ready else "pending" if pending else None
        return rows

    def check(self, session_id: int) -> None:
        """Refuse (session_unknown) a session that does not exist or has no recording."""
        if self.store.shell_session(session_id) is None:
            raise GdosError(
                ErrorCode.SESSION_UNKNOWN,
                f"no shell session {session_id}; run 'gdos audit sessions' to list them.",
            )
        if not (self.cast(session_id).exists() or self.journal(session_id).exists()):
            raise GdosError(
                ErrorCode.SESSION_UNKNOWN,
                f"shell session {session_id} has no recording (it never started).",
            )

    async def send(self, session_id: int, stream: Stream) -> None:
        """Stream a recording as asciicast v2 chunks, as the client's credit allows."""
        for _attempt in range(2):  # the conversion may finish between the two opens
            try:
                with open(self.cast(session_id), "rb") as f:
                    await _send_chunks(iter(lambda: f.read(protocol.CHUNK_BYTES), b""), stream)
                    return
            except FileNotFoundError:
                pass
            try:
                lines = cast_lines(self.journal(session_id))
                first = next(lines)  # opens the journal: it stays readable once open
            except FileNotFoundError:
                continue
            await _send_chunks(_batched(itertools.chain([first], lines)), stream)
            return
        await stream.end()


async def _send_chunks(chunks: Iterable[bytes], stream: Stream) -> None:
    for chunk in chunks:
        if not await stream.send({"data": chunk}):
            return
    await stream.end()


def _batched(lines: Iterable[bytes]) -> Iterator[bytes]:
    """Lines joined into chunks of about CHUNK_BYTES (a longer line goes alone)."""
    batch = b""
    for line in lines:
        if batch and len(batch) + len(line) > protocol.CHUNK_BYTES:
            yield batch
            batch = b""
        batch += line
    if batch:
        yield batch
