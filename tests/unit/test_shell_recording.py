"""Session recordings: the journal, its asciicast v2 conversion, playback, the store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

from gdos import cast
from gdos.daemon.recording import SessionJournal, cast_lines, convert
from gdos.daemon.store import Store


def journal(tmp_path: Path, record_input: bool = False) -> SessionJournal:
    head = cast.header(80, 24, 1_700_000_000.5, "xterm-256color", "/bin/bash", title="root@n1")
    return SessionJournal(tmp_path / "1.rec", head, record_input)


def test_a_journal_converts_to_valid_asciicast_v2(tmp_path: Path) -> None:
    rec = journal(tmp_path)
    rec.output(b"hello \xe2\x82")  # a euro sign split across two chunks
    rec.output(b"\xac\r\n")
    rec.output(b"oops\n", "stderr")
    rec.input(b"not recorded")
    rec.resize(120, 40)
    rec.output(b"\xff\x00binary")
    rec.close()
    target = tmp_path / "1.cast"
    convert(tmp_path / "1.rec", target)
    assert not (tmp_path / "1.rec").exists()
    lines = target.read_text(encoding="utf-8").splitlines()
    head = json.loads(lines[0])
    assert head == {
        "version": 2,
        "width": 80,
        "height": 24,
        "timestamp": 1_700_000_000,
        "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"},
        "title": "root@n1",
    }
    events = [json.loads(line) for line in lines[1:]]
    assert [(e[1], e[2]) for e in events] == [
        ("o", "hello "),
        ("o", "\u20ac\r\n"),
        ("o", "oops\n"),
        ("r", "120x40"),
        ("o", "\ufffd\x00binary"),
    ]
    assert all(isinstance(e[0], float) for e in events)
    assert [e[0] for e in events] == sorted(e[0] for e in events)


def test_input_is_journaled_only_when_enabled(tmp_path: Path) -> None:
    rec = journal(tmp_path, record_input=True)
    rec.input(b"ls -la\r")
    rec.close()
    events = [json.loads(line) for line in cast_lines(tmp_path / "1.rec")][1:]
    assert [(e[1], e[2]) for e in events] == [("i", "ls -la\r")]


def test_a_torn_last_record_is_left_out(tmp_path: Path) -> None:
    rec = journal(tmp_path)
    rec.output(b"complete")
    rec.output(b"torn away")
    rec.close()
    path = tmp_path / "1.rec"
    path.write_bytes(path.read_bytes()[:-4])  # the daemon died inside a write
    events = [json.loads(line) for line in cast_lines(path)][1:]
    assert [e[2] for e in events] == ["complete"]


def test_play_writes_output_at_speed_and_skips_other_events() -> None:
    recording = [
        json.dumps(cast.header(80, 24, 0, "xterm", "sh")),
        json.dumps([0.5, "o", "one "]),
        json.dumps([0.6, "i", "typed"]),
        "not json",
        json.dumps([1.0, "o", "two"]),
    ]
    data = ("\n".join(recording) + "\n").encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 7):  # lines split across chunks
            yield data[start : start + 7]

    written: list[str] = []
    head = asyncio.run(cast.play(chunks(), written.append, speed=1000))
    assert head["version"] == 2 and "".join(written) == "one two"


def test_idle_limit_shortens_long_pauses() -> None:
    recording = [
        json.dumps(cast.header(80, 24, 0, "xterm", "sh")),
        json.dumps([3600.0, "o", "late"]),
    ]

    async def chunks() -> AsyncIterator[bytes]:
        yield ("\n".join(recording)).encode()

    written: list[str] = []
    asyncio.run(asyncio.wait_for(cast.play(chunks(), written.append, 1.0, 0.01), 10))
    assert written == ["late"]


def test_sessions_are_stored_and_stale_ones_marked_lost(tmp_path: Path) -> None:
    store = Store(tmp_path / "gdos.db")
    first = store.create_shell_session(
        {"node": "n1", "user": "ops", "argv": ["top"], "tty": 1, "rows": 24, "cols": 80}
    )
    second = store.create_shell_session({"node": "n2", "user": "ops", "argv": [], "tty": 0})
    store.update_shell_session(first, {"status": "exited", "exit_code": 0, "ended": 2e9})
    assert store.close_stale_shell_sessions("the daemon stopped") == 1
    rows = {r["id"]: r for r in store.shell_sessions()}
    assert rows[first]["status"] == "exited" and rows[first]["argv"] == ["top"]
    assert rows[second]["status"] == "lost" and rows[second]["tty"] is False
    assert store.shell_session(999) is None
    store.close()
