"""bench/fuzz.py builds its frames from the kind declarations: keep it in step with them.

The benchmark runs by hand, so a change to the schema classes broke it
unnoticed once (issue 13); building a small corpus here catches that in CI.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import msgpack

from gdos.wire import protocol

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_fuzz_corpus_builds_from_every_agent_kind() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_fuzz", BENCH / "fuzz.py")
        assert spec is not None and spec.loader is not None
        fuzz = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fuzz)
        frames = fuzz.corpus(1, size=2000)
    finally:
        sys.path.remove(str(BENCH))
    assert len(frames) == 2000
    kinds = set()
    for frame in frames:
        try:
            decoded = msgpack.unpackb(frame, raw=False, strict_map_key=False)
        except Exception:
            continue  # garbage and truncated frames are the point
        if isinstance(decoded, dict) and isinstance(decoded.get("k"), str):
            kinds.add(decoded["k"])  # bad envelopes name agent kinds too
    assert kinds <= set(protocol.AGENT_SENDS)
    assert {"hello", "exec.result", "svc.report", "metrics"} <= kinds
