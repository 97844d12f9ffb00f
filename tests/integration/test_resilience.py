"""Restarts and failures: nothing stored is lost, every host ends in a definite state."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.harness import Fleet, short_home, wait_for


def test_agent_killed_and_restarted_comes_back_online(fleet: Fleet) -> None:
    agent = fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    agent.kill(signal.SIGKILL)
    fleet.wait_offline("n1")
    assert fleet.gdos("exec", "n1", "--", "true").returncode == 6
    fleet.start_agent("n1", home=agent.home)  # same state folder: same key, saved daemon
    fleet.wait_online("n1")
    assert fleet.gdos("exec", "n1", "--", "true").returncode == 0
    keys = fleet.gdos_json("key", "list")
    assert len(keys) == 1 and keys[0]["status"] == "accepted"


def test_daemon_restart_keeps_nodes_keys_and_tasks(fleet: Fleet) -> None:
    token = fleet.token()
    fleet.start_agent("n1", join=token)
    fleet.start_agent("n2", join=token)
    fleet.wait_online("n1", "n2")
    fleet.gdos("node", "drain", "n2")
    assert fleet.gdos("exec", "--all", "--include-drained", "--", "echo", "before").returncode == 0
    keys_before = fleet.gdos_json("key", "list")
    tasks_before = fleet.gdos_json("task", "list")
    fleet.stop_daemon()
    down = fleet.gdos("node", "list")
    assert down.returncode == 3 and "error[daemon_unavailable]" in down.stderr
    fleet.start_daemon()
    nodes = fleet.nodes()
    assert set(nodes) == {"n1", "n2"} and nodes["n2"]["state"] == "maintenance"
    assert fleet.gdos_json("key", "list") == keys_before
    assert fleet.gdos_json("task", "list") == tasks_before
    hosts = fleet.gdos_json("task", "show", str(tasks_before[0]["id"]))["hosts"]
    assert {h["stdout"] for h in hosts} == {"before\n"}
    fleet.wait_online("n1", "n2")  # agents redial the restarted daemon by themselves
    assert fleet.gdos("exec", "n1", "--", "true").returncode == 0


def test_result_finished_while_daemon_was_down_is_not_lost(fleet: Fleet) -> None:
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    marker = short_home("gx-") / "started"
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gdos.cli.main",
            "exec",
            "n1",
            "--shell",
            "--",
            f"touch {marker}; sleep 2; echo finished",
        ],
        env=fleet.env(fleet.daemon_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for(marker.exists, what="command started")
    fleet.stop_daemon(signal.SIGKILL)  # killed mid-task: no clean shutdown
    cli.communicate(timeout=20)
    assert cli.returncode == 3  # the CLI reports the lost daemon
    fleet.start_daemon()
    task_id = fleet.gdos_json("task", "list")[0]["id"]
    task = wait_for(
        lambda: (t := fleet.gdos_json("task", "show", str(task_id)))["status"] != "running" and t,
        what="task finished after restart",
    )
    host = task["hosts"][0]
    assert host["status"] == "succeeded" and host["stdout"] == "finished\n"
    assert task["status"] == "succeeded"


def test_node_that_drops_mid_run_ends_failed_with_reason(fleet: Fleet) -> None:
    agent = fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    marker = short_home("gx-") / "started"
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gdos.cli.main",
            "exec",
            "n1",
            "--timeout",
            "2",
            "--shell",
            "--",
            f"touch {marker}; sleep 1",
        ],
        env=fleet.env(fleet.daemon_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(marker.exists, what="command started")
    agent.kill(signal.SIGKILL)
    out, err = cli.communicate(timeout=30)
    assert cli.returncode == 5, out + err
    assert "went offline during the run" in out


def test_offline_after_silence_and_online_on_next_message(fleet: Fleet) -> None:
    agent = fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    agent.send(signal.SIGSTOP)  # frozen: the connection stays, messages stop
    try:
        fleet.wait_offline("n1", timeout=10)
    finally:
        agent.send(signal.SIGCONT)
    fleet.wait_online("n1")
