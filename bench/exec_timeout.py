"""Exec timeout benchmark, run by hand: ``python bench/exec_timeout.py``.

One daemon and one real agent. Runs ``gdos exec NODE --timeout 2s`` on a
plain ``sleep 100`` (the baseline) and on ``sh -c 'sleep 1; echo a; sleep
100'`` (a shell whose child is orphaned by the kill), --runs times each, and
prints the host's recorded duration (end - start) and the CLI's wall time,
with the shell case's overrun past the 2 s deadline as a ratio of the
baseline's. Asserts nothing; everything started here is killed on the way out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import Fleet

CASES = {
    "plain sleep 100": ["sleep", "100"],
    "sh -c 'sleep 1; echo a; sleep 100'": ["sh", "-c", "sleep 1; echo a; sleep 100"],
}
TIMEOUT = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    fleet = Fleet()
    try:
        fleet.start_daemon()
        fleet.start_agent("n1", join=fleet.token())
        fleet.wait_online("n1")
        overruns = {}
        for label, argv in CASES.items():
            hosts, walls = [], []
            for _ in range(runs):
                started = time.monotonic()
                result = fleet.gdos(
                    "exec", "n1", "--timeout", f"{TIMEOUT:g}s", "--json", "--", *argv
                )
                walls.append(time.monotonic() - started)
                host = json.loads(result.stdout)["hosts"][0]
                hosts.append(host["ended"] - host["started"])
            overruns[label] = statistics.median(hosts) - TIMEOUT
            print(
                f"{label:40} host median {statistics.median(hosts):.2f} s "
                f"(max {max(hosts):.2f})  cli median {statistics.median(walls):.2f} s"
            )
        plain, shell = overruns.values()
        print(
            f"overrun past the deadline: plain {plain * 1000:.0f} ms, shell {shell * 1000:.0f} ms "
            f"({shell / plain if plain > 0 else float('inf'):.1f}x)"
        )
    finally:
        fleet.close()


if __name__ == "__main__":
    main()
