"""What installing gdos puts on the import path, and what a gdos process imports.

Issue 13 item 1: the wheel once installed top-level ``agent`` and ``tui``
packages, and ``gdos agent run`` re-executed ``python -m agent``, which
imports from the working directory first: an ``agent.py`` there ran instead
of the agent (usually as root). Installing gdos now adds only ``gdos``, and
every re-executed gdos process runs with ``-P`` (no working directory on
``sys.path``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.harness import Fleet, Proc, short_home, wait_for

ROOT = Path(__file__).resolve().parent.parent
# The folders whose modules install under another name (pyproject's package-dir).
MAPPED = {"agent": "gdos/agent", "tui": "gdos/tui"}


def build_wheel(out: Path) -> Path:
    """Build the wheel from the source tree, the way pip installs it."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("gdos-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    wheel = build_wheel(tmp_path_factory.mktemp("wheel"))
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_the_wheel_installs_no_top_level_name_but_gdos(wheel_files: dict[str, bytes]) -> None:
    tops = {name.split("/", 1)[0] for name in wheel_files}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert len(dist_info) == 1
    assert tops - dist_info == {"gdos"}
    top_level = wheel_files.get(f"{dist_info.pop()}/top_level.txt")
    if top_level is not None:  # setuptools writes it
        assert top_level.decode().split() == ["gdos"]


def test_the_wheel_holds_every_module_of_the_source_tree(wheel_files: dict[str, bytes]) -> None:
    """The package list in pyproject is explicit: a new package folder must be added there."""
    expected = set()
    for folder in ("gdos", *MAPPED):
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            top, rest = relative.split("/", 1)
            expected.add(f"{MAPPED.get(top, top)}/{rest}")
    missing = expected - set(wheel_files)
    assert not missing, sorted(missing)


def test_modules_import_by_their_installed_names_from_anywhere(tmp_path: Path) -> None:
    """The editable install (make test, CI) resolves gdos.agent and gdos.tui too."""
    probe = "import gdos.agent.main, gdos.tui.app; print(gdos.agent.main.__file__)"
    for cwd in (tmp_path, ROOT):
        result = subprocess.run(
            [sys.executable, "-P", "-c", probe],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith(os.path.join("agent", "main.py"))


HOSTILE = """
import pathlib
pathlib.Path({marker!r}).write_text(__name__)
raise SystemExit("hostile module imported")
"""


def test_agent_run_never_imports_from_its_working_directory(fleet: Fleet) -> None:
    """From a folder holding an agent.py and a gdos/ package, the real agent still runs."""
    hostile = short_home("gh-")
    fleet.homes.append(hostile)
    marker = hostile / "imported"
    for name in ("agent.py", "gdos/__init__.py", "gdos/agent/__init__.py", "gdos/agent.py"):
        path = hostile / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(HOSTILE.format(marker=str(marker)))
    (hostile / "gdos" / "agent" / "__main__.py").write_text(HOSTILE.format(marker=str(marker)))
    home = short_home("ga-x-")
    fleet.homes.append(home)
    script = Path(sys.executable).with_name("gdos")
    assert script.exists(), "the gdos console script is installed next to the interpreter"
    log = home / "x.out"
    join = ["--join", fleet.token()]
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            [str(script), "agent", "run", "--name", "x", "--backoff-max", "0.5", *join],
            cwd=hostile,
            env=fleet.env(home),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    agent = fleet.agents["x"] = Proc("x", popen, home, log)
    fleet.wait_online("x")
    assert agent.alive(), agent.log_text()
    assert not marker.exists(), agent.log_text()
    wait_for(lambda: fleet.nodes()["x"]["online"], what="x stays online")
    assert not marker.exists()
