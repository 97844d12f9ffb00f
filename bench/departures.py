"""How fast a leaving agent shows offline, run by hand: ``python bench/departures.py``.

One daemon (``--offline-after`` seconds, default 10, heartbeat 1 s) and one
real agent on this host. Each round starts the agent, waits until it is
online, then ends it one of three ways and times until ``node.list`` (polled
in-process every 10 ms) says offline:

  goodbye   SIGTERM: the agent ends its commands and says ``bye``
  closed    SIGKILL: the kernel closes the TCP connection; the mesh
            socket's monitor reports it (gdos/daemon/departures.py)
  silent    SIGSTOP: the connection stays, messages stop; only the
            --offline-after sweep notices (the baseline)

Prints the median of --rounds per way and its ratio to the silent baseline
measured in the same run. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import Daemon, Owned, gdos_argv, log, run_owned, wait_for

WAYS = {"goodbye": signal.SIGTERM, "closed": signal.SIGKILL, "silent": signal.SIGSTOP}


def _online(daemon: Daemon) -> bool:
    nodes = daemon.call("node.list")["nodes"]
    return bool(nodes and nodes[0]["online"])


def _round(owned: Owned, daemon: Daemon, home: Path, sig: int, token: str | None) -> float:
    link = ["--join", token] if token else []
    argv = [*gdos_argv(), "agent", "run", "--name", "b1", "--backoff-max", "0.5", *link]
    agent = owned.spawn("agent", argv, home)
    wait_for(lambda: _online(daemon), 60, "the agent online")
    began = time.monotonic()
    os.killpg(agent.pid, sig)
    wait_for(lambda: not _online(daemon), 600, "the agent offline", every=0.01)
    took = time.monotonic() - began
    if sig == signal.SIGSTOP:
        os.killpg(agent.pid, signal.SIGCONT)
    owned.stop(agent)
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--offline-after", type=float, default=10.0)
    args = parser.parse_args(argv)

    def work(owned: Owned) -> None:
        daemon = Daemon.start(owned, "--heartbeat", "1", "--offline-after", str(args.offline_after))
        home = owned.home("gba-")
        token: str | None = daemon.token(uses=1)
        figures: dict[str, float] = {}
        for way, sig in WAYS.items():
            times = []
            for _ in range(args.rounds):
                times.append(_round(owned, daemon, home, sig, token))
                token = None  # enrolled: the agent remembers the daemon
            figures[way] = statistics.median(times)
            log(
                f"{way:8s} median {figures[way]:7.3f}s over {args.rounds} rounds: "
                + ", ".join(f"{t:.3f}" for t in times)
            )
        base = figures["silent"]
        print(f"\noffline after the agent leaves (--offline-after {args.offline_after:g}s)")
        for way, took in figures.items():
            print(f"  {way:8s} {took:7.3f}s  {took / base:6.3f} x silent")

    return run_owned(work)


if __name__ == "__main__":
    raise SystemExit(main())
