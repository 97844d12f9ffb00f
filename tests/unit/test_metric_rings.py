"""The metric declaration table, the history rings and the per-instance sampler."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from gdos.agent.metrics import InstanceSampler, MetricsSampler, instance_pids

from gdos.cli.metrics_cmd import parse_target, sparkline, summarise
from gdos.cli.top_cmd import apply, sort_key
from gdos.daemon.metrics import RING_SAMPLES, MetricRings, Ring, ring_budget
from gdos.daemon.prometheus import Snapshot, parse_address, render
from gdos.errors import GdosError
from gdos.metric_catalog import (
    INSTANCE_METRICS,
    METRICS,
    NODE_METRICS,
    InstanceSample,
    MetricSample,
    find_metric,
    metric_sample,
    value,
)
from gdos.wire.node_data import INSTANCE_SAMPLE, METRICS_SAMPLE
from gdos.wire.schema import SchemaError
from tests.harness import wait_for

T0 = 1_000.0


def node_sample(cpu: float, **extra: Any) -> dict[str, Any]:
    return {
        "cpu_percent": cpu,
        "mem_percent": 40.0,
        "disks": [{"percent": 10.0}, {"percent": 70.5}],
        "load1": 0.5,
        "net_rx_bps": 100.0,
        "net_tx_bps": 200.0,
        "disk_read_bps": 300.0,
        "disk_write_bps": 400.0,
        **extra,
    }


def burn(cpu: float) -> dict[str, Any]:
    return {
        "pids": [1],
        "cpu_percent": cpu,
        "rss_bytes": 1e8,
        "threads": 3,
        "open_files": 7,
        "read_bps": 1.0,
        "write_bps": 2.0,
    }


@pytest.fixture
def rings() -> MetricRings:
    r = MetricRings(capacity=5)
    r.epoch = T0
    return r


def test_declaration_table_names_and_units() -> None:
    assert [m.name for m in NODE_METRICS] == [
        "cpu",
        "mem",
        "disk",
        "load1",
        "net_rx",
        "net_tx",
        "disk_read",
        "disk_write",
    ]
    assert [m.name for m in INSTANCE_METRICS] == [
        "cpu",
        "rss",
        "read",
        "write",
        "threads",
        "open_files",
    ]
    assert all(m.description and m.source and m.unit in ("%", "bytes", "B/s", "") for m in METRICS)
    assert len({m.prometheus_name for m in METRICS}) == len(METRICS)
    assert find_metric("rss", "a/b").unit == "bytes"
    with pytest.raises(GdosError, match="choose from cpu, mem"):
        find_metric("rss", None)
    assert find_metric("rss", "a/b").format(1536) == "1.5 KiB"
    assert find_metric("read", "a/b").format(2048) == "2.0 KiB/s"
    assert find_metric("cpu", None).format(12.345) == "12.3%"
    assert find_metric("load1", None).format(0.5) == "0.50"
    assert find_metric("threads", "a/b").format(math.nan) == "-"


def test_the_typed_sample_is_the_schema_and_is_read_by_name() -> None:
    assert set(MetricSample.__annotations__) == set(METRICS_SAMPLE.optional)
    assert set(InstanceSample.__annotations__) == set(INSTANCE_SAMPLE.optional)
    sample = metric_sample(node_sample(12.0))
    assert value(sample, "cpu") == 12.0
    assert value(sample, "disk") == 70.5  # the fullest mount
    assert value({"disks": [{"percent": 0}]}, "disk") == 0.0
    assert value(None, "mem") is None
    with pytest.raises(SchemaError, match=r"sample\.cpu_percent"):
        metric_sample({"cpu_percent": "busy"})


def test_latest_reads_every_node_metric(rings: MetricRings) -> None:
    rings.record("n1", node_sample(12.5), now=T0 + 1)
    [entry] = rings.latest()
    assert entry["node"] == "n1" and entry["instance"] is None
    assert entry["ts"] == pytest.approx(T0 + 1)
    assert entry["values"] == {
        "cpu": 12.5,
        "mem": 40.0,
        "disk": 70.5,
        "load1": 0.5,
        "net_rx": 100.0,
        "net_tx": 200.0,
        "disk_read": 300.0,
        "disk_write": 400.0,
    }


def test_ring_wraps_around_keeping_the_newest(rings: MetricRings) -> None:
    for i in range(12):
        rings.record("n1", node_sample(float(i)), now=T0 + i)
    points = rings.history("n1", None, "cpu")
    assert [v for _, v in points] == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert [t for t, _ in points] == pytest.approx([T0 + i for i in range(7, 12)])
    assert rings.latest()[0]["values"]["cpu"] == 11.0


def test_history_since_and_missing_values(rings: MetricRings) -> None:
    for i in range(5):
        rings.record("n1", node_sample(float(i), load1="junk" if i == 3 else 0.5), now=T0 + i)
    assert [v for _, v in rings.history("n1", None, "cpu", since=T0 + 2.5)] == [3.0, 4.0]
    assert len(rings.history("n1", None, "load1")) == 4  # the non-number is skipped
    assert "load1" in rings.latest()[0]["values"]
    assert rings.history("nobody", None, "cpu") == []
    with pytest.raises(GdosError):
        rings.history("n1", None, "rss")


def test_instances_live_stopped_and_destroyed(rings: MetricRings) -> None:
    rings.record("n1", node_sample(1, instances={"shop/burn": burn(50.0)}), now=T0 + 1)
    rings.record("n1", node_sample(1, instances={"shop/burn": burn(60.0)}), now=T0 + 2)
    entries = {e["instance"]: e for e in rings.latest()}
    assert entries["shop/burn"]["values"]["cpu"] == 60.0
    assert entries["shop/burn"]["values"]["rss"] == 1e8
    # stopped: history kept, no latest values
    rings.record("n1", node_sample(1, instances={"shop/burn": {"pids": []}}), now=T0 + 3)
    assert [e["instance"] for e in rings.latest()] == [None]
    assert [v for _, v in rings.history("n1", "shop/burn", "cpu")] == [50.0, 60.0]
    # destroyed: the ring is freed
    rings.record("n1", node_sample(1, instances={}), now=T0 + 4)
    assert not rings.has("n1", "shop/burn") and "n1" not in rings.instances


def test_bad_instance_names_are_ignored(rings: MetricRings) -> None:
    bad = {"../etc": burn(1), "a/b/c": burn(1), 7: burn(1), "ok/one": "nope"}
    rings.record("n1", node_sample(1, instances=bad), now=T0 + 1)
    assert [e["instance"] for e in rings.latest()] == [None]


def test_drop_node_frees_everything(rings: MetricRings) -> None:
    rings.record("n1", node_sample(1, instances={"a/b": burn(1)}), now=T0 + 1)
    rings.record("n2", node_sample(1), now=T0 + 1)
    before = rings.memory_bytes()
    rings.drop_node("n1")
    assert {e["node"] for e in rings.latest()} == {"n2"}
    assert rings.memory_bytes() == before - ring_budget(8, 5) - ring_budget(6, 5)


def test_memory_accounting_matches_the_documented_budget() -> None:
    # The figures the module docstring states, for the default ring size.
    assert RING_SAMPLES == 360
    assert ring_budget(len(NODE_METRICS)) == 9 * 360 * 4 + 240 == 13_200
    assert ring_budget(len(INSTANCE_METRICS)) == 7 * 360 * 4 + 240 == 10_320
    rings = MetricRings()
    for n in range(50):
        rings.record(f"n{n}", node_sample(1, instances={"a/b": burn(1), "a/c": burn(1)}))
    assert rings.memory_bytes() == 50 * (13_200 + 2 * 10_320)
    for _ in range(RING_SAMPLES * 2):  # overwriting in place allocates nothing
        rings.record("n0", node_sample(1, instances={"a/b": burn(1), "a/c": burn(1)}))
    assert rings.memory_bytes() == 50 * (13_200 + 2 * 10_320)


def test_capacity_zero_keeps_nothing() -> None:
    rings = MetricRings(capacity=0)
    rings.record("n1", node_sample(1))
    assert rings.latest() == [] and rings.memory_bytes() == 0


def test_ring_series_order_before_wrap() -> None:
    ring = Ring(1, 4)
    for i in range(3):
        ring.append(i, [float(i)])
    assert ring.series(0, 0) == [(0, 0.0), (1, 1.0), (2, 2.0)]
    assert ring.series(0, 2) == [(2, 2.0)]


# -- the CLI's pure helpers ---------------------------------------------------------


def test_sparkline_scales_min_to_max() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 5, 5]) == "▁▁▁"
    assert sparkline([]) == ""
    assert len(sparkline([float(i) for i in range(500)], width=40)) == 40


def test_summarise_and_targets() -> None:
    s = summarise({"name": "cpu", "points": [[1, 2.0], [2, 4.0], [3, 9.0]]})
    assert (s["min"], s["avg"], s["max"], s["last"], s["samples"]) == (2.0, 5.0, 9.0, 9.0, 3)
    assert summarise({"name": "cpu", "points": []})["last"] is None
    assert parse_target("n1") == ("n1", None)
    assert parse_target("shop/web@n1") == ("n1", "shop/web")


def test_top_rows_merge_and_sort() -> None:
    rows: dict[str, Any] = {}
    apply(rows, {"changed": [{"key": "a", "node": "a", "cpu": 5.0, "mem": 90.0}], "removed": []})
    apply(rows, {"changed": [{"key": "b", "node": "b", "cpu": 50.0}, {"key": "c", "node": "c"}]})
    apply(rows, {"changed": [], "removed": ["zzz"]})
    by_cpu = sorted(rows.values(), key=sort_key("cpu", False))
    assert [r["key"] for r in by_cpu] == ["b", "a", "c"]  # missing values last
    assert min(rows.values(), key=sort_key("mem", False))["key"] == "a"
    assert [r["key"] for r in sorted(rows.values(), key=sort_key("name", False))] == ["a", "b", "c"]


def test_prometheus_address_and_render() -> None:
    assert parse_address("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_address("[::1]:9464") == ("::1", 9464)
    for bad in ("9464", "host:", "host:99999", ":80", "host:port"):
        with pytest.raises(GdosError, match="HOST:PORT"):
            parse_address(bad)
    from prometheus_client.parser import text_string_to_metric_families

    entries = [
        {"node": "n1", "instance": None, "values": {"cpu": 12.5}, "ts": 1.0},
        {"node": "n1", "instance": "shop/web", "values": {"rss": 1e6}, "ts": 1.0},
    ]
    snap = Snapshot(entries, 3, 1, {"frames_in": 9}, {"done": 2}, {"warning": 1}, 123)
    families = {f.name: f for f in text_string_to_metric_families(render(snap).decode())}
    [cpu] = families["gdos_node_cpu_percent"].samples
    assert cpu.labels == {"node": "n1"} and cpu.value == 12.5
    [rss] = families["gdos_instance_rss_bytes"].samples
    assert rss.labels == {"node": "n1", "instance": "shop/web"}
    assert families["gdos_mesh_frames_in"].samples[0].value == 9
    assert families["gdos_nodes_known"].samples[0].value == 3


# -- the agent's per-instance sampler ----------------------------------------------

PARENT = """
import subprocess, sys, time
code = "import time; b = b'x' * 30_000_000; time.sleep(60)"
child = subprocess.Popen([sys.executable, "-c", code])
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.fixture
def family() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        for p in psutil.Process(proc.pid).children(recursive=True):
            p.kill()
        proc.kill()
        proc.wait()


def test_instance_sampler_sums_children(family: subprocess.Popen[str]) -> None:
    assert family.stdout is not None
    child = int(family.stdout.readline())
    snapshot = [{"instance": "t/fam", "pid": family.pid}, {"instance": "t/off", "pid": None}]
    pids = instance_pids(snapshot)
    assert pids["t/off"] == [] and sorted(pids["t/fam"]) == sorted([family.pid, child])
    sampler = InstanceSampler()
    wait_for(
        lambda: sampler.sample(instance_pids(snapshot))["t/fam"].get("rss_bytes", 0) > 30_000_000,
        10,
        "the child's 30 MB counted",
    )
    reading = sampler.sample(instance_pids(snapshot))
    fam = reading["t/fam"]
    assert fam["threads"] >= 2 and fam["open_files"] >= 2  # type: ignore[operator]
    assert set(fam) >= {"pids", "cpu_percent", "rss_bytes", "threads", "open_files"}
    assert reading["t/off"] == {"pids": []}
    assert set(sampler._procs) == {family.pid, child}
    sampler.sample({})  # the instance went away: its cached processes go too
    assert sampler._procs == {} and sampler._io == {}


def test_metrics_sample_carries_instances_only_when_asked() -> None:
    sampler = MetricsSampler()
    assert "instances" not in sampler.sample()
    assert sampler.sample([{"instance": "a/b", "pid": None}])["instances"] == {"a/b": {"pids": []}}
