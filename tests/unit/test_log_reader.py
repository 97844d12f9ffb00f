"""The agent's log reader: tail backwards, grep, --since, follow across rotations, access."""

from __future__ import annotations

import contextlib
import os
import re
import time
from datetime import datetime
from pathlib import Path

import pytest
from gdos.agent import logreader
from gdos.agent.logreader import (
    BLOCK,
    LINE_CAP,
    Follower,
    History,
    LineFilter,
    compile_grep,
    line_time,
    rotated_copies,
)
from gdos.agent.logs import LogAccess
from gdos.agent.supervisor import Supervisor

from gdos.errors import ErrorCode, GdosError


def plain_open(path: Path) -> int:
    return os.open(path, os.O_RDONLY)


def read(
    path: Path,
    lines: int = 100,
    grep: str | None = None,
    since: float | None = None,
    follow: bool = False,
) -> list[bytes]:
    history = History(path, lines, compile_grep(grep), since, follow, plain_open)
    return [line for batch in history for line in batch]


def numbered(count: int, width: int = 0) -> list[bytes]:
    return [b"line %d %s" % (i, b"x" * width) for i in range(count)]


def write(path: Path, lines: list[bytes], newline_at_end: bool = True) -> None:
    path.write_bytes(b"\n".join(lines) + (b"\n" if newline_at_end else b""))


# -- tail -----------------------------------------------------------------------------


@pytest.mark.parametrize("newline_at_end", [True, False])
def test_tail_returns_the_last_n_lines(tmp_path: Path, newline_at_end: bool) -> None:
    log = tmp_path / "app.log"
    lines = numbered(5000)
    write(log, lines, newline_at_end)
    assert read(log, 10) == lines[-10:]
    assert read(log, 1) == lines[-1:]
    assert read(log, 0) == []
    assert read(log, 10_000) == lines
    assert read(log, -1) == lines


def test_tail_across_blocks_with_long_lines(tmp_path: Path) -> None:
    log = tmp_path / "long.log"
    lines = numbered(60, width=LINE_CAP - 20)  # several per block, some cross blocks
    write(log, lines, newline_at_end=False)
    assert read(log, 25) == lines[-25:]


def test_lines_longer_than_the_cap_are_cut_and_marked(tmp_path: Path) -> None:
    log = tmp_path / "huge.log"
    giant = b"G" * (3 * BLOCK + 5)  # one line over several blocks
    write(log, [b"before", giant, b"after"])
    got = read(log, 3)
    assert got[0] == b"before" and got[2] == b"after"
    assert got[1].startswith(b"G" * LINE_CAP)
    assert got[1].endswith(b"[... %d bytes cut]" % (len(giant) - LINE_CAP))
    write(log, [b"x", giant], newline_at_end=False)
    assert read(log, 1)[0].endswith(b"bytes cut]")


def test_empty_file_and_blank_lines(tmp_path: Path) -> None:
    log = tmp_path / "empty.log"
    log.write_bytes(b"")
    assert read(log) == []
    log.write_bytes(b"\n\nlast\n")
    assert read(log, 3) == [b"", b"", b"last"]
    assert read(log, 2) == [b"", b"last"]


def test_tail_continues_into_rotated_copies(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    write(tmp_path / "svc.log.2", [b"a1", b"a2"])
    write(tmp_path / "svc.log.1", [b"b1", b"b2"])
    write(log, [b"c1"])
    now = time.time()
    os.utime(tmp_path / "svc.log.2", (now - 20, now - 20))
    os.utime(tmp_path / "svc.log.1", (now - 10, now - 10))
    (tmp_path / "svc.log.3.gz").write_bytes(b"compressed")
    (tmp_path / "other.log.1").write_bytes(b"not ours\n")
    assert [p.name for p in rotated_copies(log)] == ["svc.log.2", "svc.log.1"]
    assert read(log, 3) == [b"b1", b"b2", b"c1"]
    assert read(log, -1) == [b"a1", b"a2", b"b1", b"b2", b"c1"]


# -- grep ---------------------------------------------------------------------------------


def naive_grep(lines: list[bytes], pattern: str) -> list[bytes]:
    regex = re.compile(pattern.encode())
    return [line for line in lines if regex.search(line)]


@pytest.mark.parametrize(
    "pattern", [r"ERROR", r"^line 1\d*7 ", r"x$", r"7 \S*\s+line", r"\Aline 99", r"(?<=line )42 "]
)
def test_grep_matches_what_a_line_by_line_search_finds(tmp_path: Path, pattern: str) -> None:
    log = tmp_path / "app.log"
    lines = [(b"line %d ERROR boom x" if i % 97 == 0 else b"line %d ok") % i for i in range(30_000)]
    write(log, lines)
    assert read(log, -1, grep=pattern) == naive_grep(lines, pattern)


def test_grep_with_n_keeps_the_last_n_matches(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    lines = [(b"line %d ERROR" if i % 10 == 0 else b"line %d") % i for i in range(20_000)]
    write(log, lines)
    matches = naive_grep(lines, "ERROR")
    assert read(log, 5, grep="ERROR") == matches[-5:]
    assert read(log, 10_000, grep="ERROR") == matches


# -- since -----------------------------------------------------------------------------------


def test_line_time_reads_iso_and_syslog_stamps() -> None:
    assert line_time(b"2024-05-01T10:00:00Z hello") == 1714557600.0
    assert line_time(b"2024-05-01 12:00:00.5+02:00 x") == 1714557600.5
    assert line_time(b"[2024-05-01T10:00:00,250Z] x") == 1714557600.25
    local = datetime(2024, 5, 1, 10, 0, 0).timestamp()
    assert line_time(b"2024-05-01T10:00:00 x") == local
    now = datetime(2024, 5, 2).timestamp()
    assert line_time(b"May  1 10:00:00 host sshd[1]: x", now) == local
    assert line_time(b"Dec 31 23:00:00 host x", now) == datetime(2023, 12, 31, 23).timestamp()
    assert line_time(b"no stamp here") is None
    assert line_time(b"2024-13-45T99:00:00 bad") is None


def stamp(epoch: float) -> bytes:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%dT%H:%M:%S").encode()


def test_since_skips_old_lines_and_their_continuations(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    now = time.time()
    write(
        log,
        [
            stamp(now - 3600) + b" old",
            b"  old continuation",
            stamp(now - 120) + b" recent",
            b"  recent continuation",
            b"no stamp after",
        ],
    )
    assert read(log, -1, since=now - 600) == [
        stamp(now - 120) + b" recent",
        b"  recent continuation",
        b"no stamp after",
    ]
    assert read(log, -1, since=now - 600, grep="cont") == [b"  recent continuation"]


def test_since_skips_rotated_copies_older_than_it(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(tmp_path / "app.log.1", [b"from the old copy"])
    write(log, [b"live line"])
    old = time.time() - 7200
    os.utime(tmp_path / "app.log.1", (old, old))
    assert read(log, -1) == [b"from the old copy", b"live line"]
    assert read(log, -1, since=time.time() - 600) == [b"live line"]


# -- follow ------------------------------------------------------------------------------------


def follow_from_end(path: Path) -> Follower:
    history = History(path, 0, None, None, True, plain_open)
    assert list(history) == []
    return Follower(path, history.position, LineFilter(None, None), plain_open)


def polled(follower: Follower) -> list[bytes]:
    out: list[bytes] = []
    while True:
        batches = follower.poll()
        if not batches and not follower.behind:
            return out
        out += [line for batch in batches for line in batch]


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def test_follow_sees_appends_and_waits_for_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, [b"history"])
    follower = follow_from_end(log)
    assert polled(follower) == []
    append(log, b"one\ntw")
    assert polled(follower) == [b"one"]
    append(log, b"o\n")
    assert polled(follower) == [b"two"]
    follower.close()


def test_follow_across_rename_and_create(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, [b"start"])
    follower = follow_from_end(log)
    append(log, b"before rotation\n")
    os.rename(log, tmp_path / "app.log.1")
    append(tmp_path / "app.log.1", b"late write to the old file\n")
    assert polled(follower) == [b"before rotation", b"late write to the old file"]
    write(log, [b"new file line"])
    assert polled(follower) == [b"new file line"]
    assert follower.rotations == 1
    follower.close()


def test_follow_across_copytruncate(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, [b"start"])
    follower = follow_from_end(log)
    append(log, b"before\n")
    assert polled(follower) == [b"before"]
    logreader_rotate(log)
    append(log, b"after\n")
    assert polled(follower) == [b"after"]
    logreader_rotate(log)  # refilled past the old offset before the next poll
    append(log, b"a longer line than before\n")
    assert polled(follower) == [b"a longer line than before"]
    assert follower.rotations == 2
    follower.close()


def logreader_rotate(path: Path) -> None:
    from gdos.agent import logfiles

    logfiles.rotate(path, backups=2)


def test_follower_waits_for_a_file_renamed_away(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, [b"x"])
    follower = follow_from_end(log)
    os.rename(log, tmp_path / "gone")
    assert polled(follower) == []
    write(log, [b"back"])
    assert polled(follower) == [b"back"]
    follower.close()


def test_history_then_follow_loses_no_line(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"a\nb\npartial")
    history = History(log, 10, None, None, True, plain_open)
    assert [line for batch in history for line in batch] == [b"a", b"b"]
    follower = Follower(log, history.position, LineFilter(None, None), plain_open)
    append(log, b" done\n")
    assert polled(follower) == [b"partial done"]
    follower.close()


def test_batches_stay_under_the_frame_budget(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, numbered(20_000, width=50))
    history = History(log, -1, None, None, False, plain_open)
    sizes = [sum(len(line) + 8 for line in batch) for batch in history]
    assert len(sizes) > 10 and max(sizes) <= logreader.BATCH_BYTES


# -- access -----------------------------------------------------------------------------------


@pytest.fixture
def access(tmp_path: Path) -> LogAccess:
    root = tmp_path / "logs"
    root.mkdir()
    (root / "app.log").write_bytes(b"ok\n")
    (tmp_path / "secret").write_bytes(b"no\n")
    return LogAccess([root], Supervisor(tmp_path / "instances", lambda state: None))


def refused(access: LogAccess, path: str) -> GdosError:
    with pytest.raises(GdosError) as info:
        access.target({"path": path})
    return info.value


def test_paths_inside_a_root_are_allowed(access: LogAccess, tmp_path: Path) -> None:
    assert access.target({"path": str(tmp_path / "logs" / "app.log")}).name == "app.log"


def test_paths_outside_the_roots_are_refused(access: LogAccess, tmp_path: Path) -> None:
    error = refused(access, str(tmp_path / "secret"))
    assert error.code == ErrorCode.PATH_NOT_ALLOWED and "--log-root" in error.message
    assert refused(access, f"{tmp_path}/logs/../secret").code == ErrorCode.PATH_NOT_ALLOWED
    assert refused(access, "logs/app.log").code == ErrorCode.PATH_NOT_ALLOWED
    (tmp_path / "logs" / "escape.log").symlink_to(tmp_path / "secret")
    error = refused(access, str(tmp_path / "logs" / "escape.log"))
    assert error.code == ErrorCode.PATH_NOT_ALLOWED and "resolves to" in error.message
    opener = access.opener(tmp_path / "logs" / "app.log")
    with pytest.raises(PermissionError):
        opener(tmp_path / "logs" / "escape.log")


def test_missing_files_and_folders_are_refused_clearly(access: LogAccess, tmp_path: Path) -> None:
    assert refused(access, str(tmp_path / "logs" / "nope.log")).code == ErrorCode.LOG_NOT_FOUND
    assert refused(access, str(tmp_path / "logs")).code == ErrorCode.INVALID_ARGUMENT


def test_a_symlink_swapped_in_while_opening_is_never_read(
    access: LogAccess, tmp_path: Path
) -> None:
    """Issue 11 item 10: the file checked must be the file read.

    A swapper thread flips ``logs/app.log`` (and, to race the folders too,
    ``logs/sub``) between a real entry and a symlink to a secret outside the
    roots, while the opener is called in a bounded loop. Whatever it opens
    must be a file inside the roots; a refusal is fine, a secret never.
    """
    import threading

    logs, outside = tmp_path / "logs", tmp_path / "outside"
    (logs / "real-sub").mkdir()
    (logs / "real-sub" / "app.log").write_bytes(b"ok\n")
    outside.mkdir()
    (outside / "app.log").write_bytes(b"SECRET\n")
    (logs / "evil.log").symlink_to(tmp_path / "secret")
    (logs / "evil-sub").symlink_to(outside)
    (logs / "sub").symlink_to(logs / "real-sub")
    (logs / "good.log").write_bytes(b"ok\n")
    (logs / "app.log").unlink()
    os.link(logs / "good.log", logs / "app.log")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            for name, good, evil in (("app.log", "good.log", "evil.log"), ("sub", "real", "evil")):
                tmp = logs / f".{name}.swap"
                with contextlib.suppress(FileNotFoundError, FileExistsError):
                    if name == "sub":
                        os.symlink(logs / "real-sub" if good == "real" else outside, tmp)
                    else:
                        os.link(logs / good, tmp)
                    os.replace(tmp, logs / name)
                with contextlib.suppress(FileNotFoundError, FileExistsError):
                    if name == "sub":
                        os.symlink(outside, tmp)
                    else:
                        os.symlink(logs / evil, tmp)
                    os.replace(tmp, logs / name)

    opener = access.opener(logs / "app.log")
    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    read, leaks, refused_count = 0, 0, 0
    try:
        for attempt in range(3000):
            item = logs / ("app.log" if attempt % 2 else "sub/app.log")
            try:
                fd = opener(item)
            except (PermissionError, FileNotFoundError):
                refused_count += 1
                continue
            try:
                data = os.pread(fd, 64, 0)
            finally:
                os.close(fd)
            read += 1
            leaks += data != b"ok\n"
    finally:
        stop.set()
        swapper.join(10)
    assert leaks == 0, f"{leaks} secrets read in {read} opens"
    assert read > 0 and refused_count > 0  # both sides of the race were hit
