"""Reading log files with flat memory: tail backwards, grep forwards, follow rotations.

Nothing here loads a whole file. History starts from a position found by
reading *backwards* in blocks, counting (matching) lines until the last
``n`` are found, then streams *forwards* in blocks, so memory stays at a few
blocks whatever the file size or ``n``. ``--grep`` searches whole blocks with
the regular expression and cuts out only the lines that match, which keeps a
multi-GB scan close to the speed of the regex engine.

Lines longer than ``LINE_CAP`` are cut (the cut is marked). A file's rotated
copies (``NAME.1``, ``NAME.2`` ... and ``NAME-YYYYMMDD``, uncompressed only)
come before it in time order, so a tail or a search continues into them.

``--since`` rule: a rotated copy or live file whose mtime is older than
``since`` is skipped whole; inside a file, lines are skipped while their
leading timestamp (ISO 8601 or syslog style) is older than ``since`` — lines
without a timestamp go with the line before them (continuations) — and from
the first line at or after ``since`` the rest of the file is read without
checking, since logs are written in time order.

``Follower`` reads what is appended to a file and notices rotation: a new
inode at the path (rename + create) or a file shorter than what was read
(copytruncate), or whose last bytes read changed (a truncate refilled past
our offset before we looked). After a rotation the old file is drained and
the new one read from its start. Not noticed: a truncated file refilled past
our offset with byte-identical content just before it.
"""

from __future__ import annotations

import calendar
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

BLOCK = 256 * 1024
LINE_CAP = 32 * 1024
CUT_MARK_ROOM = 40
MARK_BYTES = 64  # bytes before the follow offset re-read to notice a refilled truncate
BATCH_BYTES = 60 * 1024  # lines per frame: under the 64 KiB chunk size with overhead

Batch = list[bytes]

_ROTATED = re.compile(r"^(?P<base>.+?)(?:\.(?P<n>\d{1,4})|-(?P<date>\d{8,10}))$")
_ISO = re.compile(
    rb"^\[?(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    rb" ?(Z|[+-]\d{2}:?\d{2})?"
)
_SYSLOG = re.compile(rb"^([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2})")
_MONTHS = {m.encode(): i for i, m in enumerate(calendar.month_abbr) if m}
_PER_LINE_ONLY = (b"\\A", b"\\Z", b"(?<")  # patterns a block search could miss


def compile_grep(pattern: str | None) -> re.Pattern[bytes] | None:
    """The ``--grep`` pattern as a bytes regex (raises re.error when invalid)."""
    if not pattern:
        return None
    return re.compile(pattern.encode("utf-8", "surrogateescape"), re.MULTILINE)


# -- timestamps -----------------------------------------------------------------------


def line_time(line: bytes, now: float | None = None) -> float | None:
    """The epoch time a line starts with (ISO 8601 or syslog), or None.

    Without a zone the time is local. A syslog time has no year: it is taken
    in the current year, or the one before when that would be in the future.
    """
    match = _ISO.match(line)
    if match:
        try:
            return _iso_epoch(match)
        except ValueError:
            return None
    match = _SYSLOG.match(line)
    if match and match.group(1) in _MONTHS:
        return _syslog_epoch(match, now)
    return None


def _iso_epoch(match: re.Match[bytes]) -> float:
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    frac = match.group(7)
    fraction = int(frac) / 10 ** len(frac) if frac else 0.0
    zone = match.group(8)
    if zone is None:
        stamp = datetime(year, month, day, hour, minute, second).timestamp()
        return stamp + fraction
    naive = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if zone != b"Z":
        sign = 1 if zone[:1] == b"+" else -1
        digits = zone[1:].replace(b":", b"")
        naive -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return naive + fraction


def _syslog_epoch(match: re.Match[bytes], now: float | None) -> float | None:
    current = datetime.fromtimestamp(now if now is not None else time.time())
    month, day = _MONTHS[match.group(1)], int(match.group(2))
    hour, minute, second = (int(g) for g in match.groups()[2:5])
    try:
        when = datetime(current.year, month, day, hour, minute, second)
        if when - current > timedelta(days=1):
            when = when.replace(year=current.year - 1)
    except ValueError:
        return None
    return when.timestamp()


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


# -- backwards: where the last n lines begin -----------------------------------------------


def tail_start(fd: int, end: int, need: int, regex: re.Pattern[bytes] | None) -> tuple[int, int]:
    """(lines found, offset of the first of them) among the last ``need`` lines of
    ``fd[0:end]`` (matching ``regex`` when given), read backwards in blocks.

    Fewer than ``need`` found means the file starts before them: offset 0.
    """
    if need <= 0 or end <= 0:
        return 0, end
    pos = end - 1 if os.pread(fd, 1, end - 1) == b"\n" else end
    carry = b""  # the start of the line that crosses the block boundary (capped)
    found = 0
    while pos > 0:
        start = max(0, pos - BLOCK)
        block = os.pread(fd, pos - start, start)
        first = block.find(b"\n")
        if first < 0:
            carry = (block + carry)[:LINE_CAP]
            pos = start
            continue
        region_start = start + first + 1
        region = block[first + 1 :] + carry
        hit = _last_lines(region, need - found, regex)
        if hit is not None:
            return need, region_start + hit
        found += _count_lines(region, regex)
        carry, pos = block[:first][:LINE_CAP], start
    if regex is None or regex.search(carry):
        found += 1
    return found, 0


def _count_lines(region: bytes, regex: re.Pattern[bytes] | None) -> int:
    if regex is None:
        return region.count(b"\n") + 1
    if not regex.search(region):
        return 0
    return sum(1 for line in region.split(b"\n") if regex.search(line))


def _last_lines(region: bytes, need: int, regex: re.Pattern[bytes] | None) -> int | None:
    """Offset in ``region`` of the ``need``-th (matching) line from its end, or None."""
    if regex is None:
        if region.count(b"\n") + 1 < need:
            return None
        cut = len(region)
        for _ in range(need):
            cut = region.rfind(b"\n", 0, cut)
            if cut < 0:
                return 0
        return cut + 1
    if not regex.search(region):
        return None
    starts, offset = [], 0
    for line in region.split(b"\n"):
        if regex.search(line):
            starts.append(offset)
        offset += len(line) + 1
    return starts[-need] if len(starts) >= need else None


# -- forwards: lines from an offset, filtered ------------------------------------------------


class LineFilter:
    """What a line must satisfy: the grep pattern and the --since time."""

    def __init__(self, regex: re.Pattern[bytes] | None, since: float | None) -> None:
        self.regex, self.since = regex, since
        self.per_line = regex is not None and any(t in regex.pattern for t in _PER_LINE_ONLY)
        self.reset()

    def reset(self) -> None:
        """At the start of each file: --since is checked again, line by line."""
        self.checking_since = self.since is not None
        self.recent = True  # lines before any timestamp pass

    def lines(self, chunk: bytes) -> list[bytes]:
        """The lines of ``chunk`` (newline-separated, no final newline) that pass."""
        if self.checking_since:
            return self._since_lines(chunk)
        if self.regex is None:
            return chunk.split(b"\n")
        if self.per_line:
            return [line for line in chunk.split(b"\n") if self.regex.search(line)]
        return _grep_block(chunk, self.regex)

    def _since_lines(self, chunk: bytes) -> list[bytes]:
        assert self.since is not None
        lines = chunk.split(b"\n")
        passed: list[bytes] = []
        for index, line in enumerate(lines):
            stamp = line_time(line)
            if stamp is not None:
                self.recent = stamp >= self.since
                if self.recent:  # time order: the rest of the file is newer
                    self.checking_since = False
                    return self._plain(passed) + self.lines(b"\n".join(lines[index:]))
            if self.recent:
                passed.append(line)
        return self._plain(passed)

    def _plain(self, lines: list[bytes]) -> list[bytes]:
        if self.regex is None:
            return lines
        return [line for line in lines if self.regex.search(line)]

    def accepts(self, line: bytes) -> bool:
        return bool(self.lines(line))


def _grep_block(chunk: bytes, regex: re.Pattern[bytes]) -> list[bytes]:
    """Matching lines of a block: search the block, cut out each matching line."""
    out: list[bytes] = []
    pos, size = 0, len(chunk)
    while pos <= size:
        match = regex.search(chunk, pos)
        if match is None:
            break
        start = chunk.rfind(b"\n", 0, match.start()) + 1
        end = chunk.find(b"\n", match.start())
        end = size if end < 0 else end
        line = chunk[start:end]
        if match.end() <= end or regex.search(line):
            out.append(line)
        pos = end + 1
    return out


def cap_line(line: bytes) -> bytes:
    if len(line) <= LINE_CAP + CUT_MARK_ROOM:  # room for a mark already added
        return line
    return line[:LINE_CAP] + b" [... %d bytes cut]" % (len(line) - LINE_CAP)


class Batcher:
    """Collects passing lines into batches of at most BATCH_BYTES."""

    def __init__(self) -> None:
        self.lines: Batch = []
        self.size = 0

    def add(self, lines: list[bytes]) -> Iterator[Batch]:
        for line in lines:
            if len(line) > LINE_CAP + CUT_MARK_ROOM:
                line = cap_line(line)
            if self.lines and self.size + len(line) + 8 > BATCH_BYTES:
                yield self.take()
            self.lines.append(line)
            self.size += len(line) + 8

    def take(self) -> Batch:
        batch, self.lines, self.size = self.lines, [], 0
        return batch


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
