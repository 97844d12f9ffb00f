"""agent/procs.py: what counts as a running group, and which processes answer to a name."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from gdos.agent.instances import Instance
from gdos.agent.procs import (
    ProcRef,
    group_alive,
    is_alive,
    kill_group,
    proc_ref,
    start_ticks,
)


def test_a_group_of_zombies_is_not_alive() -> None:
    """An unreaped member has exited; waiting for it to be reaped overran exec timeouts."""
    child = subprocess.Popen(["sleep", "100"], start_new_session=True)
    try:
        os.killpg(child.pid, signal.SIGKILL)
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, still unreaped
        assert group_alive(child.pid) is False
    finally:
        child.kill()
        child.wait()


def test_a_running_group_is_alive_until_killed() -> None:
    child = subprocess.Popen(["sh", "-c", "sleep 100 & sleep 100"], start_new_session=True)
    try:
        assert group_alive(child.pid) is True
        asyncio.run(kill_group(child.pid))
        child.wait(10)
        assert group_alive(child.pid) is False
    finally:
        child.kill()
        child.wait()


def test_a_gdos_adopt_command_line_is_not_the_process_it_names() -> None:
    from gdos.agent.procs import name_matches

    adopt = ["python3", "/usr/bin/gdos", "adopt", "n1", "--process-name", "worker.py"]
    assert not name_matches("worker.py", "python3", adopt)
    assert not name_matches("worker.py", "gdos", ["gdos", "adopt", "--process-name=worker.py"])
    assert name_matches("worker.py", "python3", ["python3", "/srv/app/worker.py"])
    assert name_matches("nginx", "nginx: master", ["nginx:", "master", "process", "/sbin/nginx"])


# -- identity across wall-clock steps, pid reuse and reboots ---------------------


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "100"])


def _step_wall_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """What an NTP step does to psutil: the boot time, read from the wall clock, moves."""
    import psutil._pslinux as pslinux

    booted = pslinux.boot_time()
    monkeypatch.setattr(pslinux, "boot_time", lambda: booted + seconds)


def test_a_process_stays_itself_when_the_wall_clock_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Compared as wall time, every supervised process looked dead after an NTP step
    (and was started a second time beside itself)."""
    child = _sleeper()
    try:
        ref = proc_ref(child.pid)
        assert ref is not None and ref.ticks is not None
        _step_wall_clock(monkeypatch, 2.0)
        moved = proc_ref(child.pid)
        assert moved is not None and abs(moved.create_time - ref.create_time) > 1.5
        assert is_alive(ref)
    finally:
        child.kill()
        child.wait()


def test_a_reused_pid_is_another_process() -> None:
    child = _sleeper()
    try:
        ref = proc_ref(child.pid)
        assert ref is not None and ref.ticks is not None
        assert not is_alive(ProcRef(ref.pid, ref.create_time, ref.ticks - 1))
        assert is_alive(ProcRef(ref.pid, ref.create_time))  # no ticks: wall time, with slack
        assert not is_alive(ProcRef(ref.pid, ref.create_time - 1.0))
    finally:
        child.kill()
        child.wait()


def test_start_ticks_reads_past_a_command_name_with_spaces_and_parentheses(
    tmp_path: Path,
) -> None:
    odd = tmp_path / "a) b (c"
    odd.symlink_to("/bin/sleep")
    child = subprocess.Popen([str(odd), "100"])
    try:
        ref = proc_ref(child.pid)
        assert ref is not None
        assert start_ticks(child.pid) == ref.ticks
        assert start_ticks(2**22 + 7) is None  # no such pid
    finally:
        child.kill()
        child.wait()


def _instance(tmp_path: Path, child: subprocess.Popen[bytes]) -> Instance:
    inst = Instance("shop/web", tmp_path / "shop" / "web", {"kind": "managed"})
    inst.home.mkdir(parents=True)
    inst.main, inst.started = proc_ref(child.pid), time.time()
    inst.write_pid_file()
    return inst


def test_pid_json_names_its_process_across_a_clock_step_but_not_another_boot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    child = _sleeper()
    try:
        inst = _instance(tmp_path, child)
        _step_wall_clock(monkeypatch, -3.0)
        found = inst.read_pid_file()
        assert found is not None and found[0].pid == child.pid
        pid_file = inst.home / "pid.json"
        data = json.loads(pid_file.read_text())
        pid_file.write_text(json.dumps({**data, "boot_id": "another-boot"}))
        assert inst.read_pid_file() is None
    finally:
        child.kill()
        child.wait()


def test_pid_json_of_an_older_agent_is_still_read(tmp_path: Path) -> None:
    """Written before ticks and boot ids: pid and wall-clock start, compared with slack."""
    child = _sleeper()
    try:
        inst = _instance(tmp_path, child)
        pid_file = inst.home / "pid.json"
        data = json.loads(pid_file.read_text())
        legacy = {k: data[k] for k in ("pid", "create_time", "started")}
        pid_file.write_text(json.dumps(legacy))
        found = inst.read_pid_file()
        assert found is not None and found[0].pid == child.pid and found[0].ticks is None
    finally:
        child.kill()
        child.wait()
