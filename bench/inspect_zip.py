"""What checking real entry sizes at push costs, run by hand: ``python bench/inspect_zip.py``.

``gdos package push`` inspects a zip before storing it. Since issue 11 it
also decompresses every entry once (constant memory) to prove its declared
size and CRC-32. This script builds a --size-mb package (--files files of
incompressible bytes, deflated) and times, in the same run:

  headers   inspection from the headers only (the old behaviour, via a
            no-op content check),
  full      inspection with the content check (what push does now),
  sha256    hashing the zip once (what push does anyway), for scale,

each the median of --runs, and prints figures and ratios. Asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from gdos.pkg import archive
from gdos.pkg.archive import build_zip, inspect_zip


def _median(runs: int, work: Any) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        each = args.size_mb * 1024 * 1024 // args.files
        files: dict[str, bytes | str] = {"bin/run.sh": b"#!/bin/sh\n"}
        files |= {f"data/{i}.bin": os.urandom(each) for i in range(args.files)}
        manifest = {"name": "bench", "version": "1", "entrypoint": "bin/run.sh"}
        path = build_zip(Path(tmp) / "bench.zip", files, manifest=manifest)
        real_check = archive._check_content
        try:
            archive._check_content = lambda *_: None  # type: ignore[assignment]
            headers = _median(args.runs, lambda: inspect_zip(path))
        finally:
            archive._check_content = real_check  # type: ignore[assignment]
        full = _median(args.runs, lambda: inspect_zip(path))
        sha = _median(args.runs, lambda: hashlib.sha256(path.read_bytes()).hexdigest())
    mb = args.size_mb
    print(f"package: {mb} MB in {args.files} files, median of {args.runs} runs")
    print(f"headers only : {headers * 1000:8.1f} ms")
    print(f"full check   : {full * 1000:8.1f} ms  ({mb / full:.0f} MB/s)")
    print(f"sha256 once  : {sha * 1000:8.1f} ms  ({mb / sha:.0f} MB/s)")
    print(f"full / sha256: {full / sha:.2f}x")


if __name__ == "__main__":
    main()
