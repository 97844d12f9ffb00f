"""What gdos reports is what runs: status held against /proc across daemon
restarts, a daemon kill -9 mid-deploy, a backup restore and a disk that fills.

Each test ends with a round trip through every agent (an operation that
changes nothing): its answer comes after everything the agent sent on
reconnecting, so a stale answer replayed late would show by then.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gdos.pkg.archive import build_zip
from tests.faults.disk import fill, small_disk_fleet
from tests.harness import Fleet, wait_for
from tests.integration.services_kit import ok, status, wait_state
from tests.integration.truth_kit import (
    GATED,
    events_since,
    gated_package,
    instance_alerts,
    mismatches,
    real_instances,
)


def _fleet_of(fleet: Fleet, *names: str) -> Fleet:
    token = fleet.token()
    for name in names:
        fleet.start_agent(name, join=token)
    fleet.wait_online(*names)
    return fleet


def _shop(fleet: Fleet, tmp: Path, gate: Path, *nodes: str) -> None:
    """System shop (web, worker: the gated service) running on ``nodes``."""
    ok(fleet.gdos("package", "push", str(gated_package(tmp, gate, "1.0.0"))))
    ok(fleet.gdos("system", "create", "shop"))
    for module in ("web", "worker"):
        ok(fleet.gdos("system", "add", "shop", module, "--package", "gated"))
    ok(fleet.gdos("deploy", "shop", *(a for n in nodes for a in ("--node", n)), "--wait"))
    ok(fleet.gdos("start", "shop"))


def _restarted_by_agent(fleet: Fleet, node: str, instance: str) -> int:
    """Kill an instance's process; the agent restarts it. Returns the new pid."""
    old = real_instances(fleet, node)[instance]["pid"]
    os.kill(old, signal.SIGKILL)
    return int(
        wait_for(
            lambda: (
                (real_instances(fleet, node)[instance]["pid"] or old) != old
                and real_instances(fleet, node)[instance]["pid"]
            ),
            30,
            f"the agent restarted {instance}",
        )
    )


def _true_within_one_report(fleet: Fleet, nodes: list[str]) -> None:
    wait_for(
        lambda: not mismatches(fleet, nodes),
        60,
        f"status matching /proc (now: {mismatches(fleet, nodes)})",
    )


def test_daemon_restart_after_rollback_and_changes_while_down(fleet: Fleet, tmp_path: Path) -> None:
    duo = _fleet_of(fleet, "n1", "n2")
    gate = tmp_path / "gate"
    gate.touch()  # open: the services stop at once
    _shop(duo, tmp_path, gate, "n1", "n2")
    ok(duo.gdos("package", "push", str(gated_package(tmp_path, gate, "2.0.0"))))
    ok(duo.gdos("deploy", "shop/web", "--node", "n1", "--wait"))
    assert wait_state(duo, "shop/web@n1", "running")["version"] == "2.0.0"
    ok(duo.gdos("rollback", "shop/web@n1"))
    wait_for(lambda: status(duo)["shop/web@n1"]["version"] == "1.0.0", 30, "rolled back")
    ok(duo.gdos("stop", "shop/worker@n2"))
    ok(duo.gdos("start", "shop/worker@n2"))
    assert mismatches(duo, ["n1", "n2"]) == []

    duo.stop_daemon()
    new_pid = _restarted_by_agent(duo, "n1", "shop/worker@n1")  # while nobody watches
    back = time.time()
    duo.start_daemon()
    duo.wait_online("n1", "n2")
    _true_within_one_report(duo, ["n1", "n2"])
    ok(duo.gdos("start", "shop"))  # a round trip through both agents
    assert mismatches(duo, ["n1", "n2"]) == []
    assert status(duo)["shop/web@n1"]["version"] == "1.0.0"

    # one real transition happened while the daemon was down, and only that is recorded
    changes = [
        (e["module"], e["node"], e["state"], e["pid"]) for e in events_since(duo, "shop", back)
    ]
    assert changes == [("worker", "n1", "running", new_pid)]


def test_daemon_killed_mid_deploy_to_four_agents_converges(fleet: Fleet, tmp_path: Path) -> None:
    nodes = ["n1", "n2", "n3", "n4"]
    quad = _fleet_of(fleet, *nodes)
    gate = tmp_path / "gate"  # closed: the running version holds on until it opens
    ok(quad.gdos("package", "push", str(gated_package(tmp_path, gate, "1.0.0"))))
    ok(quad.gdos("system", "create", "app"))
    ok(quad.gdos("system", "add", "app", "svc", "--package", "gated"))
    ok(quad.gdos("deploy", "app", "--match", "n*", "--wait"))
    ok(quad.gdos("start", "app"))
    old_pids = {real_instances(quad, n)[f"app/svc@{n}"]["pid"] for n in nodes}
    ok(quad.gdos("package", "push", str(gated_package(tmp_path, gate, "2.0.0"))))

    deploy = subprocess.Popen(
        [sys.executable, "-m", "gdos.cli.main", "deploy", "app", "--match", "n*", "--wait"],
        env=quad.env(quad.daemon_home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: {r["state"] for r in status(quad, "app").values()} == {"installing"},
            60,
            "the deploy under way on every node",
        )
        quad.stop_daemon(signal.SIGKILL)
        back = time.time()
        deploy.wait(60)  # the CLI loses its daemon; it must not hang
    finally:
        deploy.kill()
    quad.start_daemon()
    quad.wait_online(*nodes)
    gate.touch()
    wait_for(
        lambda: (
            not mismatches(quad, nodes)
            and {(r["state"], r["version"]) for r in status(quad, "app").values()}
            == {("running", "2.0.0")}
        ),
        60,
        f"every node running 2.0.0 as reported (now: {mismatches(quad, nodes)})",
    )
    ok(quad.gdos("start", "app"))  # a round trip through every agent
    assert mismatches(quad, nodes) == []

    events = events_since(quad, "app", back)
    assert not [e for e in events if e["pid"] in old_pids], "an event with a pid of before"
    assert not [e for e in events if e["state"] in ("stopped", "error", "failed")], events
    assert instance_alerts(quad) == []


def test_daemon_killed_while_agents_fetch_shows_no_false_error(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Agents still fetching a new instance's package report it as installing:
    after the restart nothing reads ``error`` and no alert fires meanwhile."""
    duo = _fleet_of(fleet, "n1", "n2")
    big = build_zip(
        tmp_path / "big.zip",
        {"run": GATED, "blob.bin": os.urandom(60 * 1024 * 1024)},
        manifest={"name": "big", "version": "1.0.0", "entrypoint": "run"},
    )
    ok(duo.gdos("package", "push", str(big)))
    ok(duo.gdos("system", "create", "heavy"))
    ok(duo.gdos("system", "add", "heavy", "m", "--package", "big"))
    caches = [duo.agents[n].home / "state/agent/packages" for n in ("n1", "n2")]
    fetching = lambda c: [p for p in c.glob("*.part") if p.stat().st_size > 0]  # noqa: E731
    deploy = subprocess.Popen(
        [sys.executable, "-m", "gdos.cli.main", "deploy", "heavy", "--match", "n*", "--wait"],
        env=duo.env(duo.daemon_home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: all(fetching(c) for c in caches) or deploy.poll() is not None,
            60,
            "both agents fetching",
        )
        duo.stop_daemon(signal.SIGKILL)
        deploy.wait(60)
    finally:
        deploy.kill()
    duo.start_daemon()
    duo.wait_online("n1", "n2")
    wait_for(
        lambda: {r["state"] for r in status(duo, "heavy").values()} == {"stopped"},
        120,
        f"the resumed deploys done (now {status(duo, 'heavy')})",
    )
    states = {e["state"] for e in duo.gdos_json("events", "heavy", "-n", "1000")}
    assert not states & {"error", "failed"}, states
    assert instance_alerts(duo) == []


def test_backup_restore_while_instances_run(fleet: Fleet, tmp_path: Path) -> None:
    duo = _fleet_of(fleet, "n1", "n2")
    gate = tmp_path / "gate"
    gate.touch()
    _shop(duo, tmp_path, gate, "n1", "n2")
    outside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        ok(duo.gdos("adopt", "n1", "--name", "ext", "--pid", str(outside.pid)))
        made = duo.gdos_json("backup", "create")

        # after the backup: the restore brings back rows that are no longer true
        ok(duo.gdos("destroy", "adopted/ext@n1", "--yes"))
        ok(duo.gdos("stop", "shop/web@n2"))
        _restarted_by_agent(duo, "n1", "shop/worker@n1")
        ok(duo.gdos("package", "push", str(gated_package(tmp_path, gate, "2.0.0"))))
        ok(duo.gdos("deploy", "shop/web", "--node", "n1", "--wait"))

        ok(duo.gdos("backup", "restore", made["path"], "--yes"))
        duo.wait_online("n1", "n2")
        _true_within_one_report(duo, ["n1", "n2"])
        ok(duo.gdos("start", "shop/web@n1"))  # round trips through both agents
        ok(duo.gdos("start", "shop/worker@n2"))
        assert mismatches(duo, ["n1", "n2"]) == []
        shown = status(duo)
        assert "adopted/ext@n1" not in shown, "a destroyed adoption came back"
        assert shown["shop/web@n2"]["state"] == "stopped"
        assert shown["shop/web@n1"]["version"] == "2.0.0"
        assert outside.poll() is None
    finally:
        outside.kill()
        outside.wait()


def test_failed_instance_deploy_can_be_destroyed(fleet: Fleet, tmp_path: Path) -> None:
    """A deploy that failed before the node created the instance leaves a row
    that ``destroy`` removes, so ``system rm`` works again."""
    _fleet_of(fleet, "n1")
    gate = tmp_path / "gate"
    ok(fleet.gdos("package", "push", str(gated_package(tmp_path, gate, "1.0.0"))))
    [pushed] = fleet.gdos_json("package", "list")
    for blob in (fleet.daemon_home / "state" / "packages").rglob(f"{pushed['sha256']}*"):
        blob.unlink()  # the node cannot fetch it: the deploy fails before any install
    ok(fleet.gdos("system", "create", "lost"))
    ok(fleet.gdos("system", "add", "lost", "m", "--package", "gated"))
    assert fleet.gdos("deploy", "lost", "--node", "n1", "--wait").returncode != 0
    failed = wait_state(fleet, "lost/m@n1", "error")
    assert failed["pid"] is None and failed["error"]

    agent = fleet.agents["n1"]  # the node's fresh report keeps why it failed
    agent.kill(signal.SIGKILL)
    fleet.start_agent("n1", home=agent.home)
    wait_for(lambda: agent.log_text().count("connected to") == 2, 30, "n1 welcomed again")
    refused = fleet.gdos("start", "lost/m@n1")  # a round trip through the new session
    assert "error[instance_unknown]" in refused.stdout + refused.stderr
    assert status(fleet)["lost/m@n1"]["error"] == failed["error"]

    ok(fleet.gdos("destroy", "lost/m@n1", "--yes"))
    assert "lost/m@n1" not in status(fleet)
    ok(fleet.gdos("system", "rm", "lost"))


# -- a disk that fills -------------------------------------------------------------------------
@pytest.fixture
def state_on_small_disk() -> Iterator[Fleet]:
    """A daemon whose state folder is a 32 MiB tmpfs the test can fill."""
    with small_disk_fleet("state") as fleet:
        yield fleet


def _empty_wal(db: Path) -> None:
    """Checkpoint and truncate the WAL, so the daemon's next write needs new space."""

    def truncated() -> bool:
        conn = sqlite3.connect(str(db), timeout=5)
        try:
            busy, log, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return bool(busy == 0 and log == 0)
        finally:
            conn.close()

    wait_for(truncated, 30, "an empty WAL")


def test_states_not_stored_are_sent_again_once_space_returns(
    state_on_small_disk: Fleet, tmp_path: Path
) -> None:
    fleet = _fleet_of(state_on_small_disk, "n1")
    gate = tmp_path / "gate"
    gate.touch()
    ok(fleet.gdos("package", "push", str(gated_package(tmp_path, gate, "1.0.0"))))
    ok(fleet.gdos("system", "create", "app"))
    ok(fleet.gdos("system", "add", "app", "svc", "--package", "gated"))
    ok(fleet.gdos("deploy", "app", "--node", "n1", "--wait"))
    ok(fleet.gdos("start", "app"))
    before = status(fleet)["app/svc@n1"]["pid"]
    state = fleet.daemon_home / "state"
    daemon = fleet.daemon
    assert daemon is not None

    _empty_wal(state / "gdos.db")
    filler = fill(state)
    try:
        new_pid = _restarted_by_agent(fleet, "n1", "app/svc@n1")
        wait_for(lambda: "could not store the instance states of n1" in daemon.log_text(), 30)
        assert status(fleet)["app/svc@n1"]["pid"] == before  # not stored, so not shown
    finally:
        filler.unlink()
    wait_for(
        lambda: status(fleet)["app/svc@n1"]["pid"] == new_pid,
        60,
        "the agent's states stored once space returned",
    )
    assert "reporting again" in fleet.agents["n1"].log_text()
    assert mismatches(fleet, ["n1"]) == []
