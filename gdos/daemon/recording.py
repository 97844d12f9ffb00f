"""Recording shell sessions for audit: a raw journal first, asciicast v2 after.

Decoding output to text and escaping it as JSON costs far more than relaying
it (binary output about ten times more), so during a session the daemon only
appends each event, raw and timestamped, to a journal (``ID.rec``, written
unbuffered, so a daemon that dies mid-session loses nothing). When the
session ends a separate process (``python -m gdos.daemon.recording``)
converts the journal to asciicast v2 (``ID.cast``) and removes it; journals
left by a daemon that died are converted at the next start, and replaying a
session still in its journal converts it on the fly. The relay never waits
for the encoder, and the encoder's CPU is not the daemon's.

Journal layout: ``MAGIC``, the asciicast header as one JSON line, then per
event a record header (seconds as float64, a code byte, a uint32 length)
and that many bytes. Codes: ``o`` output, ``e`` stderr output, ``i`` input,
``r`` resize (``COLSxROWS``). Files are owner-only: a session shows whatever
the operator typed and saw.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from gdos import cast

MAGIC = b"GDOS-REC 1\n"
RECORD = struct.Struct(">dcI")
CAST_CODES = {b"o": "o", b"e": "o", b"i": "i", b"r": "r"}


def _private_file(path: Path, buffering: int) -> IO[bytes]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "wb", buffering=buffering)


class SessionJournal:
    """Appends one session's events as they happen; cheap enough for any rate."""

    def __init__(self, path: Path, head: dict[str, Any], record_input: bool) -> None:
        self.path, self.record_input = path, record_input
        self.began = time.monotonic()
        self._file: IO[bytes] | None = _private_file(path, buffering=0)
        self._write(MAGIC + json.dumps(head).encode() + b"\n")

    def _write(self, data: bytes) -> None:
        if self._file is None:
            return
        try:
            self._file.write(data)
        except OSError:  # disk full: keep the session, lose the rest of the recording
            self.close()

    def _event(self, code: bytes, data: bytes) -> None:
        if data:
            at = time.monotonic() - self.began
            self._write(RECORD.pack(at, code, len(data)) + data)

    def output(self, data: bytes, stream: str = "stdout") -> None:
        self._event(b"e" if stream == "stderr" else b"o", data)

    def input(self, data: bytes) -> None:
        if self.record_input:
            self._event(b"i", data)

    def resize(self, cols: int, rows: int) -> None:
        self._event(b"r", f"{cols}x{rows}".encode())

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()


def cast_lines(journal: Path) -> Iterator[bytes]:
    """The asciicast v2 lines of a journal; a torn last record is left out."""
    with open(journal, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise ValueError(f"{journal} is not a gdos session journal")
        yield cast.line(json.loads(f.readline()))
        decoders: dict[bytes, cast.TextDecoder] = {}
        at = 0.0
        while len(raw := f.read(RECORD.size)) == RECORD.size:
            at, code, length = RECORD.unpack(raw)
            data = f.read(length)
            if len(data) < length or code not in CAST_CODES:
                break
            if code == b"r":
                text = data.decode("ascii", "replace")
            else:
                text = decoders.setdefault(code, cast.TextDecoder()).decode(data)
            if text:
                yield cast.line([round(at, 6), CAST_CODES[code], text])
        for code, decoder in decoders.items():
            if rest := decoder.flush():
                yield cast.line([round(at, 6), CAST_CODES[code], rest])


def convert(journal: Path, target: Path) -> None:
    """Write ``target`` (asciicast v2) from ``journal`` atomically, then drop the journal."""
    partial = target.with_name(target.name + ".part")
    with _private_file(partial, buffering=1 << 20) as out:
        for line in cast_lines(journal):
            out.write(line)
    os.replace(partial, target)
    journal.unlink()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: python -m gdos.daemon.recording JOURNAL CAST\n")
        return 2
    os.nice(10)  # live sessions first: converting can wait
    convert(Path(argv[1]), Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
