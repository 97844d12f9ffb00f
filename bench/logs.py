"""Log benchmark, run by hand: ``python bench/logs.py``.

One daemon and one real agent (``--log-root`` a temporary folder), in one run:

  follow   latency from a line appended to a file on the node to the same
           line printed by ``gdos logs NODE --path FILE -f``: each line
           carries the time it was written, the reader takes the difference;
           p50 and p99 over --lines lines (target p50 <= 100 ms). Baseline:
           ``tail -F`` on the same file, same lines, same run.
  grep     ``gdos logs NODE --path FILE --grep REGEX`` over a --size-mb log:
           wall time and MB/s against ``grep -c -E REGEX FILE`` on the same
           (page-cached) file in the same run; the agent's peak RSS while it
           searches, sampled every 20 ms, against its RSS before.

Prints figures and ratios; asserts nothing. Everything started here is
killed and removed on the way out, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import (  # the folder is put on the path just above
    Daemon,
    Owned,
    RssWatch,
    gdos_argv,
    log,
    rss_mb,
    run_owned,
    wait_for,
)

NODE = "bench-logs"
NEEDLE = r"ERROR needle [0-9]+$"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1000, help="followed lines")
    parser.add_argument("--interval", type=float, default=0.013, help="seconds between lines")
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the grepped log")
    parser.add_argument("--runs", type=int, default=3, help="grep runs per tool (best)")
    args = parser.parse_args()
    return run_owned(lambda owned: bench(owned, args))


def bench(owned: Owned, args: argparse.Namespace) -> None:
    daemon = Daemon.start(owned)
    root = owned.home("bl-")
    agent_home = owned.home("ba-")
    argv = [*gdos_argv(), "agent", "run", "--join", daemon.token(), "--name", NODE]
    agent = owned.spawn("agent", [*argv, "--log-root", str(root)], agent_home)
    wait_for(lambda: daemon.online() >= 1, 30, "the agent online")
    log("agent online")
    gdos = [*gdos_argv(), "logs", NODE, "--path"]

    follow_file = root / "follow.log"
    follow_file.write_text("start\n")
    ours = follow_latency([*gdos, str(follow_file), "-f", "-n", "0"], follow_file, args, daemon)
    tail = follow_latency(["tail", "-F", "-n", "0", str(follow_file)], follow_file, args, None)
    print(f"follow latency over {args.lines} lines, one every {args.interval * 1000:.0f} ms:")
    for name, samples in (("gdos logs -f", ours), ("tail -F (baseline)", tail)):
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        print(f"  {name:<20} p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms")

    big = root / "big.log"
    size, needles = write_big_log(big, args.size_mb)
    base_rss = rss_mb(agent.pid)
    watch = RssWatch(agent.pid, every=0.02)
    ours_t, found = best_time([*gdos, str(big), "--grep", NEEDLE], daemon, args.runs)
    peak = watch.close()
    grep_t, counted = best_time(["grep", "-c", "-E", NEEDLE, str(big)], None, args.runs)
    tail_t, _ = best_time([*gdos, str(big), "-n", "100"], daemon, args.runs)
    mb = size / 1e6
    assert len(found.splitlines()) == needles == int(counted), (len(found.splitlines()), needles)
    print(f"grep over a {mb:.0f} MB log ({needles} matching lines), best of {args.runs}:")
    print(f"  gdos logs --grep     {ours_t:6.2f} s  {mb / ours_t:7.0f} MB/s")
    print(f"  grep -c (baseline)   {grep_t:6.2f} s  {mb / grep_t:7.0f} MB/s")
    print(f"  ratio gdos/grep time {ours_t / grep_t:6.2f}x")
    print(f"  agent RSS before {base_rss:.0f} MB, peak while grepping {peak:.0f} MB")
    print(f"tail -n 100 of the same log: {tail_t * 1000:.0f} ms (CLI start included)")


def follow_latency(
    argv: list[str], path: Path, args: argparse.Namespace, daemon: Daemon | None
) -> list[float]:
    """Append timestamped lines; the reader of ``argv``'s stdout takes the delays."""
    env = daemon.env if daemon else None
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, start_new_session=True)
    delays: list[float] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            now = time.time()
            parts = raw.split()
            if parts[:1] == [b"warmup"]:
                ready.set()
            elif parts[:1] == [b"bench"]:
                delays.append(now - float(parts[2]))
                if len(delays) >= args.lines:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        with open(path, "a", buffering=1) as out:
            deadline = time.monotonic() + 20
            while not ready.is_set() and time.monotonic() < deadline:
                out.write("warmup\n")
                ready.wait(0.2)
            for seq in range(args.lines):
                out.write(f"bench {seq} {time.time():.6f}\n")
                time.sleep(args.interval)
        reader.join(30)
    finally:
        proc.kill()
        proc.wait(10)
    if len(delays) < args.lines:
        raise RuntimeError(f"{argv[0]}: only {len(delays)} of {args.lines} lines arrived")
    return delays


def write_big_log(path: Path, size_mb: int) -> tuple[int, int]:
    """A log of ``size_mb`` MB: request lines with one matching line per 4 MB block."""
    log(f"writing a {size_mb} MB log")
    filler = b"".join(
        b"2024-05-01T10:00:%02dZ INFO GET /api/items/%06d 200 served in %d ms\n"
        % (i % 60, i, i % 97)
        for i in range(60_000)
    )
    blocks = max(1, size_mb * 1024 * 1024 // len(filler))
    with open(path, "wb") as out:
        for block in range(blocks):
            out.write(filler)
            out.write(b"2024-05-01T10:01:00Z ERROR needle %d\n" % block)
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # page cache
    return path.stat().st_size, blocks


def best_time(argv: list[str], daemon: Daemon | None, runs: int) -> tuple[float, str]:
    best, output = float("inf"), ""
    for _ in range(runs):
        began = time.perf_counter()
        result = subprocess.run(
            argv, env=daemon.env if daemon else None, capture_output=True, timeout=600
        )
        elapsed = time.perf_counter() - began
        if result.returncode != 0:
            raise RuntimeError(f"{argv[:3]} exited {result.returncode}: {result.stderr[-500:]!r}")
        best, output = min(best, elapsed), result.stdout.decode()
    return best, output


def percentile(samples: list[float], pct: int) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
