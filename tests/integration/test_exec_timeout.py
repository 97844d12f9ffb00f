"""An exec timeout ends the whole process group, also when a shell forked the sleeper.

The figure (how close the end is to the deadline) is measured by hand with
``python bench/exec_timeout.py``; here only the outcome is checked.
"""

from __future__ import annotations

import json
import os

import psutil
import pytest

from tests.harness import Fleet


def _running_in_group(pgid: int) -> list[int]:
    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                found.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


@pytest.mark.parametrize(
    "script",
    ["echo pg $$; exec sleep 100", "echo pg $$; sleep 1; echo a; sleep 100"],
    ids=["plain-sleep", "shell-with-child"],
)
def test_timeout_ends_the_task_and_its_whole_group(fleet: Fleet, script: str) -> None:
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    result = fleet.gdos("exec", "n1", "--timeout", "2s", "--json", "--", "sh", "-c", script)
    assert result.returncode == 7, result.stderr
    host = json.loads(result.stdout)["hosts"][0]
    assert host["status"] == "timed_out" and "process group killed" in host["reason"]
    pgid = int(host["stdout"].split()[1])
    assert _running_in_group(pgid) == []
