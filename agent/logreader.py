"""Reading log files with flat memory: history across rotated copies, and follow.

Nothing here loads a whole file. History starts from a position found by
reading backwards (gdos/agent/logsearch.py: grep, tail, --since, line caps)
then streams *forwards* in blocks, so memory stays at a few blocks whatever
the file size or ``n``. A file's rotated copies (``NAME.1``, ``NAME.2`` ...
and ``NAME-YYYYMMDD``, uncompressed only) come before it in time order, so a
tail or a search continues into them.

``--since``: a rotated copy or live file whose mtime is older than ``since``
is skipped whole; inside a file the rule of logsearch applies.

``Follower`` reads what is appended to a file and notices rotation: a new
inode at the path (rename + create) or a file shorter than what was read
(copytruncate), or whose last bytes read changed (a truncate refilled past
our offset before we looked). After a rotation the old file is drained and
the new one read from its start. Not noticed: a truncated file refilled past
our offset with byte-identical content just before it.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gdos.agent.logsearch import (
    BATCH_BYTES,
    BLOCK,
    LINE_CAP,
    Batch,
    Batcher,
    LineFilter,
    compile_grep,
    line_time,
    tail_start,
)

# Names the agent and tests import from here.
__all__ = [
    "BATCH_BYTES",
    "BLOCK",
    "LINE_CAP",
    "Batch",
    "Batcher",
    "Follower",
    "History",
    "LineFilter",
    "Position",
    "compile_grep",
    "is_regular",
    "line_time",
    "rotated_copies",
]

MARK_BYTES = 64  # bytes before the follow offset re-read to notice a refilled truncate

_ROTATED = re.compile(r"^(?P<base>.+?)(?:\.(?P<n>\d{1,4})|-(?P<date>\d{8,10}))$")


# -- which files ------------------------------------------------------------------------


def rotated_copies(path: Path) -> list[Path]:
    """Uncompressed rotated copies of ``path`` (NAME.N, NAME-DATE), oldest first."""
    found: list[tuple[float, Path]] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    for entry in entries:
        match = _ROTATED.match(entry.name)
        if not match or match.group("base") != path.name:
            continue
        try:
            if entry.is_file():
                found.append((entry.stat().st_mtime, Path(entry.path)))
        except OSError:
            continue
    return [p for _, p in sorted(found)]


@dataclass
class Position:
    """Where history reading ended in the live file, for a follower to go on from."""

    dev: int = 0
    ino: int = 0
    offset: int = 0


class LineSplitter:
    """Cuts a byte stream into complete lines with a bounded carry.

    ``feed`` returns the complete-lines region of the data (no final newline),
    or None when the data held no newline. A line that grows past LINE_CAP
    without a newline keeps its first LINE_CAP bytes; the rest is counted and
    marked when the line ends.
    """

    def __init__(self) -> None:
        self.carry = b""
        self.dropped = 0

    def feed(self, data: bytes) -> tuple[bytes | None, bytes | None]:
        """(an overlong first line, or None; the region of complete lines, or None)."""
        last = data.rfind(b"\n")
        if last < 0:
            self._keep(data)
            return None, None
        first = data.find(b"\n")
        long_line = None
        if self.dropped or len(self.carry) + first > LINE_CAP:
            head = (self.carry + data[: min(first, LINE_CAP)])[:LINE_CAP]
            cut = self.dropped + len(self.carry) + first - len(head)
            long_line = head + (b" [... %d bytes cut]" % cut if cut else b"")
            region = data[first + 1 : last] if first < last else None
        else:
            region = self.carry + data[:last]
        self.carry, self.dropped = b"", 0
        self._keep(data[last + 1 :])
        return long_line, region

    def _keep(self, data: bytes) -> None:
        room = LINE_CAP - len(self.carry)
        if len(data) > room:
            self.carry += data[: max(room, 0)]
            self.dropped += len(data) - max(room, 0)
        else:
            self.carry += data

    def rest(self) -> bytes | None:
        """The unfinished last line (end of file), or None."""
        if not self.carry and not self.dropped:
            return None
        line = self.carry + (b" [... %d bytes cut]" % self.dropped if self.dropped else b"")
        self.carry, self.dropped = b"", 0
        return line


# -- history ----------------------------------------------------------------------------------


OpenCheck = Callable[[Path], int]


class History:
    """The last ``lines`` (matching) lines of a file and its rotated copies.

    ``lines`` < 0 means every (matching) line. Iterating yields batches;
    afterwards ``position`` says where the live file was read to, so a
    follower continues exactly there.
    """

    def __init__(
        self,
        path: Path,
        lines: int,
        regex: re.Pattern[bytes] | None,
        since: float | None,
        follow: bool,
        opener: OpenCheck,
    ) -> None:
        self.path, self.lines, self.regex, self.since = path, lines, regex, since
        self.follow, self.opener = follow, opener
        self.position = Position()

    def files(self) -> list[Path]:
        """The files to read, oldest first (rotated copies, then the live file)."""
        chain = [*rotated_copies(self.path), self.path]
        if self.since is None:
            return chain
        fresh = []
        for item in chain:
            try:
                if item == self.path or os.stat(item).st_mtime >= self.since:
                    fresh.append(item)
            except OSError:
                continue
        return fresh

    def __iter__(self) -> Iterator[Batch]:
        chain = self.files()
        fds: list[int] = []
        try:
            for item in chain:
                try:
                    fds.append(self.opener(item))
                except OSError:
                    if item == self.path:
                        raise
                    fds.append(-1)  # a rotated copy that vanished meanwhile
            yield from self._read(chain, fds)
        finally:
            for fd in fds:
                if fd >= 0:
                    os.close(fd)

    def _read(self, chain: list[Path], fds: list[int]) -> Iterator[Batch]:
        ends = [os.fstat(fd).st_size if fd >= 0 else 0 for fd in fds]
        live = os.fstat(fds[-1])
        self.position = Position(live.st_dev, live.st_ino, ends[-1])
        first, offset = 0, 0
        if self.lines >= 0:
            first, offset = len(chain), ends[-1]
            need = self.lines
            for index in range(len(chain) - 1, -1, -1):
                if need == 0 or fds[index] < 0:
                    break
                found, offset = tail_start(fds[index], ends[index], need, self.regex)
                first, need = index, need - found
        keep = LineFilter(self.regex, self.since)
        batcher = Batcher()
        for index in range(first, len(chain)):
            fd = fds[index]
            start = offset if index == first else 0
            if fd < 0 or start >= ends[index]:
                continue
            keep.reset()
            if self.since is not None and os.fstat(fd).st_mtime < self.since:
                continue  # nothing in it was written after --since
            is_live = index == len(chain) - 1
            reader = _Forward(fd, start, ends[index], keep, batcher, not (is_live and self.follow))
            yield from reader
            if is_live:
                self.position.offset = reader.stopped_at
        if batcher.lines:
            yield batcher.take()


class _Forward:
    """Passing lines of ``fd[offset:end]``; remembers where it stopped.

    ``partial``: also emit an unfinished last line (history without follow);
    otherwise ``stopped_at`` is that line's start, where a follower goes on.
    """

    def __init__(
        self, fd: int, offset: int, end: int, keep: LineFilter, batcher: Batcher, partial: bool
    ) -> None:
        self.fd, self.offset, self.end = fd, offset, end
        self.keep, self.batcher, self.partial = keep, batcher, partial
        self.stopped_at = end

    def __iter__(self) -> Iterator[Batch]:
        splitter = LineSplitter()
        offset = self.offset
        while offset < self.end:
            data = os.pread(self.fd, min(BLOCK, self.end - offset), offset)
            if not data:
                break
            offset += len(data)
            long_line, region = splitter.feed(data)
            if long_line is not None and self.keep.accepts(long_line):
                yield from self.batcher.add([long_line])
            if region is not None:
                yield from self.batcher.add(self.keep.lines(region))
        unfinished = len(splitter.carry) + splitter.dropped
        tail = splitter.rest()
        self.stopped_at = offset
        if tail is not None:
            if self.partial:
                if self.keep.accepts(tail):
                    yield from self.batcher.add([tail])
            else:
                self.stopped_at = offset - unfinished


# -- follow -------------------------------------------------------------------------------------


class Follower:
    """Reads lines appended to ``path``; follows rename+create and copytruncate.

    ``poll`` is cheap when nothing changed (one fstat and one stat). It returns
    at most about one batch per call so the caller can wait for credit between.
    Only complete lines are returned; an unfinished one waits for its newline.
    """

    def __init__(
        self,
        path: Path,
        position: Position,
        keep: LineFilter,
        opener: OpenCheck,
    ) -> None:
        self.path, self.keep, self.opener = path, keep, opener
        self.keep.checking_since = False
        self.fd = -1
        self.offset = 0
        self.mark = b""
        self.splitter = LineSplitter()
        self.rotations = 0
        self._open(position)

    def _open(self, position: Position | None) -> None:
        try:
            fd = self.opener(self.path)
        except OSError:
            return  # renamed away, not created again yet: try again next poll
        info = os.fstat(fd)
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = fd
        same = position is not None and (info.st_dev, info.st_ino) == (position.dev, position.ino)
        self.offset = position.offset if same and position is not None else 0
        self.mark = os.pread(
            fd, min(MARK_BYTES, self.offset), self.offset - min(MARK_BYTES, self.offset)
        )
        if position is not None and not same:
            self.rotations += 1
        self.splitter = LineSplitter()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def poll(self) -> list[Batch]:
        """New lines since the last poll, in batches (empty when nothing changed)."""
        if self.fd < 0:
            self._open(Position())
            if self.fd < 0:
                return []
        size = os.fstat(self.fd).st_size
        if size < self.offset or (size > self.offset and not self._unchanged()):
            # copytruncate: the file was cut (and maybe refilled); read it from its start
            flushed = self._flush()
            self.offset, self.mark = 0, b""
            self.rotations += 1
            return flushed + self._read(os.fstat(self.fd).st_size)
        if size > self.offset:
            return self._read(size)
        if self._replaced():  # the old file is drained: go on with the new one
            flushed = self._flush()
            self._open(Position())
            return flushed + (self._read(os.fstat(self.fd).st_size) if self.fd >= 0 else [])
        return []

    def _unchanged(self) -> bool:
        """The bytes just before our offset are still the ones we read (not truncated)."""
        if not self.mark:
            return True
        return os.pread(self.fd, len(self.mark), self.offset - len(self.mark)) == self.mark

    def _flush(self) -> list[Batch]:
        """The old file's unfinished last line, at a rotation."""
        tail = self.splitter.rest()
        self.splitter = LineSplitter()
        return [[tail]] if tail is not None and self.keep.accepts(tail) else []

    def _replaced(self) -> bool:
        try:
            now = os.stat(self.path)
        except OSError:
            return False
        mine = os.fstat(self.fd)
        return (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino)

    def _read(self, size: int) -> list[Batch]:
        """At most one block of new data, cut into batches of complete lines."""
        if size <= self.offset:
            return []
        data = os.pread(self.fd, min(BLOCK, size - self.offset), self.offset)
        self.offset += len(data)
        self.mark = (self.mark + data[-MARK_BYTES:])[-MARK_BYTES:]
        long_line, region = self.splitter.feed(data)
        lines = [long_line] if long_line is not None and self.keep.accepts(long_line) else []
        if region is not None:
            lines += self.keep.lines(region)
        batcher = Batcher()
        batches = list(batcher.add(lines))
        if batcher.lines:
            batches.append(batcher.take())
        return batches

    @property
    def behind(self) -> bool:
        """True when more data is waiting (poll again at once)."""
        try:
            return self.fd >= 0 and os.fstat(self.fd).st_size > self.offset
        except OSError:
            return False


def is_regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)
