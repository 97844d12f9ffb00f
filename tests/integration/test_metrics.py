"""Metrics end to end: a real service burning CPU, gdos top, gdos metrics, Prometheus."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gdos.pkg.archive import build_zip
from tests.harness import Fleet, free_port, short_home, wait_for

MB = 1024 * 1024

# Holds 100 MB (written, so resident) and spins one thread at a full core.
BURN = f"""#!{sys.executable}
import threading, time
blob = b"x" * (100 * 1024 * 1024)
def spin():
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()
print("burning", flush=True)
while True:
    time.sleep(3600)
"""


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def deploy_burn(fleet: Fleet, tmp: Path, node: str) -> None:
    """Push, deploy and start shop/burn on ``node`` through the real CLI."""
    manifest = {"name": "burn", "version": "1.0.0", "entrypoint": "run"}
    zip_path = build_zip(tmp / "burn-1.0.0.zip", {"run": BURN}, manifest=manifest)
    ok(fleet.gdos("package", "push", str(zip_path)))
    ok(fleet.gdos("system", "create", "shop"))
    ok(fleet.gdos("system", "add", "shop", "burn", "--package", "burn"))
    ok(fleet.gdos("deploy", "shop/burn", "--node", node, "--wait"))
    ok(fleet.gdos("start", "shop/burn"))


def history(fleet: Fleet, target: str) -> dict[str, Any] | None:
    """``gdos metrics TARGET --json`` keyed by metric, or None while it is refused."""
    result = fleet.gdos("metrics", target, "--json")
    if result.returncode != 0:
        return None
    reply = json.loads(result.stdout)
    return {s["name"]: s for s in reply["series"]}


def scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_burning_service_top_metrics_and_prometheus(fleet: Fleet, tmp_path: Path) -> None:
    port = free_port()
    fleet.stop_daemon()
    fleet.start_daemon("--prometheus", f"127.0.0.1:{port}")
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    deploy_burn(fleet, tmp_path, "n1")

    def burning() -> bool:
        series = history(fleet, "shop/burn@n1")
        return (
            bool(series)
            and (series["cpu"]["last"] or 0) > 20
            and (series["rss"]["last"] or 0) > 80 * MB
        )

    wait_for(burning, 15, "shop/burn@n1 at > 20% CPU and > 80 MB RSS")
    series = history(fleet, "shop/burn@n1")
    assert series is not None
    assert set(series) == {"cpu", "rss", "read", "write", "threads", "open_files"}
    assert series["threads"]["last"] >= 2
    assert series["rss"]["unit"] == "bytes" and series["cpu"]["min"] <= series["cpu"]["max"]

    rows = json.loads(ok(fleet.gdos("top", "--instances", "--once", "--json")))
    [row] = [r for r in rows if r["key"] == "shop/burn@n1"]
    assert (row["node"], row["instance"]) == ("n1", "shop/burn")
    assert row["rss"] > 80 * MB
    text = ok(fleet.gdos("top", "--instances", "--once", "--sort", "rss"))
    assert "INSTANCE" in text and "RSS" in text and "OPEN_FILES" in text
    assert "shop/burn" in text and "MiB" in text

    ok(fleet.gdos("exec", "n1", "--", "true"))
    families = scrape(port)
    [cpu] = families["gdos_node_cpu_percent"].samples
    assert cpu.labels == {"node": "n1"}
    burn = [
        s
        for s in families["gdos_instance_rss_bytes"].samples
        if s.labels["instance"] == "shop/burn"
    ]
    assert burn and burn[0].labels == {"node": "n1", "instance": "shop/burn"}
    assert burn[0].value > 80 * MB
    assert families["gdos_instance_cpu_percent"].samples
    assert families["gdos_nodes_online"].samples[0].value == 1
    assert families["gdos_nodes_known"].samples[0].value == 1
    assert families["gdos_mesh_frames_in"].samples[0].value > 0
    assert families["gdos_mesh_frames_out"].samples[0].value > 0
    severities = {s.labels["severity"]: s.value for s in families["gdos_alerts_active"].samples}
    assert {"warning", "critical"} <= set(severities)
    tasks = {s.labels["status"]: s.value for s in families["gdos_tasks"].samples}
    assert sum(tasks.values()) >= 1
    assert families["gdos_metric_ring_bytes"].samples[0].value >= 13_200 + 10_320

    ok(fleet.gdos("destroy", "shop/burn", "--yes", "--wait"))
    wait_for(
        lambda: fleet.gdos("metrics", "shop/burn@n1").returncode != 0,
        10,
        "shop/burn@n1's history freed after destroy",
    )
    assert "instance_unknown" in fleet.gdos("metrics", "shop/burn@n1").stderr


def test_nodes_in_top_and_history_growing(fleet: Fleet) -> None:
    token = fleet.token()
    for name in ("n1", "n2"):
        fleet.start_agent(name, join=token)
    fleet.wait_online("n1", "n2")

    def top_rows() -> dict[str, Any]:
        return {r["node"]: r for r in fleet.gdos_json("top", "--once", "--sort", "name")}

    wait_for(lambda: all("cpu" in r for r in top_rows().values()), 10, "both nodes have load")
    rows = fleet.gdos_json("top", "--once", "--sort", "name")
    assert [r["node"] for r in rows] == ["n1", "n2"]
    for row in rows:
        assert row["online"] is True and row["state"] == "normal"
        assert {"cpu", "mem", "disk", "load1", "net_rx", "net_tx"} <= set(row)
    text = ok(fleet.gdos("top", "--once"))
    assert "NODE" in text and "STATUS" in text and "n1" in text and "n2" in text

    first = history(fleet, "n1")
    assert first is not None and len(first) == 8
    count = first["cpu"]["samples"]
    wait_for(
        lambda: (history(fleet, "n1") or {})["cpu"]["samples"] >= count + 2,
        10,
        "n1's history growing",
    )
    text = ok(fleet.gdos("metrics", "n1", "--since", "5m", "--metric", "cpu", "-m", "mem"))
    assert "cpu" in text and "mem" in text and "disk_read" not in text
    assert any(block in text for block in "▁▂▃▄▅▆▇█")

    bad = fleet.gdos("metrics", "n1", "--metric", "rss")
    assert bad.returncode != 0 and "choose from cpu" in bad.stderr
    assert "node_unknown" in fleet.gdos("metrics", "nowhere").stderr
    assert "SYSTEM/MODULE" in fleet.gdos("metrics", "shop/web").stderr
    assert "cannot sort by" in fleet.gdos("top", "--once", "--sort", "bogus").stderr

    ok(fleet.gdos("node", "rm", "n2"))
    fleet.agents["n2"].kill()
    assert [r["node"] for r in fleet.gdos_json("top", "--once")] == ["n1"]


def test_prometheus_refuses_bad_and_busy_addresses(fleet: Fleet) -> None:
    home = short_home("gd-prom-")
    fleet.homes.append(home)
    mesh = f"tcp://127.0.0.1:{free_port()}"
    bad = fleet.gdos("daemon", "run", "--mesh", mesh, "--prometheus", "9464", home=home)
    assert bad.returncode != 0 and "is not HOST:PORT" in bad.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        taken = fleet.gdos("daemon", "run", "--mesh", mesh, "--prometheus", address, home=home)
    assert taken.returncode != 0 and "cannot serve Prometheus metrics" in taken.stderr
