"""What really runs, read from /proc, to hold ``gdos status`` against.

The agents of a test fleet run on this machine, so the truth about every
instance is one ``psutil`` away: the processes whose environment carries
the instance's ``GDOS_INSTANCE_HOME`` marker, the main one being the one
whose parent is not among them. Services built by ``gated_package`` report
their version in their environment (``VERSION``), so the version that runs
is read from the process too, never from gdos's own records.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import psutil
from gdos.agent.procs import marked_processes
from gdos.agent.supervisor import MARKER

from tests.harness import Fleet
from tests.integration.services_kit import package, status

# Ignores SIGTERM until the gate file exists, so a deploy (which stops the
# running version first) stays under way until the test opens the gate.
GATED = f"""#!{sys.executable}
import os, signal, time
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
print("up", os.environ.get("VERSION"), flush=True)
while not (stop and os.path.exists(os.environ["GATE"])):
    time.sleep(0.05)
"""


def gated_package(tmp: Path, gate: Path, version: str) -> Path:
    restart = {"policy": "always", "backoff": 0.1, "max_retries": 50}
    return package(
        tmp, "gated", GATED, version, env={"GATE": str(gate)}, restart=restart, stop_timeout=120
    )


def real_instances(fleet: Fleet, node: str) -> dict[str, dict[str, Any]]:
    """``system/module@node`` -> the pid and version running now (None, None when down)."""
    root = fleet.agents[node].home / "state" / "agent" / "instances"
    found: dict[str, dict[str, Any]] = {}
    for home in sorted(p.parent for p in root.glob("*/*/instance.json")):
        if json.loads((home / "instance.json").read_text()).get("kind") != "managed":
            continue  # an adopted process carries no marker; tests check those by pid
        procs = marked_processes(MARKER, str(home))
        pids = {p.pid for p in procs}
        mains = []
        for ref in procs:
            with contextlib.suppress(psutil.Error):
                if psutil.Process(ref.pid).ppid() not in pids:
                    mains.append(ref.pid)
        assert len(mains) <= 1, f"{home}: duplicate main processes {mains}"
        version = None
        if mains:
            with contextlib.suppress(psutil.Error):
                version = psutil.Process(mains[0]).environ().get("VERSION")
        name = f"{home.parent.name}/{home.name}@{node}"
        found[name] = {"pid": mains[0] if mains else None, "version": version}
    return found


def mismatches(fleet: Fleet, nodes: list[str]) -> list[str]:
    """Every way ``gdos status`` differs from /proc on ``nodes`` (empty: it is true)."""
    shown = status(fleet)
    problems = []
    for node in nodes:
        real = real_instances(fleet, node)
        listed = {k for k, v in shown.items() if v["node"] == node and v["kind"] != "adopted"}
        for extra in sorted(listed - set(real)):
            problems.append(f"{extra} is listed but the node has no such instance")
        for name, truth in real.items():
            row = shown.get(name)
            if row is None:
                problems.append(f"{name} runs {truth} but is not listed")
                continue
            running = truth["pid"] is not None
            if (row["state"] == "running") != running or row["pid"] != truth["pid"]:
                problems.append(f"{name}: status {row['state']} pid {row['pid']}, real {truth}")
            elif running and row["version"] != truth["version"]:
                problems.append(f"{name}: status version {row['version']}, real {truth}")
    return problems


def events_since(fleet: Fleet, system: str, since: float) -> list[dict[str, Any]]:
    return [e for e in fleet.gdos_json("events", system, "-n", "1000") if e["time"] >= since]


def instance_alerts(fleet: Fleet) -> list[dict[str, Any]]:
    return [a for a in fleet.gdos_json("alert", "list") if a["rule"] == "instance-failed"]
