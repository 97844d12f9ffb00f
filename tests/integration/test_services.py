"""Packages and services end to end: real zips, a real daemon, real agents, real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Fleet, free_port, wait_for
from tests.integration.services_kit import (
    CRASH,
    FORKER,
    SLEEPER,
    alive,
    grandchild_pid,
    http_get,
    ok,
    package,
    pid_record,
    status,
    wait_state,
    web_package,
)
from tests.integration.truth_kit import events_since, mismatches, real_instances
from tests.waiting import START_WAIT


@pytest.fixture
def duo(fleet: Fleet) -> Iterator[Fleet]:
    token = fleet.token()
    for name in ("n1", "n2"):
        fleet.start_agent(name, join=token)
    fleet.wait_online("n1", "n2")
    yield fleet


def _system(fleet: Fleet, name: str, *modules: tuple[str, str, list[str]]) -> None:
    ok(fleet.gdos("system", "create", name))
    for module, pkg, extra in modules:
        ok(fleet.gdos("system", "add", name, module, "--package", pkg, *extra))


def test_web_service_lifecycle_on_two_agents(duo: Fleet, tmp_path: Path) -> None:
    port1, port2 = free_port(), free_port()
    zip_path = web_package(tmp_path, port1)
    out = ok(duo.gdos("package", "push", str(zip_path)))
    assert "web@1.0.0 stored" in out
    assert "already stored" in ok(duo.gdos("package", "push", str(zip_path)))
    [listed] = duo.gdos_json("package", "list")
    assert (listed["name"], listed["version"]) == ("web", "1.0.0")

    probe2 = f"http://127.0.0.1:{port2}/"
    _system(
        duo,
        "shop",
        ("web-a", "web", []),
        ("web-b", "web", ["--arg", str(port2), "--probe-http", probe2, "--env", "GREETING=hey"]),
    )
    ok(duo.gdos("deploy", "shop/web-a", "--node", "n1", "--wait"))
    ok(duo.gdos("deploy", "shop/web-b", "--node", "n2", "--wait"))
    rows = status(duo, "shop")
    assert {rows["shop/web-a@n1"]["state"], rows["shop/web-b@n2"]["state"]} == {"stopped"}

    out = ok(duo.gdos("start", "shop"))
    assert "shop/web-a@n1: running" in out and "shop/web-b@n2: running" in out
    assert http_get(port1) == "hello 1.0.0"
    assert http_get(port2) == "hey 1.0.0"
    rows = status(duo, "shop")
    assert rows["shop/web-a@n1"]["pid"] == pid_record(duo, "n1", "shop", "web-a")["pid"]
    assert (
        rows["shop/web-a@n1"]["uptime"] is not None and rows["shop/web-a@n1"]["version"] == "1.0.0"
    )

    grandchild = grandchild_pid(duo, "n1", "shop", "web-a")
    assert alive(grandchild)
    ok(duo.gdos("stop", "shop/web-a"))
    assert status(duo)["shop/web-a@n1"]["state"] == "stopped"
    assert http_get(port1) is None
    wait_for(lambda: not alive(grandchild), 5, "the grandchild killed with its group")

    old_pid = status(duo)["shop/web-b@n2"]["pid"]
    ok(duo.gdos("restart", "shop/web-b@n2"))
    row = status(duo)["shop/web-b@n2"]
    assert row["state"] == "running" and row["pid"] != old_pid
    assert http_get(port2) == "hey 1.0.0"

    refused = duo.gdos("package", "rm", "web@1.0.0")
    assert refused.returncode != 0 and "package_in_use" in refused.stderr

    ok(duo.gdos("destroy", "shop", "--yes"))
    assert status(duo, "shop") == {}
    assert http_get(port2) is None
    ok(duo.gdos("package", "rm", "web@1.0.0"))


def test_new_version_keeps_previous_and_rollback(duo: Fleet, tmp_path: Path) -> None:
    port = free_port()
    ok(duo.gdos("package", "push", str(web_package(tmp_path, port, "1.0.0"))))
    _system(duo, "app", ("web", "web", []))
    ok(duo.gdos("deploy", "app", "--node", "n1", "--wait"))
    ok(duo.gdos("start", "app"))
    assert http_get(port) == "hello 1.0.0"

    ok(duo.gdos("package", "push", str(web_package(tmp_path, port, "2.0.0"))))
    ok(duo.gdos("deploy", "app", "--node", "n1", "--wait"))  # latest pushed: 2.0.0
    row = wait_state(duo, "app/web@n1", "running")
    assert (row["version"], row["previous_version"]) == ("2.0.0", "1.0.0")
    assert http_get(port) == "hello 2.0.0"

    ok(duo.gdos("rollback", "app/web@n1"))
    row = wait_state(duo, "app/web@n1", "running")
    assert row["version"] == "1.0.0"
    assert http_get(port) == "hello 1.0.0"


def test_crashing_service_backs_off_then_fails(duo: Fleet, tmp_path: Path) -> None:
    restart = {"policy": "on-failure", "max_retries": 3, "backoff": 0.1, "window": 60}
    ok(duo.gdos("package", "push", str(package(tmp_path, "crash", CRASH, restart=restart))))
    _system(duo, "bad", ("crash", "crash", []))
    ok(duo.gdos("deploy", "bad", "--node", "n1", "--wait"))
    duo.gdos("start", "bad")  # may report running or error: it dies at once either way
    row = wait_state(duo, "bad/crash@n1", "failed")
    assert row["restarts"] >= 3
    assert row["error"]
    states = [e["state"] for e in duo.gdos_json("events", "bad")]
    assert "backoff" in states and states[-1] == "failed"


def test_agent_killed_and_restarted_readopts(duo: Fleet, tmp_path: Path) -> None:
    restart = {"policy": "always", "backoff": 0.1}
    ok(duo.gdos("package", "push", str(package(tmp_path, "sleeper", SLEEPER, restart=restart))))
    _system(duo, "bg", ("a", "sleeper", []), ("b", "sleeper", []))
    ok(duo.gdos("deploy", "bg", "--node", "n1", "--wait"))
    ok(duo.gdos("start", "bg"))
    pid_a = status(duo)["bg/a@n1"]["pid"]
    record_b = pid_record(duo, "n1", "bg", "b")

    agent = duo.agents["n1"]
    killed = time.time()
    agent.kill(signal.SIGKILL)
    assert alive(pid_a), "the service must not notice the agent's death"
    # b dies while the agent is away and its pid is taken by an unrelated process.
    subprocess.run(["kill", "-9", str(record_b["pid"])], check=True)
    wait_for(lambda: not alive(record_b["pid"]), 5, "b gone")
    # It lives until the test ends it: a sleep of its own ran out under load and
    # read as "the agent touched the impostor".
    impostor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    try:
        pid_file = agent.home / "state/agent/instances/bg/b/pid.json"
        pid_file.write_text(json.dumps({**record_b, "pid": impostor.pid}))

        duo.start_agent("n1", home=agent.home)
        rows = _restarted_agent_reported(duo, "bg/b@n1", record_b["pid"])
        row_a, row_b = rows["bg/a@n1"], rows["bg/b@n1"]
        assert row_a["state"] == "running", row_a
        assert row_a["pid"] == pid_a and row_a["restarts"] == 0
        assert row_b["pid"] != impostor.pid
        assert impostor.poll() is None, "a process that reused the pid must never be touched"
        # /proc agrees: one process per instance (no duplicate), the ones status shows
        real = real_instances(duo, "n1")
        assert {k: v["pid"] for k, v in real.items()} == {"bg/a@n1": pid_a, "bg/b@n1": row_b["pid"]}
        assert mismatches(duo, ["n1"]) == []
        # a was re-adopted silently; b's restart is all that happened
        changes = {(e["module"], e["state"]) for e in events_since(duo, "bg", killed)}
        assert {m for m, _ in changes} == {"b"} and ("b", "running") in changes
    finally:
        impostor.kill()
        impostor.wait()


def _restarted_agent_reported(fleet: Fleet, restarted: str, old_pid: int) -> dict[str, Any]:
    """Status once the restarted agent's own report is stored: ``restarted`` runs
    again under a new pid. Until then status shows what the daemon knew before
    the kill (an offline node's instances keep their last state), so neither
    "node online" (the old session may not be noticed gone yet) nor "running"
    says that the new agent has reported."""

    def reported() -> dict[str, Any] | None:
        rows = status(fleet)
        row = rows.get(restarted, {})
        return rows if row.get("state") == "running" and row.get("pid") != old_pid else None

    what = f"the restarted agent to report {restarted} running again"
    return dict(wait_for(reported, START_WAIT, what))


def test_match_strategy_supervises_the_daemonised_process(duo: Fleet, tmp_path: Path) -> None:
    zip_path = package(
        tmp_path,
        "forker",
        FORKER,
        pid_strategy="match",
        process_name="gdos-forked-svc",
        match_timeout=10,
        restart={"policy": "no"},
    )
    ok(duo.gdos("package", "push", str(zip_path)))
    _system(duo, "legacy", ("d", "forker", []))
    ok(duo.gdos("deploy", "legacy", "--node", "n1", "--wait"))
    ok(duo.gdos("start", "legacy"))
    row = status(duo)["legacy/d@n1"]
    assert row["state"] == "running"
    import psutil

    assert psutil.Process(row["pid"]).cmdline()[0] == "gdos-forked-svc"
    ok(duo.gdos("stop", "legacy"))
    wait_for(lambda: not alive(row["pid"]), 10, "the matched process stopped")


def test_adopt_by_pid_file(duo: Fleet, tmp_path: Path) -> None:
    pid_file = tmp_path / "ext.pid"
    start_cmd = (
        f"nohup {sys.executable} -c 'import time; time.sleep(3600)' >/dev/null 2>&1 & "
        f"echo $! > {pid_file}"
    )
    subprocess.run(["sh", "-c", start_cmd], check=True)
    first = int(pid_file.read_text())
    try:
        out = ok(
            duo.gdos(
                "adopt",
                "n1",
                "--name",
                "ext",
                "--pid-file",
                str(pid_file),
                "--start-cmd",
                start_cmd,
            )
        )
        assert "adopted/ext@n1: running" in out
        assert status(duo)["adopted/ext@n1"]["pid"] == first
        ok(duo.gdos("stop", "adopted/ext@n1"))
        wait_for(lambda: not alive(first), 15, "the adopted process stopped")
        assert status(duo)["adopted/ext@n1"]["state"] == "stopped"
        ok(duo.gdos("start", "adopted/ext@n1"))
        row = wait_state(duo, "adopted/ext@n1", "running")
        assert row["pid"] == int(pid_file.read_text()) != first
    finally:
        for pid in {first, int(pid_file.read_text())}:
            subprocess.run(["kill", "-9", str(pid)], capture_output=True)


def test_three_levels_start_in_order_and_stop_in_reverse(duo: Fleet, tmp_path: Path) -> None:
    ok(duo.gdos("package", "push", str(package(tmp_path, "sleeper", SLEEPER))))
    _system(
        duo,
        "tri",
        ("db", "sleeper", []),
        ("api", "sleeper", ["--after", "db"]),
        ("web", "sleeper", ["--after", "api"]),
    )
    levels = duo.gdos_json("system", "show", "tri")["levels"]
    assert levels == [["db"], ["api"], ["web"]]
    ok(duo.gdos("deploy", "tri", "--match", "n*", "--wait"))
    ok(duo.gdos("start", "tri"))
    assert {r["state"] for r in status(duo, "tri").values()} == {"running"}
    ok(duo.gdos("stop", "tri"))

    events = duo.gdos_json("events", "tri", "-n", "500")

    def first(module: str, state: str) -> float:
        return min(e["time"] for e in events if e["module"] == module and e["state"] == state)

    def last(module: str, state: str) -> float:
        return max(e["time"] for e in events if e["module"] == module and e["state"] == state)

    assert last("db", "running") < first("api", "starting")
    assert last("api", "running") < first("web", "starting")
    assert last("web", "stopped") < first("api", "stopping")
    assert last("api", "stopped") < first("db", "stopping")


def test_dependency_cycle_refused(fleet: Fleet, tmp_path: Path) -> None:
    ok(fleet.gdos("package", "push", str(package(tmp_path, "sleeper", SLEEPER))))
    _system(fleet, "loop", ("a", "sleeper", []), ("b", "sleeper", ["--after", "a"]))
    result = fleet.gdos("system", "add", "loop", "a", "--package", "sleeper", "--after", "b")
    assert result.returncode == 1
    assert "error[dependency_cycle]" in result.stderr and "a -> b -> a" in result.stderr.replace(
        "b -> a -> b", "a -> b -> a"
    )
    assert fleet.gdos_json("system", "show", "loop")["levels"] == [["a"], ["b"]]


def test_maintenance_node_refuses_deploy_and_start(duo: Fleet, tmp_path: Path) -> None:
    ok(duo.gdos("package", "push", str(package(tmp_path, "sleeper", SLEEPER))))
    _system(duo, "m", ("s", "sleeper", []))
    ok(duo.gdos("node", "drain", "n1"))
    result = duo.gdos("deploy", "m", "--node", "n1", "--wait")
    assert result.returncode == 1
    assert "node_maintenance" in result.stdout and "'gdos node enable n1'" in result.stdout
    assert "m/s@n1" not in status(duo)
    ok(duo.gdos("node", "enable", "n1"))
    ok(duo.gdos("deploy", "m", "--node", "n1", "--wait"))
    ok(duo.gdos("start", "m"))
    ok(duo.gdos("node", "disable", "n1"))
    wait_state(duo, "m/s@n1", "stopped")  # a disabled node stops its instances
    result = duo.gdos("start", "m")
    assert result.returncode == 1 and "node_disabled" in result.stdout


def test_invalid_packages_refused_with_field_messages(fleet: Fleet, tmp_path: Path) -> None:
    from gdos.pkg.archive import build_zip

    bad = build_zip(
        tmp_path / "bad.zip",
        {"run": SLEEPER},
        manifest={"name": "x", "version": "1", "entrypoint": "/abs", "probe": {"type": "ftp"}},
    )
    result = fleet.gdos("package", "push", str(bad))
    assert result.returncode == 1
    assert "error[manifest_invalid]" in result.stderr
    assert "entrypoint" in result.stderr and "probe.type" in result.stderr

    import zipfile

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("service.json", json.dumps({"name": "e", "version": "1", "entrypoint": "run"}))
        z.writestr("run", SLEEPER)
        z.writestr("../../escape", "x")
    result = fleet.gdos("package", "push", str(evil))
    assert result.returncode == 1 and "error[archive_unsafe]" in result.stderr
    assert fleet.gdos_json("package", "list") == []


def test_daemon_restart_mid_deploy_ends_in_definite_state(duo: Fleet, tmp_path: Path) -> None:
    import os

    big = package(tmp_path, "big", SLEEPER)
    from gdos.pkg.archive import build_zip

    big = build_zip(
        tmp_path / "big.zip",
        {"run": SLEEPER, "blob.bin": os.urandom(40 * 1024 * 1024)},
        manifest={"name": "big", "version": "1.0.0", "entrypoint": "run"},
    )
    ok(duo.gdos("package", "push", str(big)))
    _system(duo, "heavy", ("m", "big", []))
    ok(duo.gdos("deploy", "heavy", "--node", "n1", "--node", "n2", "--no-wait"))
    duo.stop_daemon(signal.SIGKILL)
    duo.start_daemon()
    duo.wait_online("n1", "n2")
    for node in ("n1", "n2"):
        row = wait_state(duo, f"heavy/m@{node}", ("stopped", "error"), timeout=60)
        if row["state"] == "error":
            assert "deploy again" in row["error"]
    ok(duo.gdos("deploy", "heavy", "--node", "n1", "--node", "n2", "--wait"))
    assert {r["state"] for r in status(duo, "heavy").values()} == {"stopped"}


def test_agent_killed_mid_fetch_resumes_and_the_operation_ends(duo: Fleet, tmp_path: Path) -> None:
    import os

    from gdos.pkg.archive import build_zip

    big = build_zip(
        tmp_path / "big.zip",
        {"run": SLEEPER, "blob.bin": os.urandom(60 * 1024 * 1024)},
        manifest={"name": "big", "version": "1.0.0", "entrypoint": "run"},
    )
    ok(duo.gdos("package", "push", str(big)))
    _system(duo, "heavy", ("m", "big", []))
    agent = duo.agents["n1"]
    cache = agent.home / "state/agent/packages"
    deploy = subprocess.Popen(
        [sys.executable, "-m", "gdos.cli.main", "deploy", "heavy", "--node", "n1", "--wait"],
        env=duo.env(duo.daemon_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        parts = lambda: [p for p in cache.glob("*.part") if p.stat().st_size > 0]  # noqa: E731
        wait_for(lambda: parts() or deploy.poll() is not None, 30, "a partial download")
        agent.kill(signal.SIGKILL)
        partial = parts()[0].stat().st_size if parts() else 0
        duo.start_agent("n1", home=agent.home)
        out, err = deploy.communicate(timeout=30)  # the lost operation must not hang
    finally:
        deploy.kill()
    if partial:  # the fetch was interrupted (not already finished): it ends as a failure
        assert deploy.returncode == 1, out + err
        # offline at once (closed connection), or back before that and the operation unknown
        assert "went offline during the operation" in out or "lost the operation" in out
    duo.wait_online("n1")
    ok(duo.gdos("deploy", "heavy", "--node", "n1", "--wait"))
    assert status(duo, "heavy")["heavy/m@n1"]["state"] == "stopped"
    if partial:
        assert "resuming the fetch" in agent.log_text()
