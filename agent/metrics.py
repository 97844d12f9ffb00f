"""Live load metrics, sampled every few seconds on every node.

Rates (disk and network bytes/s) need the previous counters, and psutil's
non-blocking cpu_percent needs a primed baseline, so sampling is done by a
stateful MetricsSampler. Everything here must stay cheap: no call may block
on an interval, and a missing GPU library is detected once, not per sample.

Per-instance load (``sample["instances"]``) sums each supervised or adopted
instance's main process and its descendants. One psutil.Process is kept per
pid, because Process.cpu_percent measures since its own previous call, and
is dropped as soon as the pid leaves every instance. The process tree is read
once per sample (one /proc scan), not once per instance.

A sample is a ``gdos.metric_catalog.MetricSample``: the one typed shape the
daemon, the CLI and the dashboard read by catalogue name. It is checked
against its schema once, when the link encodes the ``metrics`` message.
"""

import contextlib
import os
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

import psutil
from gdos.agent.facts import real_partitions

from gdos.metric_catalog import DiskSample, GpuSample, InstanceSample, MetricSample

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


def _memory() -> MetricSample:
    """RAM and swap usage; "used" means total minus available, as operators expect."""
    vm = psutil.virtual_memory()
    sw = psutil.swap_memory()
    return MetricSample(
        mem_total=int(vm.total),
        mem_used=int(vm.total - vm.available),
        mem_percent=float(vm.percent),
        swap_total=int(sw.total),
        swap_used=int(sw.used),
        swap_percent=float(sw.percent),
    )


def _disks() -> list[DiskSample]:
    """Usage of the same mounts the facts inventory lists."""
    return [
        DiskSample(mount=p.mount, total=p.total, used=p.used, percent=p.percent)
        for p in real_partitions()
    ]


def _gpu_sample(nvml: Any, index: int) -> GpuSample:
    """Utilisation and memory of one NVIDIA device."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    mem = nvml.nvmlDeviceGetMemoryInfo(handle)
    return GpuSample(
        index=index,
        util_percent=float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
        mem_used=int(mem.used),
        mem_total=int(mem.total),
    )


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, from one scan of the process table.

    psutil's own ``_ppid_map`` (what Process.children uses) reads only
    /proc/<pid>/stat and is three times faster than process_iter; fall back
    to the public API should a psutil release drop it.
    """
    ppid_map = getattr(psutil, "_ppid_map", None)
    pairs: Iterable[tuple[int, int]]
    if ppid_map is not None:
        pairs = ppid_map().items()
    else:
        pairs = ((p.pid, p.info["ppid"]) for p in psutil.process_iter(["ppid"]))
    tree: dict[int, list[int]] = {}
    for pid, ppid in pairs:
        tree.setdefault(ppid, []).append(pid)
    return tree


def instance_pids(snapshot: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Each instance of a supervisor snapshot -> its main pid and descendants.

    Instances that are not running map to ``[]`` so the daemon still learns
    they exist; a destroyed instance is simply absent.
    """
    result: dict[str, list[int]] = {str(row["instance"]): [] for row in snapshot}
    mains = {str(row["instance"]): row["pid"] for row in snapshot if row.get("pid")}
    if not mains:
        return result
    tree = _children_map()
    for name, main in mains.items():
        pids, todo = [], [int(main)]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo.extend(tree.get(pid, ()))
        result[name] = pids
    return result


class _ProcessReading(NamedTuple):
    cpu: float
    rss: int
    threads: int
    fds: int
    io: tuple[int, int] | None  # read_bytes, write_bytes; None when not permitted


class InstanceSampler:
    """Per-instance CPU, memory, IO, threads and open files, children summed."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._io: dict[int, tuple[int, int]] = {}
        self._last = time.monotonic()

    def sample(self, pids_by_instance: dict[str, list[int]]) -> dict[str, InstanceSample]:
        """One reading per instance; rates are since the previous call."""
        now = time.monotonic()
        dt, self._last = now - self._last, now
        seen: set[int] = set()
        result = {}
        for name, pids in pids_by_instance.items():
            result[name] = self._instance(pids, dt, seen)
        for pid in [p for p in self._procs if p not in seen]:
            del self._procs[pid]
            self._io.pop(pid, None)
        return result

    def _instance(self, pids: list[int], dt: float, seen: set[int]) -> InstanceSample:
        """Sum the readings of ``pids``; io fields are left out if any pid hides them."""
        readings = []
        for pid in pids:
            reading = self._read(pid)
            if reading is not None:
                seen.add(pid)
                readings.append((pid, reading))
        if not readings:
            return InstanceSample(pids=[])
        out = InstanceSample(
            pids=[pid for pid, _ in readings],
            cpu_percent=round(sum(r.cpu for _, r in readings), 2),
            rss_bytes=sum(r.rss for _, r in readings),
            threads=sum(r.threads for _, r in readings),
            open_files=sum(r.fds for _, r in readings),
        )
        if all(r.io is not None for _, r in readings):
            read = write = 0.0
            for pid, r in readings:
                assert r.io is not None
                prev = self._io.get(pid)
                self._io[pid] = r.io
                if prev is not None:
                    read += _rate(r.io[0], prev[0], dt)
                    write += _rate(r.io[1], prev[1], dt)
            out["read_bps"], out["write_bps"] = read, write
        return out

    def _read(self, pid: int) -> _ProcessReading | None:
        """One process's figures, or None when it is gone or hidden from us."""
        proc = self._procs.get(pid)
        try:
            if proc is None or not proc.is_running():  # new pid, or a reused one
                proc = self._procs[pid] = psutil.Process(pid)
                self._io.pop(pid, None)
            with proc.oneshot():
                cpu = proc.cpu_percent(interval=None)
                rss = proc.memory_info().rss
                threads = proc.num_threads()
                fds = proc.num_fds() if hasattr(proc, "num_fds") else proc.num_handles()
                io: tuple[int, int] | None
                try:
                    counters = proc.io_counters()
                    io = (int(counters.read_bytes), int(counters.write_bytes))
                except (psutil.AccessDenied, AttributeError, NotImplementedError):
                    io = None
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            self._procs.pop(pid, None)
            return None
        return _ProcessReading(float(cpu), int(rss), int(threads), int(fds), io)


class MetricsSampler:
    """Produces one MetricSample per call, with rates since the previous call."""

    def __init__(self) -> None:
        """Prime the CPU baseline and IO counters so the first sample has rates."""
        psutil.cpu_percent(interval=None)
        psutil.cpu_percent(interval=None, percpu=True)
        self._prev = _read_counters()
        self._nvml: Any | None = None
        self._nvml_unavailable = False
        self.instances = InstanceSampler()

    def sample(self, snapshot: list[dict[str, Any]] | None = None) -> MetricSample:
        """Take one sample; cheap and non-blocking.

        ``snapshot`` is the supervisor's instance list; with it the sample
        also carries ``instances`` (see InstanceSampler).
        """
        now = time.time()
        load1, load5, load15 = _load_avg()
        result = MetricSample(
            ts=now,
            cpu_percent=float(psutil.cpu_percent(interval=None)),
            cpu_per_core=[float(x) for x in psutil.cpu_percent(interval=None, percpu=True)],
            load1=load1,
            load5=load5,
            load15=load15,
        )
        result.update(_memory())
        result["disks"] = _disks()
        result.update(self._rates())
        result["procs"] = len(psutil.pids())
        result["uptime"] = now - psutil.boot_time()
        result["gpus"] = self._gpus()
        if snapshot is not None:
            result["instances"] = self.instances.sample(instance_pids(snapshot))
        return result

    def close(self) -> None:
        """Release NVML if it was initialised; safe to call more than once."""
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None

    def _rates(self) -> MetricSample:
        """Disk and network bytes/s since the previous sample (or __init__)."""
        cur = _read_counters()
        prev, self._prev = self._prev, cur
        dt = cur.t - prev.t
        return MetricSample(
            disk_read_bps=_rate(cur.disk_read, prev.disk_read, dt),
            disk_write_bps=_rate(cur.disk_write, prev.disk_write, dt),
            net_rx_bps=_rate(cur.net_rx, prev.net_rx, dt),
            net_tx_bps=_rate(cur.net_tx, prev.net_tx, dt),
        )

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

    def _gpus(self) -> list[GpuSample]:
        """Per-GPU load; [] when NVML is absent or a query fails this time."""
        nvml = self._init_nvml()
        if nvml is None:
            return []
        try:
            return [_gpu_sample(nvml, i) for i in range(nvml.nvmlDeviceGetCount())]
        except Exception:  # e.g. NVMLError_GpuIsLost: report nothing, try next time
            return []
