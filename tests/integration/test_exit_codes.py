"""The documented exit-code table, checked row by row against the real CLI.

Each row of the table under "## Exit codes" in docs/exec.md is parsed; every
code must have a scenario here that produces it with a real daemon and agent,
and the row's text must describe that scenario. A code added to the table without a
scenario, or a behaviour that drifts from the table, fails this test.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.harness import Fleet, wait_for

EXEC_DOC = Path(__file__).resolve().parents[2] / "docs" / "exec.md"


def documented_exit_codes() -> dict[int, str]:
    """``{code: meaning}`` from the exit-code table in docs/exec.md."""
    text = EXEC_DOC.read_text()
    section = text.split("## Exit codes", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", section, flags=re.MULTILINE)
    return {int(code): meaning for code, meaning in rows}


def _no_daemon(fleet: Fleet) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="gx-", dir="/tmp") as empty:
        return fleet.gdos("node", "list", home=Path(empty))


def _finished_task(fleet: Fleet) -> subprocess.CompletedProcess[str]:
    assert fleet.gdos("exec", "n1", "--", "true").returncode == 0
    task = fleet.gdos_json("task", "list")[0]
    return fleet.gdos("task", "cancel", str(task["id"]))


def _canceled(fleet: Fleet) -> subprocess.CompletedProcess[str]:
    running = fleet.gdos_background("exec", "n1", "--", "sleep", "60")
    try:

        def started() -> int | None:
            tasks = fleet.gdos_json("task", "list")
            live = [t for t in tasks if t["status"] == "running" and "sleep" in str(t["argv"])]
            return live[0]["id"] if live else None

        task_id = wait_for(started, what="the exec running")
        assert fleet.gdos("task", "cancel", str(task_id)).returncode == 0
        out, err = running.communicate(timeout=60)
    finally:
        running.kill()
        running.wait()
    return subprocess.CompletedProcess(running.args, running.returncode, out, err)


def _idle_shell(fleet: Fleet) -> subprocess.CompletedProcess[str]:
    argv = ["shell", "n1", "--idle-timeout", "1", "--", "sleep", "300"]
    return subprocess.run(
        [sys.executable, "-m", "gdos.cli.main", *argv],
        env=fleet.env(fleet.daemon_home),
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )


# code -> (what the table's row must mention, the scenario)
Scenario = Callable[[Fleet], subprocess.CompletedProcess[str]]
SCENARIOS: dict[int, tuple[list[str], Scenario]] = {
    0: (["success"], lambda f: f.gdos("node", "list")),
    1: (["refused"], _finished_task),
    2: (["usage"], lambda f: f.gdos("node", "list", "--bogus")),
    3: (["not running"], _no_daemon),
    4: (["unknown node", "task"], lambda f: f.gdos("node", "show", "ghost")),
    5: (["`exec`", "failed"], lambda f: f.gdos("exec", "n1", "--", "false")),
    6: (["`exec`", "unreachable", "unknown"], lambda f: f.gdos("exec", "ghost", "--", "true")),
    7: (["`exec`", "timed out"], lambda f: f.gdos("exec", "n1", "-t", "1s", "--", "sleep", "30")),
    130: (["`exec`", "canceled"], _canceled),
    255: (["`shell`", "idle timeout"], _idle_shell),
}


def test_every_documented_exit_code_is_what_the_cli_returns(fleet: Fleet) -> None:
    table = documented_exit_codes()
    assert sorted(table) == sorted(SCENARIOS), "a code in the table has no scenario, or back"
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    for code, (words, scenario) in SCENARIOS.items():
        meaning = table[code]
        for word in words:
            assert word in meaning, f"row {code} ({meaning!r}) does not mention {word!r}"
        result = scenario(fleet)
        assert result.returncode == code, (code, meaning, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
