"""Tests for agent.facts and agent.metrics against the real machine (psutil is not mocked)."""

import os
import sys
from pathlib import Path
from typing import Any

import msgpack
import psutil
import pytest
from gdos.agent.facts import IGNORED_FSTYPES, collect_facts, collect_gpus, real_partitions
from gdos.agent.metrics import MetricsSampler, _rate

from gdos.metric_catalog import NODE_METRICS, metric_sample

FACT_TYPES: dict[str, type | tuple[type, ...]] = {
    "hostname": str,
    "os": str,
    "distro": str,
    "distro_id": str,
    "distro_version": str,
    "kernel": str,
    "arch": str,
    "cpu_model": str,
    "cpu_cores": int,
    "cpu_threads": int,
    "cpu_max_mhz": float,
    "memory_total": int,
    "swap_total": int,
    "disks": list,
    "nics": list,
    "boot_time": float,
    "agent_version": str,
    "python": str,
    "gpus": list,
}

SAMPLE_TYPES: dict[str, type | tuple[type, ...]] = {
    "ts": float,
    "cpu_percent": float,
    "cpu_per_core": list,
    "load1": float,
    "load5": float,
    "load15": float,
    "mem_total": int,
    "mem_used": int,
    "mem_percent": float,
    "swap_total": int,
    "swap_used": int,
    "swap_percent": float,
    "disks": list,
    "disk_read_bps": float,
    "disk_write_bps": float,
    "net_rx_bps": float,
    "net_tx_bps": float,
    "procs": int,
    "uptime": float,
    "gpus": list,
}

RATE_KEYS = ("disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps")


@pytest.fixture
def no_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import pynvml` fail even on a machine that has it installed."""
    monkeypatch.setitem(sys.modules, "pynvml", None)


@pytest.fixture
def facts(no_pynvml: None) -> dict[str, Any]:
    """Facts of this machine, collected once per test."""
    return collect_facts("1.2.3")


def _write_fsync(path: Path, size: int = 4 * 1024 * 1024) -> None:
    """Generate real disk writes so the write counter has something to count."""
    with path.open("wb") as fh:
        fh.write(os.urandom(size))
        fh.flush()
        os.fsync(fh.fileno())


def test_facts_keys_and_types(facts: dict[str, Any]) -> None:
    assert set(facts) == set(FACT_TYPES)
    for key, typ in FACT_TYPES.items():
        assert isinstance(facts[key], typ), key
    assert facts["agent_version"] == "1.2.3"
    assert facts["os"] in {"linux", "darwin", "windows"}


def test_facts_values(facts: dict[str, Any]) -> None:
    assert facts["cpu_threads"] >= 1
    assert facts["cpu_cores"] >= 0
    assert facts["memory_total"] > 0
    assert facts["boot_time"] > 0
    assert facts["gpus"] == []


def test_facts_disks(facts: dict[str, Any]) -> None:
    disks = facts["disks"]
    assert len(disks) >= 1
    mounts = [d["mount"] for d in disks]
    assert len(mounts) == len(set(mounts))
    for disk in disks:
        assert set(disk) == {"device", "mount", "fstype", "total"}
        assert isinstance(disk["total"], int)


def test_facts_nics(facts: dict[str, Any]) -> None:
    nics = facts["nics"]
    assert len(nics) >= 1
    names = [n["name"] for n in nics]
    assert names == sorted(names)
    if sys.platform.startswith("linux"):
        assert "lo" in names
    for nic in nics:
        assert set(nic) == {"name", "mac", "ipv4", "ipv6", "speed_mbps", "up"}
        assert isinstance(nic["mac"], str)
        assert all(isinstance(a, str) for a in nic["ipv4"] + nic["ipv6"])
        assert isinstance(nic["speed_mbps"], int)
        assert isinstance(nic["up"], bool)


def test_facts_msgpack_roundtrip(facts: dict[str, Any]) -> None:
    assert msgpack.unpackb(msgpack.packb(facts)) == facts


def test_real_partitions_rule() -> None:
    parts = real_partitions()
    assert parts
    mounts = [p.mount for p in parts]
    assert len(mounts) == len(set(mounts))
    # An ignored fstype may only appear as the lone "/" fallback.
    ignored = [p for p in parts if p.fstype in IGNORED_FSTYPES]
    assert not ignored or (len(parts) == 1 and parts[0].mount == "/")


def test_collect_gpus_without_pynvml(no_pynvml: None) -> None:
    assert collect_gpus() == []


def _check_sample(sample: dict[str, Any]) -> None:
    """Assert the shape and sanity of one metrics sample."""
    assert set(sample) == set(SAMPLE_TYPES)
    for key, typ in SAMPLE_TYPES.items():
        assert isinstance(sample[key], typ), key
    assert 0.0 <= sample["cpu_percent"] <= 100.0
    assert len(sample["cpu_per_core"]) == psutil.cpu_count()
    assert all(isinstance(x, float) for x in sample["cpu_per_core"])
    for key in RATE_KEYS:
        assert sample[key] >= 0.0, key
    assert sample["mem_total"] > 0
    assert 0 <= sample["mem_used"] <= sample["mem_total"]
    assert sample["procs"] >= 1
    assert sample["uptime"] > 0
    assert sample["gpus"] == []
    for disk in sample["disks"]:
        assert set(disk) == {"mount", "total", "used", "percent"}
    msgpack.packb(sample)


def test_sampler_two_samples(no_pynvml: None, tmp_path: Path) -> None:
    sampler = MetricsSampler()
    first: dict[str, Any] = sampler.sample()
    _write_fsync(tmp_path / "blob.bin")
    second: dict[str, Any] = sampler.sample()
    _check_sample(first)
    _check_sample(second)
    assert second["ts"] >= first["ts"]
    # Containers may not expose IO counters, so only the type and sign are checked.
    assert isinstance(second["disk_write_bps"], float)
    assert second["disk_write_bps"] >= 0.0
    assert [d["mount"] for d in second["disks"]] == [p.mount for p in real_partitions()]
    sampler.close()


def test_a_real_sample_fits_its_schema_and_carries_every_node_metric(no_pynvml: None) -> None:
    sampler = MetricsSampler()
    sample = metric_sample(sampler.sample([]))  # the typed constructor checks the schema
    sampler.close()
    assert sample["instances"] == {}
    for metric in NODE_METRICS:
        assert metric.read(sample) is not None, metric.name


def test_sampler_remembers_missing_nvml(no_pynvml: None) -> None:
    sampler = MetricsSampler()
    assert sampler.sample()["gpus"] == []
    assert sampler._nvml_unavailable
    assert sampler.sample()["gpus"] == []


@pytest.mark.parametrize(
    ("now", "prev", "dt", "expected"),
    [
        (2000, 1000, 2.0, 500.0),
        (1000, 2000, 2.0, 0.0),  # counter reset
        (2000, 1000, 1e-4, 0.0),  # interval too short to mean anything
        (None, 1000, 2.0, 0.0),  # counters not exposed
        (1000, None, 2.0, 0.0),
    ],
)
def test_rate(now: int | None, prev: int | None, dt: float, expected: float) -> None:
    assert _rate(now, prev, dt) == expected
