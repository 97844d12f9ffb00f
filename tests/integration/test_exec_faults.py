"""Exec under faults: a daemon killed mid-task and a full disk lose no result.

The full-disk test puts the daemon's GDOS_HOME on a small tmpfs (needs root
for ``mount``; skipped with the reason otherwise), fills it while commands
run, and checks that callers get ``error[storage_failed]`` meanwhile, reads
keep working, and every result is stored once space returns.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.disk import fill, small_disk_fleet
from tests.harness import Fleet, short_home, wait_for

AGENTS = 20
BIG = 300_000  # bytes of output per host: more than a full disk can take


def _exec(fleet: Fleet, *args: str) -> subprocess.Popen[str]:
    return fleet.gdos_background("exec", *args)


def _gated(gate: Path, then: str) -> str:
    """A command that says it started (``gate/PID``), waits for ``gate/go-PID``, runs ``then``."""
    return f"touch {gate}/$$; while [ ! -e {gate}/go-$$ ]; do sleep 0.1; done; {then}"


def _started(gate: Path) -> list[Path]:
    return [p for p in gate.iterdir() if not p.name.startswith("go-")]


def _release(markers: list[Path]) -> None:
    for marker in markers:
        (marker.parent / f"go-{marker.name}").touch()


def _finished_task(fleet: Fleet, task_id: int, timeout: float = 120) -> Any:
    def done() -> Any:
        task = fleet.gdos_json("task", "show", str(task_id))
        return task if task["status"] != "running" else None

    return wait_for(done, timeout, f"task {task_id} finished")


def test_daemon_killed_mid_exec_on_20_agents_every_host_ends(fleet: Fleet) -> None:
    token = fleet.token("--uses", str(AGENTS))
    names = [f"n{i:02d}" for i in range(AGENTS)]
    for name in names:
        fleet.start_agent(name, join=token)
    fleet.wait_online(*names, timeout=180)
    gate = short_home("gx-")
    fleet.homes.append(gate)
    cli = _exec(fleet, "--all", "--shell", "--timeout", "300", "--", _gated(gate, "echo done"))
    markers = wait_for(lambda: len(m := _started(gate)) == AGENTS and m, 120, "all started")
    task_id = fleet.gdos_json("task", "list")[0]["id"]
    _release(markers[: AGENTS // 2])
    # Kill once some results are stored while others are on their way or not yet made.
    wait_for(
        lambda: any(
            h["status"] == "succeeded"
            for h in fleet.gdos_json("task", "show", str(task_id))["hosts"]
        ),
        60,
        "a first result stored",
    )
    fleet.stop_daemon(signal.SIGKILL)
    cli.communicate(timeout=30)
    assert cli.returncode == 3  # the CLI reports the lost daemon
    _release(markers[AGENTS // 2 :])  # these finish while the daemon is down
    fleet.start_daemon()
    task = _finished_task(fleet, task_id)
    hosts = {h["node"]: h for h in task["hosts"]}
    assert set(hosts) == set(names)
    assert {h["status"] for h in hosts.values()} == {"succeeded"}, hosts
    assert {h["stdout"] for h in hosts.values()} == {"done\n"}
    assert task["status"] == "succeeded"


# -- full disk ----------------------------------------------------------------------------


@pytest.fixture
def full_disk_fleet() -> Iterator[Fleet]:
    """A daemon whose whole GDOS_HOME is a 32 MiB tmpfs the test can fill."""
    with small_disk_fleet() as fleet:
        yield fleet


def test_full_disk_mid_task_loses_no_result(full_disk_fleet: Fleet) -> None:
    fleet = full_disk_fleet
    token = fleet.token("--uses", "3")
    fleet.start_agent("n1", join=token)
    fleet.start_agent("n2", join=token)
    fleet.wait_online("n1", "n2")
    gate = short_home("gx-")
    fleet.homes.append(gate)
    big = f"head -c {BIG} /dev/zero | tr '\\0' a"
    cli = _exec(fleet, "--all", "--shell", "--json", "--", _gated(gate, big))
    markers = wait_for(lambda: len(m := _started(gate)) == 2 and m, 60, "both started")
    task_id = fleet.gdos_json("task", "list")[0]["id"]
    filler = fill(fleet.daemon_home)
    try:
        refused = fleet.gdos("exec", "n1", "--", "true")
        assert refused.returncode == 1, refused.stderr
        assert refused.stderr.startswith("error[storage_failed]: could not write ")
        assert "gdos.db" in refused.stderr and "No space left on device" in refused.stderr
        # an agent enrolling meanwhile is answered, not left waiting in silence
        late = fleet.start_agent("n3", join=token)
        wait_for(lambda: "error[storage_failed]" in late.log_text(), 60, "n3 told of the disk")
        _release(markers)

        def waiting() -> Any:
            info = fleet.gdos_json("daemon", "status")
            return info if info["unsaved_rows"] >= 2 else None

        info = wait_for(waiting, 60, "both results held, waiting for the disk")
        assert "No space left on device" in info["storage_error"]
        status = fleet.gdos("daemon", "status")
        assert "storage:    FAILING" in status.stdout
        assert fleet.gdos_json("task", "show", str(task_id))["status"] == "running"  # reads work
        assert cli.poll() is None  # still waiting for results, not told a lie
    finally:
        os.unlink(filler)
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    assert "waiting: error[storage_failed]: could not write" in err  # told why it waited
    hosts = {h["node"]: h for h in json.loads(out)["hosts"]}
    assert {h["status"] for h in hosts.values()} == {"succeeded"}
    assert {len(h["stdout"]) for h in hosts.values()} == {BIG}
    assert fleet.gdos_json("daemon", "status")["storage_error"] is None
    fleet.wait_online("n3", timeout=90)  # it asks again and enrolls once space returned


def test_result_kept_by_the_agent_while_the_deadline_passed_with_the_daemon_down(
    fleet: Fleet,
) -> None:
    agent = fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    gate = short_home("gx-")
    fleet.homes.append(gate)
    cli = _exec(fleet, "n1", "--shell", "--timeout", "10", "--", _gated(gate, "echo done"))
    markers = wait_for(lambda: len(m := _started(gate)) == 1 and m, 60, "command started")
    task_id = fleet.gdos_json("task", "list")[0]["id"]
    fleet.stop_daemon(signal.SIGKILL)
    cli.communicate(timeout=30)
    _release(markers)  # succeeds at once; the agent keeps the result for the daemon
    # The daemon stays down past the host's deadline (timeout + grace).
    db = sqlite3.connect(fleet.daemon_home / "state" / "gdos.db")
    (deadline,) = db.execute(
        "SELECT deadline FROM task_hosts WHERE task_id = ?", [task_id]
    ).fetchone()
    db.close()
    wait_for(lambda: time.time() > deadline, 120, "the host's deadline passed")
    agent.send(signal.SIGSTOP)  # back only once the restarted daemon has looked at the task
    try:
        fleet.start_daemon("--offline-after", "120")
        host = fleet.gdos_json("task", "show", str(task_id))["hosts"][0]
        assert host["status"] == "running"  # not given up while its agent may still reconnect
    finally:
        agent.send(signal.SIGCONT)
    task = _finished_task(fleet, task_id)
    host = task["hosts"][0]
    assert (host["status"], host["stdout"], host["reason"]) == ("succeeded", "done\n", None)
    assert task["status"] == "succeeded"
