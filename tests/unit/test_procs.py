"""agent/procs.py: what counts as a running group, and which processes answer to a name."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

from gdos.agent.procs import group_alive, kill_group


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
