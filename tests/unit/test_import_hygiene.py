"""The CLI starts without loading what only some commands need.

Every TAB press and every ``gdos --help`` pays the CLI's import cost, so the
daemon's, the agent's and the TUI's libraries are imported inside the
commands that use them (as harlequin keeps Textual out of its headless
modules). Each check runs in a fresh interpreter and reads ``sys.modules``.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Never loaded by the CLI front end, whatever the command: the daemon's and
# the agent's stacks and the dashboard.
HEAVY = (
    "textual",
    "zmq",
    "sqlite_utils",
    "psutil",
    "asyncssh",
    "gdos.daemon",
    "gdos.agent",
    "gdos.tui",
)
# Also not loaded merely to parse the command line or print help: the
# client and its wire format, the event loop and rich (Typer does not
# import rich by itself, and gdos uses Typer's plain help).
CLIENT = ("msgpack", "asyncio", "gdos.client.control", "gdos.wire.protocol", "rich")

PROBE = """
import json, sys
out, args = sys.argv[1], sys.argv[2:]
sys.argv = ["gdos", *args]
try:
    from gdos.cli.main import main
    main()
except SystemExit:
    pass
finally:
    with open(out, "w") as f:
        json.dump(sorted(sys.modules), f)
"""


def loaded(tmp_path: Path, *args: str, **extra_env: str) -> set[str]:
    """Modules loaded after running ``gdos ARGS`` (no daemon reachable)."""
    out = tmp_path / "modules.json"
    home = tempfile.mkdtemp(prefix="gi-", dir="/tmp")  # short enough for a socket path
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_GDOS_", "COMP_"))}
    try:
        result = subprocess.run(
            [sys.executable, "-c", PROBE, str(out), *args],
            env={**env, **extra_env, "GDOS_HOME": home},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert out.exists(), result.stderr
    return set(json.loads(out.read_text()))


def offenders(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


def test_importing_the_cli_loads_nothing_heavy() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import gdos.cli.main, sys; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    modules = set(ast.literal_eval(result.stdout.strip()))
    assert "gdos.cli.main" in modules
    assert offenders(modules, HEAVY + CLIENT) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["-h"],
        ["node", "--help"],
        ["exec", "--help"],
        ["shell", "--help"],
        ["audit", "--help"],
        ["tui", "--help"],
        ["--version"],
    ],
    ids=" ".join,
)
def test_help_and_version_load_nothing_heavy(args: list[str], tmp_path: Path) -> None:
    assert offenders(loaded(tmp_path, *args), HEAVY + CLIENT) == []


@pytest.mark.parametrize(
    "args",
    [
        ["node", "list"],
        ["exec", "--all", "--", "true"],
        ["task", "list"],
        ["shell", "n1", "--", "true"],
        ["audit", "sessions"],
    ],
    ids=" ".join,
)
def test_commands_load_only_the_client(args: list[str], tmp_path: Path) -> None:
    """A command reaches the daemon through the client, never the daemon's code."""
    modules = loaded(tmp_path, *args)
    assert "gdos.client.control" in modules
    assert offenders(modules, HEAVY) == []


def tab(tmp_path: Path, words: str) -> set[str]:
    """Modules loaded when bash asks ``gdos`` to complete ``words``."""
    return loaded(
        tmp_path,
        _GDOS_COMPLETE="complete_bash",
        COMP_WORDS=words,
        COMP_CWORD=str(len(words.split(" ")) - 1),
    )


def test_completing_a_command_loads_nothing_heavy(tmp_path: Path) -> None:
    assert offenders(tab(tmp_path, "gdos node s"), HEAVY + CLIENT) == []


def test_completing_a_node_name_loads_only_the_client(tmp_path: Path) -> None:
    modules = tab(tmp_path, "gdos node show ")
    assert "gdos.client.control" in modules
    assert offenders(modules, HEAVY) == []


SUMMARY_PROBE = """
import io, json, sys
from gdos.cli.exec_cmd import _summary
from gdos.cli.output import Output
out = io.StringIO()
host = {"node": "web-1", "status": "failed", "exit_code": 1, "started": 1.0, "ended": 2.5,
        "reason": "exited with code 1"}
_summary(Output(out, environ={"FORCE_COLOR": "1"}), {"id": 7, "status": "failed", "hosts": [host]})
print(json.dumps({"text": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def test_the_exec_summary_is_written_without_rich() -> None:
    """exec is the command run most: its summary must not pay Rich's ~40 ms import."""
    result = subprocess.run(
        [sys.executable, "-c", SUMMARY_PROBE], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert offenders(set(shown["modules"]), ("rich",)) == []
    lines = shown["text"].splitlines()
    assert lines[1:3] == ["task 7: failed", "HOST   STATUS       EXIT  DURATION  REASON"]
    assert lines[3].startswith("web-1  \x1b[31mfailed") and "exited with code 1" in lines[3]
    assert lines[4] == "1 failed"
