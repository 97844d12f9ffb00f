"""`gdos events -f`: the history, then every new state change as it happens."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

from tests.harness import Fleet, wait_for
from tests.integration.services_kit import SLEEPER, ok, package


def _follow(fleet: Fleet, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = fleet.gdos_background("events", *args, "-f")
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def test_events_follow_prints_history_then_new_changes(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    ok(fleet.gdos("package", "push", str(package(tmp_path, "sleeper", SLEEPER))))
    ok(fleet.gdos("system", "create", "shop"))
    ok(fleet.gdos("system", "add", "shop", "bg", "--package", "sleeper"))
    ok(fleet.gdos("deploy", "shop", "--node", "n1", "--wait"))
    history = ok(fleet.gdos("events", "shop")).splitlines()
    assert history and history[-1].endswith("shop/bg@n1  stopped")

    proc, lines = _follow(fleet, "shop")
    plain, as_json = proc, None
    try:
        wait_for(lambda: lines[: len(history)] == history, what="the history first")
        ok(fleet.gdos("start", "shop"))
        wait_for(lambda: any(line.endswith("shop/bg@n1  running") for line in lines), 30, "run")
        ok(fleet.gdos("stop", "shop"))
        wait_for(lambda: lines[-1].endswith("shop/bg@n1  stopped"), 30, "the stop")
        states = [line.split()[-1] for line in lines[len(history) :]]
        assert states == ["starting", "running", "stopping", "stopped"], lines
        assert len(set(lines)) == len(lines), "an event printed twice"

        as_json, json_lines = _follow(fleet, "shop", "--json", "-n", "1")
        wait_for(lambda: len(json_lines) == 1, what="one JSON line of history")
        ok(fleet.gdos("start", "shop/bg"))
        wait_for(lambda: json.loads(json_lines[-1])["state"] == "running", 30, "running as JSON")
        assert all(json.loads(line)["system"] == "shop" for line in json_lines)
    finally:
        for follower in (plain, as_json):
            if follower is not None and follower.poll() is None:
                follower.send_signal(signal.SIGINT)
    assert plain.wait(10) == 130
    assert as_json is not None and as_json.wait(10) == 130
    assert plain.stderr is not None and "Traceback" not in plain.stderr.read()
