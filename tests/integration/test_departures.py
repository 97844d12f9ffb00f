"""An agent that leaves is offline at once, not after --offline-after of silence.

The daemon runs with --offline-after 120 so the silence sweep cannot be what
marks the node offline within the tests' (much shorter) deadlines.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.harness import Fleet, short_home, wait_for

PATIENT = ("--offline-after", "120")
DEADLINE = 30.0  # far below 120 s: only a goodbye or a closed connection gets there


@pytest.fixture
def patient() -> Iterator[Fleet]:
    with Fleet() as fleet:
        fleet.start_daemon(*PATIENT)
        yield fleet


def test_agent_stopped_with_sigterm_says_goodbye_and_is_offline(patient: Fleet) -> None:
    agent = patient.start_agent("n1", join=patient.token())
    patient.wait_online("n1")
    agent.send(signal.SIGTERM)
    assert agent.popen.wait(DEADLINE) == 0
    patient.wait_offline("n1", timeout=DEADLINE)
    assert "said goodbye" in patient.daemon.log_text()  # type: ignore[union-attr]
    assert patient.gdos("exec", "n1", "--", "true").returncode == 6
    patient.start_agent("n1", home=agent.home)
    patient.wait_online("n1")
    assert patient.gdos("exec", "n1", "--", "true").returncode == 0


def test_agent_killed_is_offline_once_its_connection_closes(patient: Fleet) -> None:
    token = patient.token()
    agent = patient.start_agent("n1", join=token)
    patient.start_agent("n2", join=token)
    patient.wait_online("n1", "n2")
    wait_for(lambda: patient.nodes()["n1"]["cpu_percent"] is not None, what="n1's load")
    agent.kill(signal.SIGKILL)  # no goodbye: the kernel closes the TCP connection
    patient.wait_offline("n1", timeout=DEADLINE)
    assert "n1 offline (connection closed)" in patient.daemon.log_text()  # type: ignore[union-attr]
    assert patient.nodes()["n2"]["online"] is True
    # an offline node's last load is not shown as its load now
    wait_for(lambda: patient.nodes()["n2"]["cpu_percent"] is not None, what="n2's load")
    n1 = patient.nodes()["n1"]
    assert [n1[k] for k in ("cpu_percent", "mem_percent", "load1", "disk_percent")] == [None] * 4
    row = next(line for line in patient.gdos("node", "list").stdout.splitlines() if "n1" in line)
    assert row.split()[3:7] == ["-", "-", "-", "-"]
    assert patient.gdos_json("node", "show", "n1")["metrics"]  # the last sample, with its time
    top = {row["node"]: row for row in patient.gdos_json("top", "--once")}
    assert top["n1"]["ts"] is None and "cpu" not in top["n1"] and "cpu" in top["n2"]
    patient.start_agent("n1", home=agent.home)
    patient.wait_online("n1")
    assert patient.gdos("exec", "n1", "n2", "--", "true").returncode == 0


def test_agent_stopped_mid_exec_ends_the_command_and_reports_it(patient: Fleet) -> None:
    agent = patient.start_agent("n1", join=patient.token())
    patient.wait_online("n1")
    marker = short_home("gx-") / "started"
    patient.homes.append(marker.parent)
    command = f"touch {marker}; sleep 300"
    cli = subprocess.Popen(
        [sys.executable, "-m", "gdos.cli.main", "exec", "n1", "--json", "--shell", "--", command],
        env=patient.env(patient.daemon_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(marker.exists, DEADLINE, "command started")
    agent.send(signal.SIGTERM)
    out, err = cli.communicate(timeout=DEADLINE)  # not after the 300 s timeout
    assert cli.returncode == 130, out + err
    host = json.loads(out)["hosts"][0]
    assert host["status"] == "canceled"
    assert host["reason"] == "the agent was stopped while the command ran; process group killed"
    patient.wait_offline("n1", timeout=DEADLINE)
