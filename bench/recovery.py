"""Recovery after a daemon restart, for bench/run.py's ``converge20`` and ``restart1000``.

``converge20``: a small service (one ``sleep``) deployed and started on every
real agent; the daemon is killed with SIGKILL; while it is down --churn of
the services are killed too and their agents restart them (new pids), so the
daemon's last record is stale; then the daemon is started again on the same
GDOS_HOME and port. Measured from that launch: the time until every node is
back online (the floor: nothing can converge before its agent is back) and
the time until the instance view (``svc.status``, exactly what
``gdos status --json`` prints) matches the real processes, read from each
agent's pid.json and checked against the process table (pid *and* start
time), with every node shown online. Convergence must then hold for --hold
seconds: a view that matches and drifts again is reported as such.

``restart1000``: the cold time for the simulated agents to come online the
first time (the baseline), then the time for all of them to be back online
after a clean restart (SIGTERM, as ``gdos daemon stop; gdos daemon start``)
and after a crash (SIGKILL), each with the daemon on the same home and port.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import psutil
from support import Daemon, Proc, log, timed, wait_for

from gdos.pkg.archive import build_zip

SYSTEM, MODULE = "rcv", "idle"


def deploy_idle_service(daemon: Daemon, work: Path, count: int) -> None:
    """Push a one-``sleep`` package, deploy it to every agent and start it."""
    script = "#!/bin/sh\nexec sleep 100000\n"
    manifest = {"name": "rcv-idle", "version": "1.0.0", "entrypoint": "run"}
    zip_path = build_zip(work / "rcv-idle.zip", {"run": script}, manifest=manifest)
    for args in (
        ("package", "push", str(zip_path)),
        ("system", "create", SYSTEM),
        ("system", "add", SYSTEM, MODULE, "--package", "rcv-idle"),
        ("deploy", SYSTEM, "--match", "*", "--wait"),
        ("start", SYSTEM),
    ):
        timed(daemon.gdos(*args), daemon.env, timeout=600)
    wait_for(lambda: all_running(daemon, count), 120, f"{count} instances running")


def all_running(daemon: Daemon, count: int) -> bool:
    rows = daemon.call("svc.status", target=SYSTEM)["instances"]
    return len(rows) == count and all(r["state"] == "running" and r["pid"] for r in rows)


def real_pid(home: Path) -> int | None:
    """The pid of the instance's process on its node, or None when none runs."""
    pid_file = home / "state" / "agent" / "instances" / SYSTEM / MODULE / "pid.json"
    try:
        record = json.loads(pid_file.read_text())
        proc = psutil.Process(int(record["pid"]))
        if abs(proc.create_time() - float(record["create_time"])) > 0.05:
            return None  # a reused pid: not our service
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc.pid
    except (OSError, ValueError, KeyError, psutil.Error):
        return None


def mismatches(daemon: Daemon, homes: dict[str, Path]) -> list[str]:
    """Instances whose reported state or pid differs from the real process, or
    shown on an offline node (every agent runs throughout)."""
    rows = daemon.call("svc.status", target=SYSTEM)["instances"]
    wrong = [] if len(rows) == len(homes) else [f"{len(rows)} instances, not {len(homes)}"]
    for row in rows:
        real = real_pid(homes[row["node"]])
        shown = row["pid"] if row["state"] == "running" else None
        if shown != real:
            wrong.append(f"{row['instance']}: shown {row['state']} pid {row['pid']}, runs {real}")
        elif not row["node_online"]:
            wrong.append(f"{row['instance']}: shown on an offline node, whose agent runs")
    return wrong


def churn(homes: dict[str, Path], how_many: int) -> list[str]:
    """SIGKILL ``how_many`` services and wait until their agents restarted them."""
    chosen = sorted(homes)[:how_many]
    before = {node: real_pid(homes[node]) for node in chosen}
    for pid in before.values():
        if pid is not None:
            psutil.Process(pid).kill()
    wait_for(
        lambda: all(real_pid(homes[n]) not in (None, before[n]) for n in chosen),
        60,
        f"{how_many} killed services restarted by their agents",
    )
    return chosen


@dataclass
class Convergence:
    online_s: float | None = None
    converged_s: float | None = None
    held: bool = False
    drift: list[str] = field(default_factory=list)  # what was wrong last (or drifted)
    events: int = 0  # instance events the daemon recorded after the restart
    churned: int = 0  # services killed (and restarted by their agents) while it was down


def converge_after_kill(
    daemon: Daemon, homes: dict[str, Path], churned: int, timeout: float, hold: float
) -> Convergence:
    """SIGKILL ``daemon``, churn services, relaunch it; time online and convergence."""
    count, result = len(homes), Convergence(churned=min(churned, len(homes)))
    daemon.halt(signal.SIGKILL)
    churn(homes, result.churned)
    wall = time.time()
    launched = daemon.relaunch()
    deadline = launched + timeout
    while time.monotonic() < deadline:
        now = time.monotonic() - launched
        if result.online_s is None and daemon.online() >= count:
            result.online_s = now
        wrong = mismatches(daemon, homes)
        if not wrong:
            result.converged_s = now
            break
        result.drift = wrong
        time.sleep(0.1)
    if result.converged_s is not None:
        held_until = time.monotonic() + hold
        while time.monotonic() < held_until:
            wrong = mismatches(daemon, homes)
            if wrong:
                result.drift = wrong
                break
            time.sleep(0.2)
        result.held = not wrong
    if result.online_s is None and daemon.online() >= count:
        result.online_s = time.monotonic() - launched
    events = daemon.call("svc.events", target=SYSTEM, limit=1000)["events"]
    result.events = sum(1 for e in events if e["time"] >= wall)
    log(f"converged in {result.converged_s}s; {result.events} events since the restart")
    return result


def online_after_restart(
    daemon: Daemon, count: int, sig: int, timeout: float
) -> tuple[float | None, float]:
    """Seconds from the new launch until ``count`` nodes are online (None: not
    within ``timeout``), and until the new daemon answered on its control socket."""
    launched = daemon.restart(sig)
    answered = time.monotonic() - launched
    try:
        wait_for(lambda: daemon.online() >= count, timeout, f"{count} online", every=0.1)
    except AssertionError:
        return None, answered
    return time.monotonic() - launched, answered


def instance_homes(agents: list[Proc]) -> dict[str, Path]:
    """Node name -> the agent's GDOS_HOME, from the ``--name`` on its command line."""
    homes: dict[str, Path] = {}
    for agent in agents:
        argv = [str(arg) for arg in cast(list[str], agent.popen.args)]
        homes[argv[argv.index("--name") + 1]] = agent.home
    return homes
