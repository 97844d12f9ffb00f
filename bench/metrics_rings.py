"""Daemon memory for the metric history rings, run by hand: ``python bench/metrics_rings.py``.

For each cluster size (``--agents``, default 1000,10000) two fresh daemons
run one after the other with the same simulated cluster (``gdos dev
mock-cluster``) sending metrics every second:

  baseline  rings disabled (GDOS_METRIC_SAMPLES=0: samples are received,
            kept as each node's latest, but no history is stored)
  rings     the default: RING_SAMPLES per node, preallocated on the first sample

After all agents are online, each daemon runs ``--window`` seconds more
(every node sends a sample each second, so every ring is allocated within
the first second; a preallocated ring costs the same full or empty). RSS is
the median of the samples taken over the window's second half. Printed: RSS
of both, the difference per node beside the documented budget (13,200 B of
ring per node, gdos/daemon/metrics.py), the daemon's own accounting of the
bytes its rings hold (``gdos_metric_ring_bytes`` from the Prometheus
endpoint), the daemon's CPU over the window, and how many nodes had a sample
recorded within the last interval + 2 s (did the daemon keep up?).
On 2 cores, 10,000 agents at 1 s do not all stay online (the mesh, not the
rings, is the limit); use ``--interval 5`` there.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import (  # the folder is put on the path just above
    Daemon,
    Owned,
    free_port,
    gdos_argv,
    log,
    rss_mb,
    run_owned,
    wait_for,
)

from gdos.daemon.metrics import RING_SAMPLES, SAMPLES_ENV, ring_budget
from gdos.metric_catalog import NODE_METRICS


def ring_bytes(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("gdos_metric_ring_bytes "):
                return float(line.split()[1])
    return float("nan")


def phase(owned: Owned, count: int, rings: bool, window: float, every: float) -> dict[str, float]:
    """One fresh daemon + mock cluster; the figures of its window."""
    port = free_port()
    extra = ["--metrics-interval", str(every), "--prometheus", f"127.0.0.1:{port}"]
    if not rings:
        os.environ[SAMPLES_ENV] = "0"
    try:
        daemon = Daemon.start(owned, *extra)
    finally:
        os.environ.pop(SAMPLES_ENV, None)
    idle = rss_mb(daemon.proc.pid)
    token = daemon.token()
    argv = [*gdos_argv(), "dev", "mock-cluster", "--agents", str(count), "--join", token]
    began = time.monotonic()
    mock = owned.spawn(f"mock-{count}", argv, daemon.home)
    try:
        wait_for(lambda: daemon.online() >= count, 900, f"{count} simulated agents online")
        online_s = time.monotonic() - began
        log(f"{count} online in {online_s:.0f}s; measuring for {window:g}s")
        proc = psutil.Process(daemon.proc.pid)
        proc.cpu_percent(None)
        rss: list[float] = []
        start = time.monotonic()
        while time.monotonic() - start < window:
            time.sleep(1.0)
            if time.monotonic() - start >= window / 2:
                rss.append(rss_mb(daemon.proc.pid))
        cpu = proc.cpu_percent(None)
        now = time.time()
        entries = daemon.call("metrics.latest")["entries"]
        fresh = sum(1 for e in entries if e["instance"] is None and now - e["ts"] < every + 2)
        return {
            "idle": idle,
            "rss": statistics.median(rss),
            "cpu": cpu,
            "online_s": online_s,
            "fresh": float(fresh),
            "ring_bytes": ring_bytes(port),
        }
    finally:
        owned.stop(mock)
        daemon.stop()


def run(args: argparse.Namespace, owned: Owned) -> None:
    budget = ring_budget(len(NODE_METRICS))
    print(
        f"metric rings: {RING_SAMPLES} samples x {len(NODE_METRICS)} node metrics, "
        f"documented budget {budget:,} B per node; metrics every {args.interval:g} s; "
        f"{os.cpu_count()} cores, python {sys.version.split()[0]}",
        flush=True,
    )
    for count in args.agents:
        log(f"{count} simulated agents: baseline (rings disabled)")
        base = phase(owned, count, False, args.window, args.interval)
        log(f"{count} simulated agents: rings on")
        on = phase(owned, count, True, args.window, args.interval)
        delta = on["rss"] - base["rss"]
        per_node = delta * 1e6 / count
        print(f"\n== {count} simulated agents, {args.window:g}s window after all online ==")
        for name, fig in (("baseline, rings disabled", base), ("rings on", on)):
            print(
                f"  {name:<26} RSS {fig['rss']:7.1f} MB (idle {fig['idle']:.0f} MB), "
                f"CPU {fig['cpu']:5.1f} %, online in {fig['online_s']:.0f}s, "
                f"{fig['fresh']:.0f}/{count} nodes sampled within interval + 2 s, "
                f"ring bytes {fig['ring_bytes'] / 1e6:.1f} MB"
            )
        print(f"  rings cost                 {delta:7.1f} MB = {per_node:,.0f} B per node")
        print(
            f"  documented budget          {budget * count / 1e6:7.1f} MB = {budget:,} B per node "
            f"(measured / budget = {per_node / budget:.2f})"
        )
        print(
            f"  daemon's own accounting    {on['ring_bytes'] / 1e6:7.1f} MB "
            f"= {on['ring_bytes'] / count:,.0f} B per node"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--agents",
        default=[1000, 10_000],
        type=lambda text: [int(s) for s in text.split(",") if s.strip()],
        help="cluster sizes, comma-separated (default 1000,10000)",
    )
    p.add_argument("--window", type=float, default=30.0, help="s measured after all online")
    p.add_argument("--interval", type=float, default=1.0, help="agent metrics interval, s")
    args = p.parse_args(argv)
    return run_owned(lambda owned: run(args, owned))


if __name__ == "__main__":
    raise SystemExit(main())
