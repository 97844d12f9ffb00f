"""Shell completion: the shipped scripts are current and TAB really completes.

Completion is driven like a shell drives it (and like Typer's own tests):
``gdos`` runs in a subprocess with ``_GDOS_COMPLETE=complete_<shell>`` and
the shell's words in the environment, and prints one candidate per line.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gdos.devtools import completions
from tests.harness import Fleet, short_home

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "completions"


def complete(
    words: str, env: dict[str, str], shell: str = "bash"
) -> subprocess.CompletedProcess[str]:
    """What ``gdos`` offers when TAB is pressed after ``words`` (a trailing space
    means a new, empty word)."""
    env = {k: v for k, v in env.items() if not k.startswith(("_GDOS_", "_TYPER_", "COMP_"))}
    env["_GDOS_COMPLETE"] = f"complete_{shell}"
    if shell == "bash":
        env["COMP_WORDS"] = words
        env["COMP_CWORD"] = str(len(words.split(" ")) - 1)
    else:
        env["_TYPER_COMPLETE_ARGS"] = words
        env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    return subprocess.run(
        [sys.executable, "-m", "gdos.cli.main"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def offered(words: str, env: dict[str, str]) -> list[str]:
    result = complete(words, env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.split()


@pytest.fixture
def no_daemon_env() -> Iterator[dict[str, str]]:
    """GDOS_HOME pointing at an empty folder: no daemon answers there."""
    home = short_home("gc-")
    try:
        yield {**os.environ, "GDOS_HOME": str(home)}
    finally:
        shutil.rmtree(home, ignore_errors=True)


# -- the shipped scripts -----------------------------------------------------


@pytest.mark.parametrize("shell", sorted(completions.FILES))
def test_shipped_script_is_up_to_date(shell: str, tmp_path: Path) -> None:
    completions.generate(tmp_path)
    name = completions.FILES[shell]
    shipped = SHIPPED / name
    assert shipped.exists(), f"completions/{name} is missing; run `make completions`"
    assert shipped.read_bytes() == (tmp_path / name).read_bytes(), (
        f"completions/{name} is out of date; run `make completions` and commit the result"
    )


def test_scripts_name_no_path_of_this_machine() -> None:
    for name in completions.FILES.values():
        text = (SHIPPED / name).read_text()
        for local in (str(ROOT), sys.executable, sys.prefix, str(Path.home())):
            assert local not in text, f"completions/{name} contains {local}"


def test_zsh_script_starts_with_compdef() -> None:
    assert (SHIPPED / "_gdos").read_text().splitlines()[0] == "#compdef gdos"


def test_bash_script_completes_through_bash(no_daemon_env: dict[str, str]) -> None:
    """Source the shipped script in a real bash and press TAB after 'gdos no'."""
    bash = shutil.which("bash")
    gdos = shutil.which("gdos", path=str(Path(sys.executable).parent))
    if bash is None or gdos is None:
        pytest.skip("needs bash and the gdos console script next to this python")
    script = (
        f"source {shlex.quote(str(SHIPPED / 'gdos.bash'))}\n"
        "COMP_WORDS=(gdos no); COMP_CWORD=1\n"
        f"_gdos_completion {shlex.quote(gdos)}\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", script],
        env=no_daemon_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["node"]


# -- completing commands -----------------------------------------------------


def test_top_level_command_completes(no_daemon_env: dict[str, str]) -> None:
    assert offered("gdos no", no_daemon_env) == ["node"]


def test_every_command_group_is_offered(no_daemon_env: dict[str, str]) -> None:
    names = set(offered("gdos ", no_daemon_env))
    assert {"daemon", "agent", "node", "key", "token", "task", "exec"} <= names


def test_node_subcommands_complete(no_daemon_env: dict[str, str]) -> None:
    names = offered("gdos node ", no_daemon_env)
    assert {"list", "show", "drain", "disable", "enable", "rm"} <= set(names)


def test_options_complete(no_daemon_env: dict[str, str]) -> None:
    assert "--json" in offered("gdos node list --", no_daemon_env)


def test_fish_completion_carries_help(no_daemon_env: dict[str, str]) -> None:
    result = complete("gdos node sh", no_daemon_env, shell="fish")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    name, help_text = line.split("\t")
    assert name == "show"
    assert help_text  # fish shows the command's help next to it


# -- live node names ----------------------------------------------------------


def test_node_names_complete_from_the_daemon(fleet: Fleet) -> None:
    fleet.start_agent("web-1", join=fleet.token())
    fleet.wait_online("web-1")
    env = fleet.env(fleet.daemon_home)

    assert "web-1" in offered("gdos node show ", env)
    assert offered("gdos node drain we", env) == ["web-1"]
    assert offered("gdos node show zz", env) == []
    assert "web-1" in offered("gdos exec ", env)
    assert "web-1" in offered("gdos key reject ", env)


@pytest.mark.parametrize(
    "words", ["gdos node show ", "gdos node drain w", "gdos exec ", "gdos key reject "]
)
def test_name_completion_is_silent_without_daemon(
    words: str, no_daemon_env: dict[str, str]
) -> None:
    result = complete(words, no_daemon_env)
    assert result.returncode == 0
    assert result.stdout.strip() == ""
    assert result.stderr == ""
    assert "Traceback" not in result.stdout + result.stderr


def test_logs_targets_complete_instances_and_nodes(fleet: Fleet, tmp_path: Path) -> None:
    """`gdos logs` TAB offers SYSTEM/MODULE@NODE and node names, never file names."""
    from tests.integration.services_kit import SLEEPER, ok, package

    fleet.start_agent("web-1", join=fleet.token())
    fleet.wait_online("web-1")
    ok(fleet.gdos("package", "push", str(package(tmp_path, "sleeper", SLEEPER))))
    ok(fleet.gdos("system", "create", "shop"))
    ok(fleet.gdos("system", "add", "shop", "bg", "--package", "sleeper"))
    ok(fleet.gdos("deploy", "shop", "--node", "web-1", "--wait"))
    env = fleet.env(fleet.daemon_home)

    assert offered("gdos logs sh", env) == ["shop", "shop/bg", "shop/bg@web-1"]
    assert offered("gdos logs shop/bg@", env) == ["shop/bg@web-1"]
    assert offered("gdos logs we", env) == ["web-1"]
    assert offered("gdos logs shop/bg@web-1 we", env) == ["web-1"]
    for shell in ("zsh", "fish"):
        result = complete("gdos logs shop/bg@", env, shell=shell)
        assert result.returncode == 0 and "shop/bg@web-1" in result.stdout, (shell, result)
