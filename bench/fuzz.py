"""Mesh fuzzing benchmark, run by hand: ``python bench/fuzz.py``.

Starts a fresh daemon and one real agent on loopback, then sends
``--frames`` malformed and mistyped frames (half from an enrolled identity,
half from a key nobody accepted) in a bounded loop, while the real agent
runs ``gdos exec NODE -- true`` again and again. Prints:

  crashes        whether the daemon and the real agent are still alive
  rss            daemon RSS before, peak during, after the attack (and after
                 a settle period)
  log            bytes the daemon log grew by
  exec latency   median and p95 of the real agent's exec during the attack,
                 beside a baseline measured before it in the same run
  sanity         ``node list`` and ``task list`` still answer, the real
                 agent is online, no unaccepted name appeared, every task
                 the benchmark ran succeeded
  counters       the daemon's mesh counters (``gdos daemon status --json``)

``--hogs N`` instead opens N raw connections that each send all but the last
byte of a maximum-size CURVE HELLO (issue 11's pre-auth memory attack) and
prints the daemon's RSS before, with them open, and after they closed.
``--report N`` times how long the daemon's loop is busy with one svc.report
of N instances (the heartbeat sent right after it is answered after it),
beside a report of one instance.

Asserts nothing. Everything started here is killed on the way out, also on
Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import (  # the folder is put on the path just above
    Daemon,
    Owned,
    RssWatch,
    gdos_argv,
    log,
    rss_mb,
    run_owned,
    timed,
    wait_for,
)

from gdos.devtools.hostile import RawPeer
from gdos.wire import protocol
from gdos.wire.schema import Spec

NODE = "fuzz-real"
WRONG: list[Any] = [
    "abc",
    -1,
    2**64 - 1,
    -(2**63),
    1.5,
    float("nan"),
    True,
    None,
    b"\xff" * 3,
    [],
    {},
    {"nested": {"deep": [1, {"x": "y"}]}},
    "x" * 5000,
]


def corpus(seed: int, size: int = 4000) -> list[bytes]:
    """Malformed and mistyped frames: garbage, bad envelopes, every agent kind
    with each field given a wrong type or an extreme value."""
    rng = random.Random(seed)
    frames: list[bytes] = [b"", b"\xc1", b"\x00" * 65, bytes(range(256)), b"\x92\x01"]
    agent_kinds = sorted(protocol.AGENT_SENDS)  # what the mesh decodes at all
    while len(frames) < size:
        choice = rng.random()
        if choice < 0.15:
            frames.append(rng.randbytes(rng.randint(1, 2048)))
        elif choice < 0.3:
            envelope = {"v": rng.choice([0, 1, 2, "1", None]), "k": rng.choice(agent_kinds)}
            envelope["b"] = rng.choice(WRONG)
            frames.append(msgpack.packb(envelope, use_bin_type=True))
        else:
            kind = rng.choice(agent_kinds)
            required, optional = protocol.KINDS[kind]
            body: dict[str, Any] = {}
            for name, types in {**required, **optional}.items():
                body[name] = rng.choice(WRONG) if rng.random() < 0.5 else _sample(types, rng)
            frame = {"v": 1, "k": kind, "b": body, "id": rng.choice([1, "x", 2**64 - 1])}
            data = msgpack.packb(frame, use_bin_type=True)
            frames.append(data[: rng.randint(1, len(data))] if rng.random() < 0.1 else data)
    return frames


def _sample(declared: Any, rng: random.Random) -> Any:
    """A value of the declared field: the schema's own example (nested kinds),
    or one of a few awkward values of the declared Python type."""
    if isinstance(declared, Spec):
        return declared.example()
    samples: dict[type, Any] = {
        int: rng.choice([0, 1, 7, 2**31]),
        float: rng.random() * 100,
        str: rng.choice(["", "x", "svc/mod", "../../etc/passwd", "\x1b]0;pwn\x07"]),
        bool: True,
        bytes: b"data",
        dict: {"instance": "s/m", "state": "running"},
        list: [{"instance": "s/m", "state": "running"}],
    }
    return samples.get(declared[0])


def send_all(peer: RawPeer, frames: list[bytes], count: int, sent: list[int], idx: int) -> None:
    for i in range(count):
        while not peer.send_raw(frames[i % len(frames)]):
            time.sleep(0.0005)
        sent[idx] += 1


def exec_latencies(daemon: Daemon, runs: int, stop: threading.Event | None = None) -> list[float]:
    times = []
    for _ in range(runs):
        if stop is not None and stop.is_set():
            break
        times.append(timed(daemon.gdos("exec", NODE, "--", "true"), daemon.env, timeout=300))
    return times


def fuzz(owned: Owned, frames_total: int, settle: float) -> None:
    daemon = Daemon.start(owned)
    home = owned.home("gbf-")
    argv = [*gdos_argv(), "agent", "run", "--name", NODE, "--join", daemon.token()]
    agent = owned.spawn(NODE, argv, home)
    wait_for(lambda: daemon.online() == 1, 60, "the real agent online")
    pid = daemon.proc.pid
    log_file = daemon.proc.log
    log("baseline exec latency")
    baseline = exec_latencies(daemon, 20)
    rss_before, log_before = rss_mb(pid), log_file.stat().st_size

    enrolled = RawPeer(daemon.mesh, daemon.ping()["public_key"], "fuzz-enrolled")
    enrolled.hello(join_token=daemon.token())
    if enrolled.wait_for("welcome") is None:
        raise RuntimeError("the enrolled fuzzing peer was not welcomed")
    stranger = RawPeer(daemon.mesh, daemon.ping()["public_key"], "fuzz-stranger")
    half = frames_total // 2
    sent = [0, 0]
    received_before = _counters(daemon)["frames_in"]
    watch = RssWatch(pid, every=0.2)
    log(f"sending {frames_total:,} frames")
    began = time.perf_counter()
    senders = [
        threading.Thread(target=send_all, args=(enrolled, corpus(1), half, sent, 0)),
        threading.Thread(target=send_all, args=(stranger, corpus(2), half, sent, 1)),
    ]
    for thread in senders:
        thread.start()
    during: list[float] = []
    # until the daemon has taken every frame (queued ones are lost at close)
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline and (
        any(t.is_alive() for t in senders)
        or _counters(daemon)["frames_in"] - received_before < sum(sent)
    ):
        during += exec_latencies(daemon, 1)
    for thread in senders:
        thread.join()
    send_seconds = time.perf_counter() - began
    received = _counters(daemon)["frames_in"] - received_before
    peak = watch.close()
    rss_after = rss_mb(pid)
    time.sleep(settle)
    rss_settled = rss_mb(pid)
    enrolled.close()
    stranger.close()

    alive = daemon.proc.alive() and agent.alive()
    nodes = json.loads(_run(daemon, "node", "list", "--json"))
    tasks = json.loads(_run(daemon, "task", "list", "--json", "--limit", "1000"))
    counters = _counters(daemon)
    real_online = any(n["name"] == NODE and n["online"] for n in nodes)
    stranger_listed = any(n["name"] == "fuzz-stranger" for n in nodes)
    bad_tasks = [t for t in tasks if t["status"] != "succeeded"]
    log_growth = log_file.stat().st_size - log_before

    def ms(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    print(f"frames sent          {sum(sent):,} ({sent[0]:,} enrolled, {sent[1]:,} unaccepted)")
    print(
        f"frames received      {received:,} in {send_seconds:.1f} s "
        f"({received / send_seconds:,.0f} frames/s, the real agent's included)"
    )
    print(f"crashes              {'none' if alive else 'DAEMON OR AGENT DIED'}")
    print(
        f"daemon rss           before {rss_before:.0f} MB, peak {peak:.0f} MB, "
        f"after {rss_after:.0f} MB, after {settle:g}s {rss_settled:.0f} MB"
    )
    print(f"daemon log growth    {log_growth:,} bytes")
    print(
        f"exec latency         baseline p50 {ms(baseline, 0.5):.0f} ms "
        f"p95 {ms(baseline, 0.95):.0f} ms (n={len(baseline)}); "
        f"during attack p50 {ms(during, 0.5):.0f} ms p95 "
        f"{ms(during, 0.95):.0f} ms (n={len(during)}); ratio p50 "
        f"{statistics.median(during) / statistics.median(baseline):.2f}"
    )
    print(
        f"sanity               node list ok ({len(nodes)} nodes, real online: {real_online}, "
        f"unaccepted listed: {stranger_listed}); task list ok ({len(tasks)} tasks, "
        f"{len(bad_tasks)} not succeeded)"
    )
    print(f"mesh counters        {json.dumps(counters)}")


def hogs(owned: Owned, count: int, settle: float, extra: list[str]) -> None:
    from gdos.devtools.hostile import handshake_hog

    daemon = Daemon.start(owned, *extra)
    pid = daemon.proc.pid
    before = rss_mb(pid)
    log(f"opening {count} handshake hogs")
    began = time.perf_counter()
    opened = [handshake_hog(daemon.port, protocol.MESH_FRAME_BYTES - 64) for _ in range(count)]
    held = rss_mb(pid)
    seconds = time.perf_counter() - began
    ping_ms = 1000 * timed(daemon.gdos("daemon", "status"), daemon.env)
    counters = _counters(daemon)
    for conn in opened:
        if conn is not None:
            conn.close()
    time.sleep(settle)
    size = protocol.MESH_FRAME_BYTES - 64
    print(f"handshake hogs       {count} x {size:,} bytes in {seconds:.1f} s")
    print(
        f"daemon rss           before {before:.0f} MB, with them open {held:.0f} MB, "
        f"{settle:g} s after they closed {rss_mb(pid):.0f} MB"
    )
    print(f"daemon status        answered in {ping_ms:.0f} ms during the attack")
    print(f"mesh counters        {json.dumps(counters)}")


def report_stall(owned: Owned, entries: int) -> None:
    daemon = Daemon.start(owned)
    peer = RawPeer(daemon.mesh, daemon.ping()["public_key"], "fuzz-reporter")
    peer.hello(join_token=daemon.token())
    if peer.wait_for("welcome") is None:
        raise RuntimeError("the reporting peer was not welcomed")

    def stall(count: int, offset: int) -> float:
        rows = [
            {"instance": f"s/m{offset + i}", "state": "running", "pid": i} for i in range(count)
        ]
        began = time.perf_counter()
        peer.send("svc.report", {"instances": rows})
        peer.send("heartbeat", {})
        if peer.wait_for("heartbeat.ack", 600) is None:
            raise RuntimeError("no heartbeat.ack")
        return time.perf_counter() - began

    one = statistics.median(stall(1, 0) for _ in range(5))
    full = stall(entries, 0)
    again = stall(entries, 0)
    peer.send(
        "svc.report", {"instances": [{"instance": "s/x", "state": "running"}] * (entries + 1)}
    )
    refused = peer.wait_for("error", 60)
    peer.close()
    print(
        f"svc.report stall     1 instance {1000 * one:.0f} ms; {entries:,} new instances "
        f"{1000 * full:.0f} ms; the same {entries:,} again {1000 * again:.0f} ms"
    )
    print(f"over the limit       {refused.body['code'] if refused else 'NOT REFUSED'}")


def _counters(daemon: Daemon) -> dict[str, int]:
    return dict(daemon.ping()["mesh_counters"])


def _run(daemon: Daemon, *args: str) -> str:
    result = subprocess.run(
        daemon.gdos(*args), env=daemon.env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        return json.dumps([{"name": "ERROR", "status": result.stderr.strip(), "online": False}])
    return result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="frames in all")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds before the last RSS")
    parser.add_argument("--hogs", type=int, default=0, help="run the handshake attack instead")
    parser.add_argument("--report", type=int, default=0, help="time one report of N instead")
    parser.add_argument(
        "--daemon-arg", action="append", default=[], help="extra 'daemon run' option (repeat)"
    )
    args = parser.parse_args()
    if args.report:
        return run_owned(lambda owned: report_stall(owned, args.report))
    if args.hogs:
        return run_owned(lambda owned: hogs(owned, args.hogs, args.settle, args.daemon_arg))
    return run_owned(lambda owned: fuzz(owned, args.frames, args.settle))


if __name__ == "__main__":
    sys.exit(main())
