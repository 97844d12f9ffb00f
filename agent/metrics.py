"""Live load metrics, sampled every few seconds on every node.

Rates (disk and network bytes/s) need the previous counters, and psutil's
non-blocking cpu_percent needs a primed baseline, so sampling is done by a
stateful MetricsSampler. Everything here must stay cheap: no call may block
on an interval, and a missing GPU library is detected once, not per sample.
"""

import contextlib
import os
import time
from typing import Any, NamedTuple

import psutil

from agent.facts import real_partitions

LOOPBACK = "lo"


class _Counters(NamedTuple):
    """Cumulative IO byte counters at one instant (monotonic clock)."""

    t: float
    disk_read: int | None
    disk_write: int | None
    net_rx: int
    net_tx: int


def _rate(now: int | None, prev: int | None, dt: float) -> float:
    """Bytes per second between two counter readings.

    Missing counters, a too-short interval or a counter that went backwards
    (reset, device removed) all give 0.0 instead of a nonsense spike.
    """
    if now is None or prev is None or dt < 1e-3:
        return 0.0
    delta = now - prev
    return float(delta) / dt if delta >= 0 else 0.0


def _read_counters() -> _Counters:
    """Snapshot disk and network byte counters; containers may lack disk stats."""
    disk = psutil.disk_io_counters()
    nics = psutil.net_io_counters(pernic=True)
    rx = sum(c.bytes_recv for name, c in nics.items() if name != LOOPBACK)
    tx = sum(c.bytes_sent for name, c in nics.items() if name != LOOPBACK)
    return _Counters(
        t=time.monotonic(),
        disk_read=int(disk.read_bytes) if disk else None,
        disk_write=int(disk.write_bytes) if disk else None,
        net_rx=int(rx),
        net_tx=int(tx),
    )


def _load_avg() -> tuple[float, float, float]:
    """1/5/15-minute load; Windows has no os.getloadavg, report zeros there."""
    try:
        one, five, fifteen = os.getloadavg()
    except (OSError, AttributeError):
        return 0.0, 0.0, 0.0
    return float(one), float(five), float(fifteen)


def _memory() -> dict[str, object]:
    """RAM and swap usage; "used" means total minus available, as operators expect."""
    vm = psutil.virtual_memory()
    sw = psutil.swap_memory()
    return {
        "mem_total": int(vm.total),
        "mem_used": int(vm.total - vm.available),
        "mem_percent": float(vm.percent),
        "swap_total": int(sw.total),
        "swap_used": int(sw.used),
        "swap_percent": float(sw.percent),
    }


def _disks() -> list[dict[str, object]]:
    """Usage of the same mounts the facts inventory lists."""
    return [
        {"mount": p.mount, "total": p.total, "used": p.used, "percent": p.percent}
        for p in real_partitions()
    ]


def _gpu_sample(nvml: Any, index: int) -> dict[str, object]:
    """Utilisation and memory of one NVIDIA device."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    mem = nvml.nvmlDeviceGetMemoryInfo(handle)
    return {
        "index": index,
        "util_percent": float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
        "mem_used": int(mem.used),
        "mem_total": int(mem.total),
    }


class MetricsSampler:
    """Produces one metrics dict per call, with rates since the previous call."""

    def __init__(self) -> None:
        """Prime the CPU baseline and IO counters so the first sample has rates."""
        psutil.cpu_percent(interval=None)
        psutil.cpu_percent(interval=None, percpu=True)
        self._prev = _read_counters()
        self._nvml: Any | None = None
        self._nvml_unavailable = False

    def sample(self) -> dict[str, object]:
        """Take one sample; cheap and non-blocking."""
        now = time.time()
        load1, load5, load15 = _load_avg()
        result: dict[str, object] = {
            "ts": now,
            "cpu_percent": float(psutil.cpu_percent(interval=None)),
            "cpu_per_core": [float(x) for x in psutil.cpu_percent(interval=None, percpu=True)],
            "load1": load1,
            "load5": load5,
            "load15": load15,
        }
        result.update(_memory())
        result["disks"] = _disks()
        result.update(self._rates())
        result["procs"] = len(psutil.pids())
        result["uptime"] = now - psutil.boot_time()
        result["gpus"] = self._gpus()
        return result

    def close(self) -> None:
        """Release NVML if it was initialised; safe to call more than once."""
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None

    def _rates(self) -> dict[str, float]:
        """Disk and network bytes/s since the previous sample (or __init__)."""
        cur = _read_counters()
        prev, self._prev = self._prev, cur
        dt = cur.t - prev.t
        return {
            "disk_read_bps": _rate(cur.disk_read, prev.disk_read, dt),
            "disk_write_bps": _rate(cur.disk_write, prev.disk_write, dt),
            "net_rx_bps": _rate(cur.net_rx, prev.net_rx, dt),
            "net_tx_bps": _rate(cur.net_tx, prev.net_tx, dt),
        }

    def _init_nvml(self) -> Any | None:
        """Import and initialise pynvml once; remember failure so we never retry.

        Kept initialised across samples: nvmlInit is far too slow to repeat
        every few seconds on every node.
        """
        if self._nvml is not None or self._nvml_unavailable:
            return self._nvml
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded...
            self._nvml_unavailable = True
            return None
        self._nvml = pynvml
        return pynvml

    def _gpus(self) -> list[dict[str, object]]:
        """Per-GPU load; [] when NVML is absent or a query fails this time."""
        nvml = self._init_nvml()
        if nvml is None:
            return []
        try:
            return [_gpu_sample(nvml, i) for i in range(nvml.nvmlDeviceGetCount())]
        except Exception:  # e.g. NVMLError_GpuIsLost: report nothing, try next time
            return []
