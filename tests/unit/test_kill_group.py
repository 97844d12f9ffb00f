"""Ending a process group: what counts as still running."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

from agent.procs import group_alive, kill_group


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
