"""Searching log text with flat memory: grep by block, tail backwards, --since.

``--grep`` searches whole blocks with the regular expression and cuts out
only the lines that match, which keeps a multi-GB scan close to the speed of
the regex engine. The start of the last ``n`` (matching) lines is found by
reading *backwards* in blocks, so memory stays at a few blocks whatever the
file size or ``n``. Lines longer than ``LINE_CAP`` are cut (the cut is
marked) and passing lines are batched into frames under ``BATCH_BYTES``.

``--since`` rule inside a file: lines are skipped while their leading
timestamp (ISO 8601 or syslog style) is older than ``since`` — lines
without a timestamp go with the line before them (continuations) — and from
the first line at or after ``since`` the rest of the file is read without
checking, since logs are written in time order.
"""

from __future__ import annotations

import calendar
import os
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

BLOCK = 256 * 1024
LINE_CAP = 32 * 1024
CUT_MARK_ROOM = 40
BATCH_BYTES = 60 * 1024  # lines per frame: under the 64 KiB chunk size with overhead

Batch = list[bytes]

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
