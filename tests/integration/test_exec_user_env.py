"""``exec --user`` gives the command a clean login environment (issue 11, "Also").

The agent runs as root with GDOS_HOME, root's PATH and whatever its service
manager set; a command run as another account must get that account's
login-like environment plus only what the operator passed.
"""

from __future__ import annotations

import json
import os
import pwd

import pytest

from tests.harness import Fleet


@pytest.mark.skipif(os.geteuid() != 0, reason="--user needs the agent to run as root")
def test_user_command_gets_a_login_environment_not_the_agents(fleet: Fleet) -> None:
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    result = fleet.gdos("exec", "n1", "--user", "nobody", "--env", "FOO=bar", "--", "env")
    assert result.returncode == 0, result.stdout + result.stderr
    env = dict(
        line.split(" | ", 1)[1].split("=", 1)
        for line in result.stdout.splitlines()
        if " | " in line and "=" in line
    )
    nobody = pwd.getpwnam("nobody")
    assert env["USER"] == env["LOGNAME"] == "nobody"
    assert env["HOME"] == nobody.pw_dir
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert env["FOO"] == "bar"
    assert "SHELL" in env
    leaked = {k for k in env if k.startswith("GDOS") or k == "PYTHONUNBUFFERED"}
    assert not leaked, leaked
    # without --user the agent's own environment is kept, as before
    own = fleet.gdos("exec", "n1", "--", "env")
    assert "GDOS_HOME=" in own.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="--user needs the agent to run as root")
def test_user_shell_gets_a_login_environment_too(fleet: Fleet) -> None:
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    result = fleet.gdos("shell", "n1", "--user", "nobody", "--", "env")
    assert result.returncode == 0, result.stdout + result.stderr
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert env["USER"] == "nobody" and env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert "GDOS_SESSION" in env and "TERM" in env
    assert not {k for k in env if k.startswith("GDOS_HOME") or k == "PYTHONUNBUFFERED"}


def test_a_huge_failure_reason_still_comes_back_as_a_result(fleet: Fleet) -> None:
    """The agent keeps its answers within the schema the daemon enforces."""
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    result = fleet.gdos("exec", "n1", "--json", "--", "/no/such/" + "x" * 20_000)
    task = json.loads(result.stdout)
    host = task["hosts"][0]
    assert host["status"] == "failed", host
    assert "/no/such/xxx" in host["reason"]
    assert len(host["reason"]) <= 4096
