"""`gdos adopt`: no silent choices, and the logs of adopted processes read like any other.

Processes are real (started here, outside gdos, with a distinctive name),
the agent runs with a ``--log-root`` of its own, and everything is driven
through the real CLI.

The name is distinctive per run, not just per test suite: an adoption by
process name looks at the whole machine, so with one fixed name a run of this
file next to another (a second worktree, a second engineer) adopted the other
run's process as ``--newest`` and its teardown (tests/harness.py
kill_instances) killed it, which the other run then saw as process_not_found.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Fleet, short_home, wait_for
from tests.integration.services_kit import ok, status

NAME = f"gdos-adopt-me-{uuid.uuid4().hex[:8]}"  # this run's processes, and no one else's


@pytest.fixture
def n2(fleet: Fleet) -> Iterator[tuple[Fleet, Path]]:
    """An agent n2 whose only log root is a folder of its own."""
    root = short_home("gl-")
    fleet.homes.append(root)
    fleet.start_agent("n2", "--log-root", str(root), join=fleet.token())
    fleet.wait_online("n2")
    yield fleet, root


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started outside gdos, each named NAME in ps."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def _sleeper(started: list[subprocess.Popen[bytes]], out: Path | None = None) -> int:
    code = "import sys, time\nprint('hello from outside', flush=True)\ntime.sleep(600)"
    argv = ["bash", "-c", f'exec -a {NAME} {sys.executable} -c "$0"', code]
    sink = open(out, "ab") if out else subprocess.DEVNULL  # noqa: SIM115 (the child owns it)
    proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    started.append(proc)
    return proc.pid


def test_adopted_logs_read_like_any_instance(
    n2: tuple[Fleet, Path], sleepers: list[subprocess.Popen[bytes]]
) -> None:
    fleet, root = n2
    out = root / "ext.out"
    pid = _sleeper(sleepers, out)
    wait_for(lambda: out.exists() and "hello" in out.read_text(), what="the process logged")
    ok(fleet.gdos("adopt", "n2", "--name", "ext", "--pid", str(pid), "--log", f"out={out}"))

    named = fleet.gdos("logs", "adopted/ext@n2", "--file", "out")
    assert named.returncode == 0, named.stderr
    assert named.stdout == "hello from outside\n"
    # No --file: the adopted process's output is its first --log (gdos captured nothing).
    plain = fleet.gdos("logs", "adopted/ext@n2")
    assert plain.returncode == 0 and plain.stdout == "hello from outside\n", plain.stderr
    assert ok(fleet.gdos("logs", "adopted")) == "hello from outside\n"


def test_adopt_refuses_a_log_outside_the_agents_log_roots(
    n2: tuple[Fleet, Path], sleepers: list[subprocess.Popen[bytes]]
) -> None:
    fleet, root = n2
    pid = _sleeper(sleepers)
    outside = fleet.daemon_home / "secret.log"
    outside.write_text("not for you\n")
    refused = fleet.gdos("adopt", "n2", "--name", "ext", "--pid", str(pid), "--log", f"x={outside}")
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.startswith("error[path_not_allowed]: ")
    assert str(outside) in refused.stderr and str(root) in refused.stderr
    assert "adopted/ext@n2" not in status(fleet)


def test_adopt_by_name_refuses_to_guess_among_several(
    n2: tuple[Fleet, Path], sleepers: list[subprocess.Popen[bytes]]
) -> None:
    fleet, _ = n2
    older, newer = _sleeper(sleepers), _sleeper(sleepers)
    argv = ["adopt", "n2", "--name", "ext", "--process-name", NAME]
    refused = fleet.gdos(*argv)
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.startswith("error[process_ambiguous]: 2 processes match")
    for pid in (older, newer):
        assert f"pid {pid}" in refused.stderr
    assert NAME in refused.stderr and "--newest" in refused.stderr
    assert "adopted/ext@n2" not in status(fleet)

    assert "running" in ok(fleet.gdos(*argv, "--newest"))
    assert status(fleet)["adopted/ext@n2"]["pid"] == newer
    ok(fleet.gdos("adopt", "n2", "--name", "old", "--process-name", NAME, "--oldest"))
    assert status(fleet)["adopted/old@n2"]["pid"] == older


def test_adopt_refuses_to_replace_an_adoption_without_replace(
    n2: tuple[Fleet, Path], sleepers: list[subprocess.Popen[bytes]]
) -> None:
    fleet, _ = n2
    first, second = _sleeper(sleepers), _sleeper(sleepers)
    ok(fleet.gdos("adopt", "n2", "--name", "ext", "--pid", str(first)))
    again = fleet.gdos("adopt", "n2", "--name", "ext", "--pid", str(second))
    assert again.returncode == 1, again.stderr
    assert again.stderr.startswith("error[already_exists]: ") and "--replace" in again.stderr
    assert status(fleet)["adopted/ext@n2"]["pid"] == first

    ok(fleet.gdos("adopt", "n2", "--name", "ext", "--pid", str(second), "--replace"))
    assert status(fleet)["adopted/ext@n2"]["pid"] == second


def test_the_dashboard_follows_an_adopted_log(
    n2: tuple[Fleet, Path],
    sleepers: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio
    from typing import Any

    from gdos.tui.app import GdosApp
    from textual.pilot import Pilot
    from textual.widgets import RichLog

    from tests.integration.test_tui import SIZE, until

    fleet, root = n2
    out = root / "ext.out"
    pid = _sleeper(sleepers, out)
    wait_for(lambda: out.exists() and "hello" in out.read_text(), what="the process logged")
    ok(fleet.gdos("adopt", "n2", "--name", "ext", "--pid", str(pid), "--log", f"out={out}"))
    monkeypatch.setenv("GDOS_HOME", str(fleet.daemon_home))
    app = GdosApp(refresh=0.2)

    def shown() -> str:
        return "\n".join(strip.text for strip in app.query_one("#logs-log", RichLog).lines)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.client is not None, "the connection")
        app.follow_logs("adopted/ext@n2")
        await until(pilot, lambda: "hello from outside" in shown(), "the adopted log")

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await scenario(pilot)

    asyncio.run(main())
