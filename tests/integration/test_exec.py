"""Remote exec across real agents: results, exit codes, timeouts, cancel, reachability."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Fleet, short_home, unchanged_for, wait_for

# Each agent has its own GDOS_HOME (/tmp/ga-NAME-...), inherited by the commands it runs.
BY_NODE = (
    'case "$GDOS_HOME" in *ga-n1-*) echo one;; *ga-n2-*) echo two >&2; exit 2;; *) exit 0;; esac'
)


@pytest.fixture
def trio(fleet: Fleet) -> Iterator[Fleet]:
    token = fleet.token()
    for name in ("n1", "n2", "n3"):
        fleet.start_agent(name, join=token)
    fleet.wait_online("n1", "n2", "n3")
    yield fleet


def _hosts(task: dict) -> dict[str, dict]:
    return {h["node"]: h for h in task["hosts"]}


def test_exec_all_mixed_exit_codes(trio: Fleet) -> None:
    result = trio.gdos("exec", "--all", "--shell", "--", BY_NODE)
    assert result.returncode == 5, result.stdout + result.stderr  # some host failed
    assert "n1 | one" in result.stdout
    assert "n2 | two" in result.stderr
    summary = result.stdout.split("task ")[-1]
    assert "n1" in summary and "succeeded" in summary and "exited with code 2" in summary
    tasks = trio.gdos_json("task", "list")
    task = trio.gdos_json("task", "show", str(tasks[0]["id"]))
    hosts = _hosts(task)
    assert {n: h["status"] for n, h in hosts.items()} == {
        "n1": "succeeded",
        "n2": "failed",
        "n3": "succeeded",
    }
    assert hosts["n1"]["stdout"] == "one\n" and hosts["n2"]["stderr"] == "two\n"
    assert hosts["n2"]["exit_code"] == 2
    assert all(h["ended"] >= h["started"] for h in hosts.values())
    assert task["status"] == "failed" and task["user"]


def test_exec_success_json_env_cwd(trio: Fleet) -> None:
    result = trio.gdos(
        "exec",
        "n1",
        "n3",
        "--env",
        "GREETING=hi there",
        "--cwd",
        "/tmp",
        "--json",
        "--",
        "sh",
        "-c",
        'echo "$GREETING from $(pwd)"',
    )
    assert result.returncode == 0, result.stderr

    task = json.loads(result.stdout)
    assert {h["node"]: h["stdout"] for h in task["hosts"]} == {
        "n1": "hi there from /tmp\n",
        "n3": "hi there from /tmp\n",
    }


def test_exec_match_and_argv_passed_verbatim(trio: Fleet) -> None:
    result = trio.gdos("exec", "--match", "n[12]", "--", "echo", "-n", "--all", "$HOME")
    assert result.returncode == 0
    assert "n1 | --all $HOME" in result.stdout and "n3 |" not in result.stdout
    missing = trio.gdos("exec", "--match", "db-*", "--", "true")
    assert missing.returncode == 4 and "error[no_target]" in missing.stderr


def test_exec_command_not_found_and_bad_cwd(trio: Fleet) -> None:
    result = trio.gdos("exec", "n1", "--", "definitely-not-a-command")
    assert result.returncode == 5 and "command not found" in result.stdout
    result = trio.gdos("exec", "n1", "--cwd", "/nonexistent", "--", "true")
    assert result.returncode == 5 and "does not exist" in result.stdout


def test_output_over_the_cap_is_truncated_and_streamed_whole(trio: Fleet) -> None:
    # 3 MiB of output: streamed whole to the terminal, stored capped at 1 MiB
    result = trio.gdos("exec", "n1", "--", "sh", "-c", "head -c 3145728 /dev/zero | tr '\\0' x")
    assert result.returncode == 0
    assert result.stdout.count("x") == 3 * 1024 * 1024
    task_id = trio.gdos_json("task", "list")[0]["id"]
    host = trio.gdos_json("task", "show", str(task_id))["hosts"][0]
    assert len(host["stdout"]) == 1024 * 1024 and host["stdout_truncated"] is True


def test_timeout_kills_the_whole_group(trio: Fleet) -> None:
    scratch = short_home("gx-")
    pidfile = scratch / "grandchild.pid"
    script = f"sleep 300 & echo $! > {pidfile}; sleep 300"
    result = trio.gdos("exec", "n1", "--timeout", "1", "--shell", "--", script)
    assert result.returncode == 7, result.stdout + result.stderr
    assert "timed_out" in result.stdout and "timed out after 1s" in result.stdout
    grandchild = int(pidfile.read_text())
    wait_for(lambda: not _alive(grandchild), 10, "grandchild killed")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return False


def _start_exec(fleet: Fleet, *args: str) -> subprocess.Popen[str]:
    return fleet.gdos_background("exec", *args)


def _running_task(fleet: Fleet) -> int:
    tasks = wait_for(
        lambda: [t for t in fleet.gdos_json("task", "list") if t["status"] == "running"],
        what="a running task",
    )
    return int(tasks[0]["id"])


def test_cancel_from_another_terminal(trio: Fleet) -> None:
    scratch = short_home("gx-")
    marker = scratch / "started"
    proc = _start_exec(trio, "--all", "--shell", "--", f"touch {marker}; exec sleep 300")
    task_id = _running_task(trio)
    wait_for(marker.exists, what="command started")
    cancel = trio.gdos("task", "cancel", str(task_id), "--json")
    assert cancel.returncode == 0, cancel.stderr
    assert json.loads(cancel.stdout) == {"task": task_id, "open": 3}
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, out + err
    task = trio.gdos_json("task", "show", str(task_id))
    assert task["status"] == "canceled"
    assert {h["status"] for h in task["hosts"]} == {"canceled"}
    again = trio.gdos("task", "cancel", str(task_id))
    assert again.returncode == 1 and "already finished" in again.stderr
    unknown = trio.gdos("task", "cancel", "999")
    assert unknown.returncode == 4 and "error[task_unknown]" in unknown.stderr


def test_ctrl_c_cancels_the_task(trio: Fleet) -> None:
    proc = _start_exec(trio, "n1", "--", "sleep", "300")
    task_id = _running_task(trio)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and "canceling task" in err
    assert "Traceback" not in err
    assert trio.gdos_json("task", "show", str(task_id))["hosts"][0]["status"] == "canceled"


def test_unknown_offline_disabled_and_drained_nodes_are_unreachable(trio: Fleet) -> None:
    trio.agents["n3"].kill()
    trio.wait_offline("n3")
    assert trio.gdos("node", "disable", "n2").returncode == 0
    result = trio.gdos("exec", "n1", "n2", "n3", "ghost", "--", "true")
    assert result.returncode == 6
    reasons = {line.split("|")[0].strip(): line for line in result.stderr.splitlines()}
    assert "offline" in reasons["n3"]
    assert "disabled" in reasons["n2"] and "gdos node enable n2" in reasons["n2"]
    assert "unknown node" in reasons["ghost"]
    assert "n1" not in reasons
    # maintenance: no new work unless explicitly included
    assert trio.gdos("node", "drain", "n1").returncode == 0
    assert trio.nodes()["n1"]["state"] == "maintenance"
    drained = trio.gdos("exec", "n1", "--", "true")
    assert drained.returncode == 6 and "maintenance" in drained.stderr
    assert trio.gdos("exec", "n1", "--include-drained", "--", "true").returncode == 0
    assert trio.gdos("node", "enable", "n1").returncode == 0
    assert trio.gdos("exec", "n1", "--", "true").returncode == 0
    unknown = trio.gdos("node", "drain", "ghost")
    assert unknown.returncode == 4 and "error[node_unknown]" in unknown.stderr


def test_agent_enforces_disabled_state_itself(trio: Fleet) -> None:
    """The state is pushed to the agent, which refuses work on its own."""
    assert trio.gdos("node", "disable", "n1").returncode == 0
    wait_for(lambda: "state is now disabled" in trio.agents["n1"].log_text(), what="pushed")


@pytest.mark.skipif(os.geteuid() != 0, reason="--user needs the agent to run as root")
def test_user_option_runs_as_that_user(trio: Fleet) -> None:
    result = trio.gdos("exec", "n1", "--user", "nobody", "--", "id", "-un")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "n1 | nobody" in result.stdout
    missing = trio.gdos("exec", "n1", "--user", "no-such-user", "--", "true")
    assert missing.returncode == 5 and "no user 'no-such-user'" in missing.stdout


def test_a_stopped_reader_throttles_the_remote_command(trio: Fleet) -> None:
    """Credits end to end: a frozen CLI blocks the remote writer; memory stays flat."""
    import psutil

    progress = short_home("gx-") / "progress"
    chunks, size = 800, 65536  # 50 MiB in all
    writer = (
        f"import sys\nfor i in range({chunks}):\n    sys.stdout.write('x' * {size - 1} + "
        f"'\\n'); sys.stdout.flush(); open('{progress}', 'w').write(str(i + 1))"
    )
    assert trio.daemon is not None
    daemon_rss = psutil.Process(trio.daemon.popen.pid).memory_info().rss
    proc = _start_exec(trio, "n1", "--", sys.executable, "-c", writer)
    wait_for(progress.exists, what="the remote writer to start")
    proc.send_signal(signal.SIGSTOP)
    try:
        written = wait_for(lambda: unchanged_for(progress, 1.5), 30, "the writer to block")
        assert written < chunks, "the writer was never slowed down"
        grown = psutil.Process(trio.daemon.popen.pid).memory_info().rss - daemon_rss
        assert grown < 32 * 1024 * 1024, f"daemon grew by {grown} bytes"
    finally:
        proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.count("n1 | x") == chunks
