"""Pending-key flood, run by hand: ``python bench/pending_flood.py``.

Anyone with the daemon's public key (it is in every join token) can make
CURVE keys for free and say hello with each. This sends --keys fresh keys,
one connection each, from loopback, to two daemons in the same run:

  bounded    the defaults (--max-pending-keys 1000, --pending-keys-per-minute 20)
  baseline   the bounds lifted (both set to 10,000,000): what an unbounded
             daemon stores

and prints, for each: the time to send them, the pending rows stored, the
`enroll` audit rows (failures are counted, not one row each, in both) and
the database size after a clean stop.
Prints figures and ratios; asserts nothing. Everything started here is
killed and removed on the way out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import Daemon, Owned, log, run_owned  # the folder is put on the path just above

from gdos.wire import protocol


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=2000, help="fresh keys sent to each daemon")
    args = parser.parse_args()
    return run_owned(lambda owned: bench(owned, args.keys))


def bench(owned: Owned, count: int) -> None:
    figures = {}
    for label, extra in (
        ("bounded", ()),
        ("baseline", ("--max-pending-keys", "10000000", "--pending-keys-per-minute", "10000000")),
    ):
        daemon = Daemon.start(owned, *extra)
        took = flood(daemon, count)
        pending = sum(1 for k in daemon.call("key.list")["keys"] if k["status"] == "pending")
        daemon.stop()  # a clean stop writes the audit counts still open
        rows = audit_rows(daemon)
        size = db_bytes(daemon) / 1024
        figures[label] = (pending, rows, size)
        log(
            f"{label:8} {count} keys in {took:.1f}s: {pending} pending rows, {rows} enroll "
            f"audit rows, database {size:.0f} KiB after a clean stop"
        )
    bounded, baseline = figures["bounded"], figures["baseline"]
    print(f"pending rows  bounded/baseline = {bounded[0]}/{baseline[0]}")
    print(f"audit rows    bounded/baseline = {bounded[1]}/{baseline[1]}")
    print(f"database      bounded/baseline = {bounded[2]:.0f}/{baseline[2]:.0f} KiB")


def flood(daemon: Daemon, count: int) -> float:
    server = str(daemon.ping()["public_key"])
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    began = time.monotonic()
    try:
        for i in range(count):
            sock = ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.routing_id = f"flood{i}#x".encode()
            public, secret = zmq.curve_keypair()
            sock.curve_serverkey = server.encode()
            sock.curve_publickey, sock.curve_secretkey = public, secret
            sock.connect(daemon.mesh)
            sock.send(protocol.encode("hello", {"name": f"flood{i}", "version": "x", "facts": {}}))
            sock.poll(5000)
            sock.close(linger=0)
    finally:
        ctx.destroy(linger=0)
    return time.monotonic() - began


def audit_rows(daemon: Daemon) -> int:
    import sqlite3

    with sqlite3.connect(daemon.home / "state" / "gdos.db") as db:
        return int(db.execute("SELECT count(*) FROM audit WHERE action = 'enroll'").fetchone()[0])


def db_bytes(daemon: Daemon) -> int:
    state = daemon.home / "state"
    return sum(p.stat().st_size for p in state.glob("gdos.db*") if p.is_file())


if __name__ == "__main__":
    raise SystemExit(main())
