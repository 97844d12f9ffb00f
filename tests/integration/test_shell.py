"""Remote shell through real agents, driven through a real pseudo-terminal.

Interactive sessions run the real ``gdos shell`` under pexpect (a pty, so
the CLI goes raw and forwards SIGWINCH); byte streams run it with pipes.
Every wait is pexpect's ``expect`` or ``wait_for`` with a deadline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pexpect
import pytest

from tests.harness import Fleet, short_home, unchanged_for, wait_for

GDOS = [sys.executable, "-m", "gdos.cli.main"]
TIMEOUT = 20
STTY = r"[\r\n]([0-9a-f]+(?::[0-9a-f]+)+)\r\n"  # a line of `stty -g`


@pytest.fixture
def duo(fleet: Fleet) -> Iterator[Fleet]:
    token = fleet.token()
    for name in ("n1", "n2"):
        fleet.start_agent(name, join=token)
    fleet.wait_online("n1", "n2")
    yield fleet


def shell(fleet: Fleet, *args: str, rows: int = 24, cols: int = 80) -> pexpect.spawn:
    """``gdos shell ARGS`` on a fresh pseudo-terminal of the given size."""
    return pexpect.spawn(
        GDOS[0],
        [*GDOS[1:], "shell", *args],
        env=fleet.env(fleet.daemon_home),
        dimensions=(rows, cols),
        timeout=TIMEOUT,
    )


def piped(fleet: Fleet, *args: str) -> subprocess.Popen[bytes]:
    """``gdos shell ARGS`` with stdin and stdout as pipes (no terminal)."""
    return subprocess.Popen(
        [*GDOS, "shell", *args],
        env=fleet.env(fleet.daemon_home),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def out(text: str) -> str:
    """A pattern for one output line (after CR: bash's bracketed-paste mode ends in one)."""
    return "[\r\n]" + re.escape(text) + "\r\n"


def exit_status(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus is not None, f"killed by signal {child.signalstatus}"
    return int(child.exitstatus)


def gdos_quiet(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with stdin at EOF (never the test runner's terminal)."""
    return subprocess.run(
        [*GDOS, *args],
        env=fleet.env(fleet.daemon_home),
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_interactive_shell_runs_commands_and_returns_the_exit_status(duo: Fleet) -> None:
    child = shell(duo, "n1")
    child.sendline("echo $((6*7))")
    child.expect(out("42"))
    child.sendline("exit 3")
    assert exit_status(child) == 3


def test_window_size_is_set_on_open_and_follows_a_resize(duo: Fleet) -> None:
    child = shell(duo, "n1", rows=24, cols=80)
    child.sendline("stty size")
    child.expect(out("24 80"))
    child.setwinsize(40, 132)  # the kernel sends SIGWINCH to the CLI

    def resized() -> bool:
        child.sendline("stty size")
        return child.expect([out("40 132"), out("24 80")]) == 0

    wait_for(resized, TIMEOUT, "the remote pty to take the new size")
    child.sendline("exit")
    assert exit_status(child) == 0


def test_ctrl_c_goes_to_the_remote_program(duo: Fleet) -> None:
    child = shell(duo, "n1")
    child.sendline("echo ready-$((1+1))")
    child.expect(out("ready-2"))  # computed remotely: the CLI is raw from here on
    child.sendline("sh -c 'echo started-$((2+2)); exec sleep 300'; echo slept")
    child.expect(out("started-4"))  # sleep is the remote foreground job now
    child.sendcontrol("c")  # raw mode: \x03 travels to the remote pty, which interrupts sleep
    child.sendline("echo alive-$((1+1))")
    child.expect(out("alive-2"))
    assert b"slept\r\n" not in child.before
    child.sendline("exit 0")
    assert exit_status(child) == 0


def test_a_binary_stream_through_cat_arrives_byte_identical(duo: Fleet) -> None:
    payload = os.urandom(50 * 1024 * 1024)
    proc = piped(duo, "n1", "--", "cat")
    assert proc.stdin is not None and proc.stdout is not None

    def feed() -> None:
        assert proc.stdin is not None
        for start in range(0, len(payload), 1 << 20):
            proc.stdin.write(payload[start : start + (1 << 20)])
        proc.stdin.close()  # EOF must reach cat's stdin, or cat never ends

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    digest, size = hashlib.sha256(), 0
    while chunk := proc.stdout.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    writer.join(30)
    assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    assert size == len(payload)
    assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()


def test_two_concurrent_sessions_do_not_mix_bytes(duo: Fleet) -> None:
    size = 4 * 1024 * 1024
    runs = [("n1", "A"), ("n1", "B"), ("n2", "C")]

    def session(node: str, letter: str) -> tuple[int, bytes]:
        proc = piped(duo, node, "--", "sh", "-c", f"yes {letter * 7} | head -c {size}")
        out, _ = proc.communicate(timeout=120)
        return proc.returncode, out

    with ThreadPoolExecutor(len(runs)) as pool:
        results = list(pool.map(lambda r: session(*r), runs))
    for (_node, letter), (code, out) in zip(runs, results, strict=True):
        assert code == 0
        assert len(out) == size
        line = (letter * 7 + "\n").encode()
        assert out == (line * (size // len(line) + 1))[:size]


def test_killing_the_daemon_restores_the_terminal_and_says_so(duo: Fleet) -> None:
    outer = pexpect.spawn(
        "bash",
        ["--norc", "--noprofile"],
        env={**duo.env(duo.daemon_home), "PS1": "outer$ "},
        timeout=TIMEOUT,
    )
    outer.expect_exact("outer$ ")
    outer.sendline("stty -g")
    outer.expect(STTY)
    before = outer.match.group(1)
    outer.sendline(" ".join([*GDOS, "shell", "n1"]))
    outer.sendline("echo in-$((2*3))")
    outer.expect(out("in-6"))
    attrs = termios.tcgetattr(outer.child_fd)  # the outer pty, as the CLI left it
    assert not attrs[3] & (termios.ICANON | termios.ECHO), "the CLI is not in raw mode"
    duo.stop_daemon(signal.SIGKILL)
    outer.expect("lost the connection to the gdos daemon")
    outer.expect_exact("outer$ ")
    outer.sendline("echo rc=$?")
    outer.expect(r"rc=(\d+)")
    assert outer.match.group(1) == b"255"
    outer.sendline("stty -g")
    outer.expect(STTY)
    assert outer.match.group(1) == before
    outer.sendline("exit")
    outer.expect(pexpect.EOF)


def test_a_lost_node_ends_the_session_with_a_clear_message(duo: Fleet) -> None:
    child = shell(duo, "n2")
    child.sendline("echo up-$((3*3))")
    child.expect(out("up-9"))
    duo.agents["n2"].kill()
    child.expect("node n2 went offline; the shell session is over")
    assert exit_status(child) == 255


def test_closing_the_cli_kills_the_remote_process_group(duo: Fleet) -> None:
    pidfile = short_home("gx-") / "pid"
    proc = piped(duo, "n1", "--", "sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait")
    grandchild = int(wait_for(lambda: pidfile.read_text().strip(), what="the remote sleep"))
    proc.kill()
    proc.wait(10)
    wait_for(lambda: not _alive(grandchild), TIMEOUT, "the remote process group killed")
    sessions = duo.gdos_json("audit", "sessions")
    assert sessions[0]["status"] == "closed"


def test_refusals_are_clear(duo: Fleet) -> None:
    unknown = gdos_quiet(duo, "shell", "ghost", "--", "true")
    assert unknown.returncode == 4 and "error[node_unknown]" in unknown.stderr
    assert duo.gdos("node", "disable", "n1").returncode == 0
    disabled = gdos_quiet(duo, "shell", "n1", "--", "true")
    assert disabled.returncode == 1, disabled.stderr
    assert "error[node_disabled]" in disabled.stderr and "gdos node enable n1" in disabled.stderr
    # maintenance (drain) still allows shells: operators need them to fix the node
    assert duo.gdos("node", "drain", "n2").returncode == 0
    drained = gdos_quiet(duo, "shell", "n2", "--", "echo", "fixing")
    assert drained.returncode == 0 and drained.stdout == "fixing\n", drained.stderr
    missing = gdos_quiet(duo, "shell", "n2", "--user", "no-such-user", "--", "true")
    assert missing.returncode == 1
    code = "user_unknown" if os.geteuid() == 0 else "not_permitted"
    assert f"error[{code}]" in missing.stderr
    not_found = gdos_quiet(duo, "shell", "n2", "--", "definitely-not-a-command")
    assert not_found.returncode == 127 and "command not found" in not_found.stderr
    duo.agents["n2"].kill()
    duo.wait_offline("n2")
    offline = gdos_quiet(duo, "shell", "n2", "--", "true")
    assert offline.returncode == 1 and "error[node_offline]" in offline.stderr


def test_idle_timeout_closes_the_session(duo: Fleet) -> None:
    result = gdos_quiet(duo, "shell", "n1", "--idle-timeout", "1", "--", "sleep", "300")
    assert result.returncode == 255
    assert "error[idle_timeout]" in result.stderr
    assert duo.gdos_json("audit", "sessions")[0]["status"] == "timed_out"


def test_sessions_are_recorded_and_replay(duo: Fleet) -> None:
    child = shell(duo, "n1")
    child.sendline("echo REC-$((6*7))")
    child.expect(out("REC-42"))
    child.sendline("exit 0")
    assert exit_status(child) == 0
    session = duo.gdos_json("audit", "sessions")[0]
    assert session["node"] == "n1" and session["status"] == "exited"
    assert session["exit_code"] == 0 and session["user"] and session["ended"]
    listing = gdos_quiet(duo, "audit", "sessions")
    assert listing.returncode == 0 and "(login shell)" in listing.stdout
    replay = gdos_quiet(duo, "audit", "replay", str(session["id"]), "--speed", "100")
    assert replay.returncode == 0, replay.stderr
    assert "echo REC-$((6*7))" in replay.stdout and "REC-42" in replay.stdout
    events = _cast(duo, session["id"])
    assert events and {e[1] for e in events} == {"o"}  # input is not recorded by default
    assert duo.gdos_json("audit", "sessions")[0]["cast"].endswith(f"{session['id']}.cast")
    missing = gdos_quiet(duo, "audit", "replay", "999")
    assert missing.returncode == 4 and "error[session_unknown]" in missing.stderr


def test_input_is_recorded_when_the_operator_enables_it(duo: Fleet) -> None:
    duo.stop_daemon()
    duo.start_daemon("--record-input")
    duo.wait_online("n1")
    result = subprocess.run(
        [*GDOS, "shell", "n1", "--", "cat"],
        env=duo.env(duo.daemon_home),
        input=b"typed-by-the-operator\n",
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout == b"typed-by-the-operator\n"
    events = _cast(duo, duo.gdos_json("audit", "sessions")[0]["id"])
    assert [e[2] for e in events if e[1] == "i"] == ["typed-by-the-operator\n"]


def _cast(fleet: Fleet, session_id: int) -> list[list[object]]:
    """The events of a recording, checking it is valid asciicast v2.

    The daemon journals a session while it runs and converts the journal to
    asciicast in the background once it ends.
    """
    path = fleet.daemon_home / "state" / "sessions" / f"{session_id}.cast"
    wait_for(path.exists, TIMEOUT, "the recording to be converted")
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and header["width"] > 0 and header["height"] > 0
    assert isinstance(header["timestamp"], int) and "TERM" in header["env"]
    events = [json.loads(line) for line in lines[1:]]
    times = [e[0] for e in events]
    assert times == sorted(times) and all(isinstance(e[2], str) for e in events)
    return events


def test_a_stopped_terminal_throttles_the_remote_program(duo: Fleet) -> None:
    """Output credit end to end: a frozen CLI blocks the remote writer; memory stays flat."""
    import psutil

    progress = short_home("gx-") / "progress"
    chunks, size = 800, 65536  # 50 MiB in all
    writer = (
        f"import sys\nfor i in range({chunks}):\n    sys.stdout.write('x' * {size - 1} + "
        f"'\\n'); sys.stdout.flush(); open('{progress}', 'w').write(str(i + 1))"
    )
    assert duo.daemon is not None
    daemon = psutil.Process(duo.daemon.popen.pid)
    baseline = daemon.memory_info().rss
    proc = piped(duo, "n1", "--", sys.executable, "-c", writer)
    wait_for(progress.exists, what="the remote writer to start")
    proc.send_signal(signal.SIGSTOP)
    try:
        written = wait_for(lambda: unchanged_for(progress, 1.5), 30, "the writer to block")
        assert written < chunks, "the writer was never slowed down"
        grown = daemon.memory_info().rss - baseline
        assert grown < 32 * 1024 * 1024, f"daemon grew by {grown} bytes"
    finally:
        proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert len(out) == chunks * size


def test_a_program_that_does_not_read_stops_the_sender(duo: Fleet) -> None:
    """Input credit end to end: input stalls a few MiB in, nothing queues without bound."""
    proc = piped(duo, "n1", "--", "sleep", "300")
    assert proc.stdin is not None
    sent = [0]

    def feed() -> None:
        block = b"y" * 65536
        try:
            while sent[0] < 200 * 1024 * 1024:
                proc.stdin.write(block)  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                sent[0] += len(block)
        except (BrokenPipeError, ValueError):
            pass

    threading.Thread(target=feed, daemon=True).start()
    stalled = wait_for(lambda: _still(sent, 1.5), 30, "the sender to stall")
    assert stalled < 16 * 1024 * 1024, f"{stalled} bytes went out to a program that never reads"
    proc.kill()
    proc.wait(10)


def _still(counter: list[int], seconds: float) -> int | None:
    first = counter[0]
    time.sleep(seconds)
    return first if counter[0] == first and first > 0 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return False
