"""Schemas of the structured values an agent sends: facts, metrics, instance states.

The agent -> daemon kinds (gdos/wire/mesh_kinds.py) declare their fields with these, so a value
of the wrong type, out of range or oversized is refused at the mesh edge
before it is stored or shown (agent/facts.py, agent/metrics.py and
agent/supervisor.py produce them; gdos/devtools/sim_agent.py fakes them).
"""

from __future__ import annotations

import re

from gdos.names import NAME_PATTERN
from gdos.wire.schema import Bool, Int, ListOf, MapOf, Num, Opt, Record, Str

INT64 = Int()
COUNT = Int(0, 2**31 - 1)
BYTES = Int(0, 2**63 - 1)
PID = Int(0, 2**31 - 1)
# Seconds since the epoch, up to the year 5138: refuses absurd times, which
# would break durations and age columns, while allowing any real clock.
TIME = Num(0, 1e11)
DURATION = Num(0, 1e11)
PERCENT = Num(0, 100.0001)
# A process and its children may use many cores: one core is 100 %.
PROCESS_PERCENT = Num(0, 1e7)
RATE = Num(0, 1e18)
LOAD = Num(0, 1e9)
SHORT = Str(64)
NAME = Str(256)
TEXT = Str(4096)
PATH = Str(4096)
ERROR_TEXT = Str(16 * 1024)
CODE = Str(64)
# Instances are "system/module", each part a gdos name (gdos/names.py).
_PART = NAME_PATTERN.pattern.removeprefix("^").removesuffix("\\Z")
INSTANCE = Str(129, pattern=re.compile(f"^{_PART}/{_PART}\\Z"))
MAX_DISKS = 1024
MAX_NICS = 4096
MAX_GPUS = 256
MAX_CORES = 8192
MAX_ADDRESSES = 1024
MAX_INSTANCES = 10_000
MAX_PIDS = 100_000

DISK_FACT = Record(optional={"device": PATH, "mount": PATH, "fstype": SHORT, "total": BYTES})
NIC_FACT = Record(
    optional={
        "name": NAME,
        "mac": SHORT,
        "ipv4": ListOf(SHORT, MAX_ADDRESSES),
        "ipv6": ListOf(SHORT, MAX_ADDRESSES),
        "speed_mbps": Int(-1, 2**31 - 1),
        "up": Bool(),
    }
)
GPU_FACT = Record(
    optional={
        "index": COUNT,
        "name": NAME,
        "uuid": NAME,
        "memory_total": BYTES,
        "driver": SHORT,
        "compute_capability": SHORT,
        "power_limit_w": Num(0, 1e6),
    }
)
FACTS = Record(
    optional={
        "hostname": NAME,
        "os": SHORT,
        "distro": NAME,
        "distro_id": SHORT,
        "distro_version": SHORT,
        "kernel": NAME,
        "arch": SHORT,
        "cpu_model": NAME,
        "cpu_cores": COUNT,
        "cpu_threads": COUNT,
        "cpu_max_mhz": Num(0, 1e7),
        "memory_total": BYTES,
        "swap_total": BYTES,
        "disks": ListOf(DISK_FACT, MAX_DISKS),
        "nics": ListOf(NIC_FACT, MAX_NICS),
        "boot_time": TIME,
        "agent_version": SHORT,
        "python": SHORT,
        "gpus": ListOf(GPU_FACT, MAX_GPUS),
    }
)

DISK_SAMPLE = Record(optional={"mount": PATH, "total": BYTES, "used": BYTES, "percent": PERCENT})
GPU_SAMPLE = Record(
    optional={"index": COUNT, "util_percent": PERCENT, "mem_used": BYTES, "mem_total": BYTES}
)
INSTANCE_SAMPLE = Record(
    optional={
        "pids": ListOf(PID, MAX_PIDS),
        "cpu_percent": PROCESS_PERCENT,
        "rss_bytes": BYTES,
        "threads": COUNT,
        "open_files": COUNT,
        "read_bps": RATE,
        "write_bps": RATE,
    }
)
METRICS_SAMPLE = Record(
    optional={
        "ts": TIME,
        "cpu_percent": PERCENT,
        "cpu_per_core": ListOf(PERCENT, MAX_CORES),
        "load1": LOAD,
        "load5": LOAD,
        "load15": LOAD,
        "mem_total": BYTES,
        "mem_used": BYTES,
        "mem_percent": PERCENT,
        "swap_total": BYTES,
        "swap_used": BYTES,
        "swap_percent": PERCENT,
        "disks": ListOf(DISK_SAMPLE, MAX_DISKS),
        "disk_read_bps": RATE,
        "disk_write_bps": RATE,
        "net_rx_bps": RATE,
        "net_tx_bps": RATE,
        "procs": COUNT,
        "uptime": DURATION,
        "gpus": ListOf(GPU_SAMPLE, MAX_GPUS),
        "instances": MapOf(INSTANCE, INSTANCE_SAMPLE, MAX_INSTANCES),
    }
)

INSTANCE_STATE = Record(
    required={"instance": INSTANCE, "state": Str(32)},
    optional={
        "pid": Opt(PID),
        "started": Opt(TIME),
        "restarts": COUNT,
        "version": Opt(SHORT),
        "sha256": Opt(SHORT),
        "package": Opt(SHORT),
        "previous_version": Opt(SHORT),
        "error": Opt(ERROR_TEXT),
        "kind": Opt(Str(16)),
        "time": TIME,
    },
)

EXEC_STATUS = Str(32)
JOIN = Record(optional={"token": SHORT, "proof": Str(256)})
