"""Static facts about the machine the agent runs on.

Facts are gathered once when the agent connects, so the controller can show
inventory (OS, CPU, disks, NICs, GPUs) without asking again. Every value is
plain data so the whole dict can be sent with msgpack as-is.

Each part is collected by its own small function and a failure in one part
only blanks that part: a half-known machine is far more useful than an agent
that refuses to connect because, say, /proc/cpuinfo was unreadable.
"""

import platform
import socket
import sys
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import psutil

# Filesystems that are virtual, in-memory or image layers: listing them would
# drown the real disks in noise on every Linux box and container.
IGNORED_FSTYPES: frozenset[str] = frozenset(
    {"tmpfs", "devtmpfs", "squashfs", "overlay", "proc", "sysfs", "cgroup", "cgroup2"}
)

_EMPTY_OS: dict[str, object] = dict.fromkeys(
    ("os", "distro", "distro_id", "distro_version", "kernel", "arch"), ""
)

T = TypeVar("T")


class Partition(NamedTuple):
    """A mounted filesystem worth reporting, with its usage read at call time."""

    device: str
    mount: str
    fstype: str
    total: int
    used: int
    percent: float


def _usage(part: Any) -> Partition | None:
    """Read usage for one psutil partition; None when the mount can't be stat'ed.

    Stale network mounts and mounts we lack permission for raise here; they
    are skipped rather than failing the whole listing.
    """
    try:
        usage = psutil.disk_usage(part.mountpoint)
    except OSError:  # PermissionError is a subclass
        return None
    return Partition(
        device=str(part.device),
        mount=str(part.mountpoint),
        fstype=str(part.fstype),
        total=int(usage.total),
        used=int(usage.used),
        percent=float(usage.percent),
    )


def _root_fallback() -> list[Partition]:
    """Return "/" whatever its fstype, for containers that only have an overlay root.

    psutil's all=False drops "nodev" filesystems such as overlay, so look at
    every mount; the last "/" entry is the one that shadows the others.
    """
    try:
        roots = [p for p in psutil.disk_partitions(all=True) if p.mountpoint == "/"]
    except OSError:
        roots = []
    if roots:
        found = _usage(roots[-1])
        return [found] if found else []
    try:
        usage = psutil.disk_usage("/")
    except OSError:
        return []
    return [Partition("", "/", "", int(usage.total), int(usage.used), float(usage.percent))]


def real_partitions() -> list[Partition]:
    """List real, readable, de-duplicated mounts, shared by facts and metrics.

    Both the static inventory and the live disk usage must show the same set
    of mounts, so the selection rule lives here once.
    """
    seen: set[str] = set()
    result: list[Partition] = []
    for part in psutil.disk_partitions(all=False):
        if part.fstype in IGNORED_FSTYPES or part.mountpoint in seen:
            continue
        found = _usage(part)
        if found is None:
            continue
        seen.add(found.mount)
        result.append(found)
    return result or _root_fallback()


def _safe(collector: Callable[[], T], empty: T) -> T:
    """Run one sub-collector, returning its empty value if it fails in any way.

    Facts are best effort: an odd platform or a sandbox must never stop the
    agent from connecting.
    """
    try:
        return collector()
    except Exception:
        return empty


def _safe_list(collector: Callable[[], list[dict[str, object]]]) -> list[dict[str, object]]:
    """_safe() for list collectors; spelled out so type checkers know the empty list's type."""
    empty: list[dict[str, object]] = []
    return _safe(collector, empty)


def _os_release() -> dict[str, str]:
    """Parse /etc/os-release (or /usr/lib/os-release); {} when absent or not Linux."""
    if not sys.platform.startswith("linux"):
        return {}
    try:
        return platform.freedesktop_os_release()
    except OSError:
        return {}


def _os_facts() -> dict[str, object]:
    """Identify the OS; distro falls back to platform.platform() off Linux."""
    release = _os_release()
    return {
        "os": platform.system().lower(),
        "distro": release.get("PRETTY_NAME") or platform.platform(),
        "distro_id": release.get("ID", ""),
        "distro_version": release.get("VERSION_ID", ""),
        "kernel": platform.release(),
        "arch": platform.machine(),
    }


def _cpu_model() -> str:
    """CPU marketing name; /proc/cpuinfo is the only reliable source on Linux."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    key, _, value = line.partition(":")
                    if key.strip() == "model name":
                        return value.strip()
        except OSError:
            pass
    return platform.processor() or ""


def _cpu_max_mhz() -> float:
    """Maximum CPU frequency; VMs and some ARM boards report none (0.0)."""
    freq = psutil.cpu_freq()
    if freq is None:
        return 0.0
    return float(freq.max or 0.0)


def _cpu_facts() -> dict[str, object]:
    """CPU identity and size, each part guarded separately."""
    return {
        "cpu_model": _safe(_cpu_model, ""),
        "cpu_cores": _safe(lambda: psutil.cpu_count(logical=False) or 0, 0),
        "cpu_threads": _safe(lambda: psutil.cpu_count() or 0, 0),
        "cpu_max_mhz": _safe(_cpu_max_mhz, 0.0),
    }


def _disks() -> list[dict[str, object]]:
    """Inventory view of real_partitions(): what is mounted and how big."""
    return [
        {"device": p.device, "mount": p.mount, "fstype": p.fstype, "total": p.total}
        for p in real_partitions()
    ]


def _nic(name: str, addrs: list[Any], stats: Any) -> dict[str, object]:
    """Describe one interface from its psutil addresses and stats."""
    mac = next((a.address for a in addrs if a.family == psutil.AF_LINK), "")
    return {
        "name": name,
        "mac": str(mac or ""),
        "ipv4": [str(a.address) for a in addrs if a.family == socket.AF_INET],
        "ipv6": [str(a.address) for a in addrs if a.family == socket.AF_INET6],
        "speed_mbps": int(stats.speed or 0) if stats else 0,
        "up": bool(stats.isup) if stats else False,
    }


def _nics() -> list[dict[str, object]]:
    """All interfaces, loopback included, sorted by name for stable display.

    Interfaces without addresses (down bridges, ifb) still appear in stats,
    so the union of both psutil views is listed.
    """
    addrs = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    names = sorted(set(addrs) | set(stats))
    return [_nic(n, addrs.get(n, []), stats.get(n)) for n in names]


def _load_nvml() -> Any | None:
    """Import pynvml lazily: it is an optional extra and most nodes lack it."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def _text(value: object) -> str:
    """Old pynvml versions return bytes where new ones return str."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _power_limit_w(nvml: Any, handle: Any) -> float:
    """Enforced power limit in watts; some boards don't support the query (0.0)."""
    try:
        return nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
    except nvml.NVMLError:
        return 0.0


def _gpu(nvml: Any, index: int, driver: str) -> dict[str, object]:
    """Static description of one NVIDIA device."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    return {
        "index": index,
        "name": _text(nvml.nvmlDeviceGetName(handle)),
        "uuid": _text(nvml.nvmlDeviceGetUUID(handle)),
        "memory_total": int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
        "driver": driver,
        "compute_capability": f"{major}.{minor}",
        "power_limit_w": float(_power_limit_w(nvml, handle)),
    }


def collect_gpus() -> list[dict[str, object]]:
    """Describe NVIDIA GPUs; [] when pynvml, the driver or the GPU is missing.

    GPU support is optional, so any failure means "no GPUs" rather than an
    error the operator would have to chase on every CPU-only node.
    """
    nvml = _load_nvml()
    if nvml is None:
        return []
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return []
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        return [_gpu(nvml, i, driver) for i in range(nvml.nvmlDeviceGetCount())]
    except Exception:
        return []
    finally:
        _safe(nvml.nvmlShutdown, None)


def collect_facts(agent_version: str) -> dict[str, object]:
    """Collect the static facts sent once at connect; never raises."""
    facts: dict[str, object] = {"hostname": _safe(socket.gethostname, "")}
    facts.update(_safe(_os_facts, _EMPTY_OS))
    facts.update(_cpu_facts())
    facts.update(
        {
            "memory_total": _safe(lambda: int(psutil.virtual_memory().total), 0),
            "swap_total": _safe(lambda: int(psutil.swap_memory().total), 0),
            "disks": _safe_list(_disks),
            "nics": _safe_list(_nics),
            "boot_time": _safe(lambda: float(psutil.boot_time()), 0.0),
            "agent_version": agent_version,
            "python": platform.python_version(),
            "gpus": _safe_list(collect_gpus),
        }
    )
    return facts
