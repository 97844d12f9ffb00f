"""Alerts against a real daemon and real agents: debounce, history, built-ins, hooks.

Conditions are deterministic: ``cpu > -1`` holds on every sample of a live
node, and it stops holding when the node goes away (no current value), so
nothing depends on how busy the test machine is.
"""

from __future__ import annotations

import http.server
import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import START_WAIT, Fleet, free_port, wait_for


class Receiver:
    """A real HTTP server in a thread that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        received = self.received = []  # type: list[dict[str, Any]]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def states(self, rule: str) -> list[str]:
        return [p["state"] for p in self.received if p["rule"] == rule]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def events(fleet: Fleet, *extra: str) -> list[dict[str, Any]]:
    return list(fleet.gdos_json("alert", "list", *extra))


def event(fleet: Fleet, rule: str, target: str, ended: bool = False) -> dict[str, Any] | None:
    for e in events(fleet):
        if e["rule"] == rule and e["target"] == target and (e["ended"] is not None) == ended:
            return e
    return None


def test_cpu_rule_fires_after_for_and_resolves_with_stats(
    fleet: Fleet, receiver: Receiver, tmp_path: Path
) -> None:
    agent = fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    log = tmp_path / "hook.log"
    command = f"sh -c 'echo \"$GDOS_ALERT_STATE $GDOS_ALERT_TARGET\" >> {log}'"
    added = fleet.gdos_json(
        "alert", "rule", "add", "hot", "--metric", "cpu", "--op", ">", "--value", "-1",
        "--for", "2s", "--node", "n*", "--webhook", receiver.url, "--command", command,
    )  # fmt: skip
    assert added["for_seconds"] == 2.0

    firing = wait_for(lambda: event(fleet, "hot", "n1"), 15, "hot firing on n1")
    assert firing["active"] and firing["severity"] == "warning"
    assert firing["started"] >= added["created"]
    wait_for(lambda: receiver.states("hot") == ["firing"], 10, "firing webhook")
    fired = receiver.received[0]
    # the event opens only once the condition held for the whole --for
    assert fired["fired"] - fired["started"] >= 2.0
    assert fired["target"] == "n1" and fired["min"] <= fired["avg"] <= fired["max"]
    assert [
        r["firing"] for r in fleet.gdos_json("alert", "rule", "list") if r["name"] == "hot"
    ] == [1]

    agent.kill(signal.SIGKILL)  # no current value any more: the cpu alert recovers
    done = wait_for(lambda: event(fleet, "hot", "n1", ended=True), 15, "hot resolved")
    assert done["samples"] >= 3 and 0 <= done["min"] <= done["avg"] <= done["max"] <= 100
    assert done["ended"] > done["started"] + 2.0
    wait_for(lambda: receiver.states("hot") == ["firing", "resolved"], 10, "resolved webhook")
    resolved = receiver.received[-1]
    assert resolved["ended"] == pytest.approx(done["ended"]) and resolved["severity"] == "warning"
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) == 2, 10, "hook command")
    assert log.read_text().splitlines() == ["firing n1", "resolved n1"]
    active = [e["id"] for e in events(fleet, "--active")]
    assert active == [e["id"] for e in events(fleet) if e["ended"] is None]
    assert {e["rule"] for e in events(fleet, "--active")} == {"node-offline"}


def test_node_offline_builtin_fires_on_kill_and_recovers_on_restart(
    fleet: Fleet, receiver: Receiver
) -> None:
    fleet.stop_daemon()
    fleet.start_daemon("--alert-webhook", receiver.url)  # the daemon-wide default hook
    agent = fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    rules = {r["name"]: r for r in fleet.gdos_json("alert", "rule", "list")}
    assert {"node-offline", "instance-failed", "disk-full"} <= {
        n for n, r in rules.items() if r["builtin"]
    }
    refused = fleet.gdos("alert", "rule", "rm", "node-offline")
    assert refused.returncode != 0 and "error[not_permitted]" in refused.stderr

    agent.kill(signal.SIGKILL)
    offline = wait_for(lambda: event(fleet, "node-offline", "n1"), 15, "node-offline firing")
    assert offline["severity"] == "critical" and "offline" in offline["message"]
    wait_for(lambda: receiver.states("node-offline") == ["firing"], 10, "firing webhook")

    fleet.start_agent("n1", home=agent.home)
    back = wait_for(lambda: event(fleet, "node-offline", "n1", ended=True), START_WAIT, "recovered")
    assert back["ended"] >= back["started"]
    wait_for(lambda: receiver.states("node-offline") == ["firing", "resolved"], 10, "resolved")
    assert fleet.gdos_json("alert", "list", "--active") == []


def test_failing_and_hanging_hooks_do_not_block_the_daemon(fleet: Fleet) -> None:
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    refused = f"http://127.0.0.1:{free_port()}/nobody"  # connection refused on every try
    for name, hook in (("refused", ["--webhook", refused]), ("hangs", ["--command", "sleep 30"])):
        result = fleet.gdos(
            "alert", "rule", "add", name, "--metric", "mem", "--op", ">=", "--value", "0", *hook
        )
        assert result.returncode == 0, result.stderr
    wait_for(
        lambda: {e["rule"] for e in events(fleet, "--active")} >= {"refused", "hangs"}, START_WAIT
    )
    wait_for(lambda: "alert webhook" in fleet.daemon.log_text(), 10, "webhook retried")  # type: ignore[union-attr]
    listed = fleet.gdos("node", "list", timeout=10)
    assert listed.returncode == 0 and "n1" in listed.stdout
    assert fleet.gdos("exec", "n1", "--", "true", timeout=10).returncode == 0


def test_rule_input_is_checked_at_the_edge(fleet: Fleet) -> None:
    def add(*args: str) -> tuple[int, str]:
        result = fleet.gdos("alert", "rule", "add", "r1", *args)
        return result.returncode, result.stderr

    base = ["--metric", "cpu", "--op", ">", "--value", "1"]
    assert add("--metric", "temperature", "--op", ">", "--value", "1")[0] == 2
    assert "error[invalid_argument]" in add("--metric", "cpu", "--op", "~", "--value", "1")[1]
    assert "error[invalid_argument]" in add(*base, "--webhook", "file:///etc/passwd")[1]
    assert "error[invalid_argument]" in add(*base, "--for", "soon")[1]
    assert "error[invalid_argument]" in add(*base, "--node", "a b")[1]
    assert add(*base)[0] == 0
    assert "error[already_exists]" in add(*base)[1]
    missing = fleet.gdos("alert", "rule", "rm", "nope")
    assert missing.returncode == 4 and "error[rule_unknown]" in missing.stderr
    assert fleet.gdos("alert", "rule", "rm", "r1").returncode == 0


def test_instance_failed_builtin_fires_for_a_flapping_service(fleet: Fleet, tmp_path: Path) -> None:
    from tests.integration.services_kit import CRASH, ok, package, wait_state

    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    restart = {"policy": "on-failure", "max_retries": 2, "backoff": 0.1, "window": 60}
    ok(fleet.gdos("package", "push", str(package(tmp_path, "crash", CRASH, restart=restart))))
    ok(fleet.gdos("system", "create", "bad"))
    ok(fleet.gdos("system", "add", "bad", "crash", "--package", "crash"))
    ok(fleet.gdos("deploy", "bad", "--node", "n1", "--wait"))
    fleet.gdos("start", "bad")
    wait_state(fleet, "bad/crash@n1", "failed")

    def failing() -> dict[str, Any] | None:
        return next((e for e in events(fleet, "--active") if e["rule"] == "instance-failed"), None)

    fired = wait_for(failing, 15, "instance-failed firing")
    assert fired["severity"] == "critical" and "bad/crash" in fired["target"]
    ok(fleet.gdos("destroy", "bad", "--yes"))
    wait_for(lambda: failing() is None, 15, "instance-failed resolved once the instance is gone")
