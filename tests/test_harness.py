"""The test harness itself: what a Fleet starts, it kills, and nothing else.

A leaked daemon or agent keeps a port, a CPU share and sometimes a service of
another run busy; a teardown that kills a reused pid kills someone else's
process. These tests use plain sleeping processes, not gdos, so they are cheap.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import tests.harness
from tests.harness import Fleet, Proc, kill_instances, short_home

SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]


@pytest.fixture
def home() -> Iterator[Path]:
    path = short_home("gh-")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def sleeper() -> subprocess.Popen[bytes]:
    """A process leading a session and group of its own, like a service the agent starts."""
    return subprocess.Popen(SLEEP, start_new_session=True)


def ended(proc: Proc | subprocess.Popen[bytes]) -> bool:
    popen = proc.popen if isinstance(proc, Proc) else proc
    try:
        popen.wait(10)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_a_daemon_that_never_answers_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The start-up wait fails; the daemon process must not outlive the fleet."""
    monkeypatch.setattr(tests.harness, "START_WAIT", 0.5)
    fleet = Fleet(daemon_wrap=SLEEP)  # argv after the wrap is ignored: it just sleeps
    with pytest.raises(AssertionError, match="daemon answering"), fleet:
        fleet.start_daemon()
    assert fleet.daemon is not None and ended(fleet.daemon)


def test_close_kills_replaced_processes_and_background_clis() -> None:
    """A restarted daemon or agent leaves its predecessor in ``started``; close kills both."""
    fleet = Fleet()
    first = fleet.agents["n1"] = fleet._spawn("n1", SLEEP, fleet.daemon_home)
    second = fleet.agents["n1"] = fleet._spawn("n1", SLEEP, fleet.daemon_home)
    follow = fleet.gdos_background("--help")
    follow.communicate(timeout=60)  # a background CLI the test ended itself
    hanging = subprocess.Popen(SLEEP, text=True)
    fleet.background.append(hanging)  # one it did not
    fleet.close()
    assert ended(first) and ended(second) and ended(hanging)


def test_close_kills_a_process_a_test_registered_itself() -> None:
    """Tests that spawn an agent their own way put it in ``agents``: it must not leak
    (test_keys' join-token agents outlived their fleet)."""
    fleet = Fleet()
    log = fleet.daemon_home / "own.log"
    with log.open("w") as out:
        popen = subprocess.Popen(SLEEP, stdout=out, stderr=out, start_new_session=True)
    fleet.agents["own"] = own = Proc("own", popen, fleet.daemon_home, log)
    fleet.close()
    assert ended(own)


def _pid_file(home: Path, proc: subprocess.Popen[bytes], shift: float = 0.0) -> None:
    folder = home / "state/agent/instances/shop/web"
    folder.mkdir(parents=True, exist_ok=True)
    created = psutil.Process(proc.pid).create_time() + shift
    (folder / "pid.json").write_text(json.dumps({"pid": proc.pid, "create_time": created}))


def test_kill_instances_kills_the_recorded_process(home: Path) -> None:
    proc = sleeper()
    _pid_file(home, proc)
    kill_instances(home)
    assert ended(proc)


def test_kill_instances_spares_a_reused_pid(home: Path) -> None:
    """Same pid, another start time: another process now, left alone."""
    proc = sleeper()
    try:
        _pid_file(home, proc, shift=-5.0)
        kill_instances(home)
        assert not ended_soon(proc)
    finally:
        proc.kill()
        proc.wait()


def test_kill_instances_spares_the_group_of_an_adopted_process(home: Path) -> None:
    """An adopted process in a group it does not lead: only it dies, not its group."""
    leader = subprocess.Popen(SLEEP, process_group=0)  # a group of its own, in our session
    member = subprocess.Popen(SLEEP, process_group=leader.pid)
    try:
        _pid_file(home, member)
        kill_instances(home)
        assert ended(member)
        assert not ended_soon(leader)
    finally:
        leader.kill()
        leader.wait()


def ended_soon(proc: subprocess.Popen[bytes]) -> bool:
    """Whether ``proc`` exits within a second (a process left alone keeps sleeping)."""
    try:
        proc.wait(1)
    except subprocess.TimeoutExpired:
        return False
    return True
