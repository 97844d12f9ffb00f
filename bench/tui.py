"""Dashboard CPU, run by hand: ``python bench/tui.py [--seconds 60] [--agents 1000]``.

Starts a daemon (metrics every 1 s, heartbeat 5 s, offline after 20 s) in a
temporary GDOS_HOME, and measures how much CPU ``gdos tui`` uses while it
shows the live Nodes table:

  baseline  the dashboard on the empty daemon (no nodes), for --seconds
  loaded    the dashboard with --agents simulated agents (``gdos dev
            mock-cluster``) online, each sending metrics every second, so
            every row changes every second, for --seconds

The dashboard runs in a child process (this file with ``--child``):
``GdosApp`` under ``App.run_test(size=(200, 60), headless=True)``. The figure
is the child's CPU time (user + system, psutil) over the window divided by the
wall time, as a percentage of one core; the target is <= 30 %. Headless
Textual lays out and composes every frame but does not write it to a
terminal, so a real terminal costs somewhat more. Figures are printed, never
asserted. Every process started here is killed with its process group on the
way out, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from support import Daemon, Owned, Proc, gdos_argv, log, run_owned, wait_for  # noqa: E402

# This file is named tui.py: take its folder off the path again so that
# ``import tui`` finds the dashboard package, not this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))

TARGET = 30.0  # % of one core
SIZE = (200, 60)
DAEMON_FLAGS = ("--metrics-interval", "1", "--heartbeat", "5", "--offline-after", "20")


# -- the child: the dashboard, headless --------------------------------------------


async def run_dashboard(expect: int, lifetime: float) -> None:
    """Run the app until killed (or ``lifetime``); print ``ready`` once it shows ``expect`` rows."""
    from gdos.tui.app import GdosApp
    from gdos.tui.nodes import NodesView

    app = GdosApp(refresh=1.0)
    async with app.run_test(size=SIZE, headless=True):
        view = app.query_one(NodesView)
        deadline, ready = time.monotonic() + lifetime, False
        while time.monotonic() < deadline:
            if not ready and app.connected and len(view.rows) >= expect:
                print(f"ready rows={len(view.rows)}", flush=True)
                ready = True
            await asyncio.sleep(0.25)


# -- the parent: processes and figures -------------------------------------------------


def start_dashboard(owned: Owned, daemon: Daemon, expect: int, lifetime: float) -> Proc:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child"]
    argv += ["--expect", str(expect), "--lifetime", str(lifetime)]
    child = owned.spawn(f"tui-{expect}", argv, daemon.home)
    wait_for(
        lambda: "ready" in child.log_text() or not child.alive(),
        120,
        f"the dashboard to show {expect} rows",
    )
    if not child.alive():
        raise RuntimeError(f"the dashboard exited:\n{child.log_text()[-2000:]}")
    return child


def cpu_percent(pid: int, seconds: float) -> float:
    """CPU time (user + system) of ``pid`` over ``seconds`` of wall time, in % of one core."""
    proc = psutil.Process(pid)
    before, began = proc.cpu_times(), time.monotonic()
    time.sleep(seconds)
    after, wall = proc.cpu_times(), time.monotonic() - began
    used = (after.user - before.user) + (after.system - before.system)
    return 100.0 * used / wall


def measure(owned: Owned, daemon: Daemon, expect: int, seconds: float) -> float:
    child = start_dashboard(owned, daemon, expect, lifetime=seconds + 900)
    log(f"dashboard showing {expect} rows; measuring its CPU for {seconds:g}s")
    try:
        return cpu_percent(child.pid, seconds)
    finally:
        owned.stop(child, grace=5.0)


def bench(args: argparse.Namespace, owned: Owned) -> None:
    log("starting a daemon (metrics 1s, heartbeat 5s, offline after 20s)")
    daemon = Daemon.start(owned, *DAEMON_FLAGS)
    baseline = measure(owned, daemon, 0, args.seconds)

    log(f"starting a mock cluster of {args.agents} simulated agents")
    token = daemon.token(uses=args.agents)
    argv = [*gdos_argv(), "dev", "mock-cluster", "--agents", str(args.agents), "--join", token]
    mock = owned.spawn("mock-cluster", argv, daemon.home)
    began = time.monotonic()
    wait_for(
        lambda: daemon.online() >= args.agents or not mock.alive(),
        600,
        f"{args.agents} simulated agents online",
        every=0.5,
    )
    if not mock.alive():
        raise RuntimeError(f"the mock cluster exited:\n{mock.log_text()[-2000:]}")
    log(f"{args.agents} agents online in {time.monotonic() - began:.1f}s")
    loaded = measure(owned, daemon, args.agents, args.seconds)

    print(
        f"== gdos tui CPU: headless {SIZE[0]}x{SIZE[1]}, refresh 1s, "
        f"{args.seconds:g}s window, agents send metrics every 1s =="
    )
    print(f"{'baseline, empty daemon (0 nodes)':<40} {baseline:6.1f} % of one core")
    verdict = "ok" if loaded <= TARGET else "OVER TARGET"
    print(
        f"{f'{args.agents} simulated agents':<40} {loaded:6.1f} % of one core"
        f"   target <= {TARGET:g} %   {verdict}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="measuring window per phase, s")
    p.add_argument("--agents", type=int, default=1000, help="simulated agents for the loaded phase")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--lifetime", type=float, default=960.0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        asyncio.run(run_dashboard(args.expect, args.lifetime))
        return 0
    return run_owned(lambda owned: bench(args, owned))


if __name__ == "__main__":
    raise SystemExit(main())
