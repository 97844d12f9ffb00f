"""``gdos logs`` end to end: a real daemon, real agents, real services and files."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from gdos.agent import logfiles

from tests.harness import Fleet, short_home, wait_for
from tests.integration.services_kit import ok, package, wait_state

COUNTER = f"""#!{sys.executable}
import sys, time
for i in range(1, 301):
    print("count", i)
print("a warning", file=sys.stderr)
sys.stdout.flush()
sys.stderr.flush()
time.sleep(3600)
"""


@pytest.fixture
def log_root() -> Iterator[Path]:
    root = short_home("lr-")
    try:
        yield root
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def one_agent(fleet: Fleet, root: Path, name: str = "n1") -> int:
    """Start an agent allowed to read ``root``; returns its pid."""
    proc = fleet.start_agent(name, "--log-root", str(root), join=fleet.token())
    fleet.wait_online(name)
    return proc.popen.pid


def deploy_counter(fleet: Fleet, tmp: Path, *nodes: str) -> None:
    ok(fleet.gdos("package", "push", str(package(tmp, "counter", COUNTER))))
    ok(fleet.gdos("system", "create", "app"))
    ok(fleet.gdos("system", "add", "app", "counter", "--package", "counter"))
    node_args = [arg for node in nodes for arg in ("--node", node)]
    ok(fleet.gdos("deploy", "app/counter", *node_args, "--wait"))
    ok(fleet.gdos("start", "app"))
    for node in nodes:
        wait_state(fleet, f"app/counter@{node}", "running")


class Follow:
    """``gdos logs ... -f`` as a subprocess whose stdout lines arrive on a queue."""

    def __init__(self, fleet: Fleet, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gdos.cli.main", "logs", *args, "-f"],
            env=fleet.env(fleet.daemon_home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode().rstrip("\n"))

    def expect(self, wanted: list[str], timeout: float = 10.0) -> None:
        """The next lines printed are exactly ``wanted``."""
        deadline = time.monotonic() + timeout
        for line in wanted:
            try:
                got = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"waited for {line!r}; gdos logs printed nothing") from None
            assert got == line

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(10)


def append(path: Path, lines: list[str]) -> None:
    with open(path, "a") as handle:
        handle.write("".join(line + "\n" for line in lines))


def open_paths(pid: int) -> set[str]:
    return {f.path for f in psutil.Process(pid).open_files()}


def test_tail_grep_and_merge_of_a_service_stdout(fleet: Fleet, tmp_path: Path) -> None:
    token = fleet.token()
    for name in ("n1", "n2"):
        fleet.start_agent(name, join=token)
    fleet.wait_online("n1", "n2")
    deploy_counter(fleet, tmp_path, "n1", "n2")
    wait_for(
        lambda: fleet.gdos("logs", "app/counter@n1", "-n", "1").stdout == "count 300\n",
        what="the service's 300 lines in its stdout",
    )
    assert (
        ok(fleet.gdos("logs", "app/counter@n1", "-n", "3")) == "count 298\ncount 299\ncount 300\n"
    )
    assert ok(fleet.gdos("logs", "app/counter@n2", "--file", "stderr")) == "a warning\n"
    assert ok(fleet.gdos("logs", "app/counter@n1", "--grep", r"^count 2\d5$", "-n", "2")) == (
        "count 285\ncount 295\n"
    )
    wait_for(lambda: fleet.gdos("logs", "app/counter@n2", "-n", "1").stdout == "count 300\n")
    merged = ok(fleet.gdos("logs", "app", "-n", "1")).splitlines()
    assert sorted(merged) == ["n1 app/counter | count 300", "n2 app/counter | count 300"]
    rows = [
        json.loads(line)
        for line in ok(fleet.gdos("logs", "app/counter", "-n", "2", "--json")).splitlines()
    ]
    assert {(r["node"], r["instance"], r["file"]) for r in rows} == {
        ("n1", "app/counter", "stdout"),
        ("n2", "app/counter", "stdout"),
    }
    assert all(isinstance(r["ts"], float) for r in rows) and len(rows) == 4
    unknown = fleet.gdos("logs", "app/counter@n1", "--file", "nope")
    assert unknown.returncode != 0 and "use --file with one of: stdout, stderr" in unknown.stderr
    node = fleet.gdos("logs", "n1")
    assert node.returncode != 0 and "--path" in node.stderr


def test_follow_across_rename_and_copytruncate_rotation(fleet: Fleet, log_root: Path) -> None:
    agent = one_agent(fleet, log_root)
    log = log_root / "app.log"
    append(log, ["old 1", "old 2"])
    follow = Follow(fleet, "n1", "--path", str(log), "-n", "1")
    try:
        follow.expect(["old 2"])
        append(log, ["live 1", "live 2"])
        follow.expect(["live 1", "live 2"])
        os.rename(log, log_root / "app.log.1")  # rename + create
        append(log_root / "app.log.1", ["late to the old file"])
        append(log, ["renamed 1"])
        follow.expect(["late to the old file", "renamed 1"])
        append(log, ["renamed 2"])
        follow.expect(["renamed 2"])
        logfiles.rotate(log, backups=2)  # copytruncate, as the supervisor does
        append(log, ["truncated 1", "truncated 2"])
        follow.expect(["truncated 1", "truncated 2"])
        assert str(log) in open_paths(agent)
    finally:
        follow.stop()
    wait_for(lambda: str(log) not in open_paths(agent), what="the agent closed the file")


def test_follow_ends_when_the_node_goes_offline(fleet: Fleet, log_root: Path) -> None:
    one_agent(fleet, log_root)
    log = log_root / "app.log"
    append(log, ["hello"])
    follow = Follow(fleet, "n1", "--path", str(log))
    follow.expect(["hello"])
    fleet.agents["n1"].send(signal.SIGSTOP)  # silent, like a lost machine
    try:
        follow.proc.wait(15)
    finally:
        fleet.agents["n1"].send(signal.SIGCONT)
    assert follow.proc.stderr is not None
    stderr = follow.proc.stderr.read().decode()
    assert follow.proc.returncode != 0
    assert "node_offline" in stderr and "n1" in stderr and "went offline" in stderr


def test_grep_of_a_large_file_keeps_the_agent_memory_flat(fleet: Fleet, log_root: Path) -> None:
    agent = one_agent(fleet, log_root)
    log = log_root / "big.log"
    filler = b"".join(
        b"2024-05-01T10:00:00Z INFO request %06d served in 3ms\n" % i for i in range(20_000)
    )
    with open(log, "wb") as handle:
        for block in range(200 * 1024 * 1024 // len(filler) + 1):
            handle.write(filler)
            handle.write(b"2024-05-01T10:00:01Z ERROR needle %d\n" % block)
    assert log.stat().st_size > 200 * 1024 * 1024
    process = psutil.Process(agent)
    before = process.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        found = ok(fleet.gdos("logs", "n1", "--path", str(log), "--grep", r"ERROR needle \d+$"))
        tail = ok(fleet.gdos("logs", "n1", "--path", str(log), "-n", "2"))
    finally:
        done.set()
        sampler.join()
    blocks = 200 * 1024 * 1024 // len(filler) + 1
    assert found.splitlines() == [f"2024-05-01T10:00:01Z ERROR needle {b}" for b in range(blocks)]
    assert tail.splitlines()[-1] == f"2024-05-01T10:00:01Z ERROR needle {blocks - 1}"
    assert peak[0] - before < 50 * 1024 * 1024, f"agent RSS grew {(peak[0] - before) >> 20} MiB"


def test_paths_outside_the_log_roots_are_refused(fleet: Fleet, log_root: Path) -> None:
    one_agent(fleet, log_root)
    outside = log_root.parent / f"{log_root.name}-secret"
    outside.write_text("secret\n")
    try:
        (log_root / "escape.log").symlink_to(outside)
        for path in (str(outside), str(log_root / "escape.log"), f"{log_root}/../x"):
            result = fleet.gdos("logs", "n1", "--path", path)
            assert result.returncode != 0 and result.stdout == ""
            assert "path_not_allowed" in result.stderr, result.stderr
        result = fleet.gdos("logs", "n1", "--path", str(outside))
        assert "--log-root" in result.stderr and "resolves" not in result.stderr
        result = fleet.gdos("logs", "n1", "--path", str(log_root / "escape.log"))
        assert f"resolves to {outside}" in result.stderr
        missing = fleet.gdos("logs", "n1", "--path", str(log_root / "missing.log"))
        assert missing.returncode == 4 and "log_not_found" in missing.stderr
    finally:
        outside.unlink()
