"""Daemon settings, from command-line options; pushed in part to agents."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gdos.errors import ErrorCode, GdosError

DEFAULT_MESH = "tcp://0.0.0.0:7420"
_HOSTNAME = re.compile(r"^(\*|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$")


def check_mesh_address(value: str) -> str:
    """``tcp://HOST:PORT`` (or ``HOST:PORT``) checked before anything binds it."""
    address = value.strip()
    rest = address[len("tcp://") :] if address.startswith("tcp://") else address
    host, sep, port = rest.rpartition(":")
    ok = bool(sep) and (port == "*" or (port.isdigit() and 0 < int(port) < 65536))
    if ok and host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            ok = False
    elif ok:
        ok = bool(_HOSTNAME.match(host))
    if not ok or "://" in rest:
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"--mesh {value!r} is not an address to listen on; give tcp://HOST:PORT, "
            "e.g. tcp://0.0.0.0:7420.",
        )
    return "tcp://" + rest


@dataclass(frozen=True)
class DaemonConfig:
    mesh_bind: str = DEFAULT_MESH
    advertise: str | None = None  # address put in join tokens; default derived from mesh_bind
    heartbeat_interval: float = 15.0
    metrics_interval: float = 5.0
    offline_after: float = 45.0
    insecure: bool = False
    trust_network: bool = False  # --i-trust-this-network: --insecure beyond loopback
    max_pending_keys: int = 1000  # the oldest pending key expires beyond this
    pending_keys_per_minute: float = 20.0  # new pending keys per source address
    flush_interval: float = 5.0
    result_grace: float = 5.0
    record_input: bool = False  # also record what operators type in shells ("i" events)
    max_package_bytes: int = 2 * 1024**3
    # package storage: {"backend": "local"} or S3 options (gdos/daemon/blobs.py)
    package_store: dict[str, Any] = field(default_factory=lambda: {"backend": "local"})
    prometheus: str | None = None  # HOST:PORT serving /metrics (gdos/daemon/prometheus.py)
    alert_command: str | None = None  # run on every alert event (gdos/daemon/hooks.py)
    alert_webhook: str | None = None  # POSTed every alert event
    backup_every: float = 0.0  # seconds between scheduled backups; 0 = none
    backup_keep: int = 10  # scheduled retention: newest gdos-*.db kept
    # mesh connection caps (gdos/daemon/guard.py); 0 connections = from the fd limit
    max_handshakes: int = 32
    max_connections: int = 0
    peer_quota_mb: float = 64.0  # MiB/s one agent may send (guard.accepted_quota)
    log_max_bytes: int = 50 * 1024**2  # daemon log file rotation (gdos/daemon/logfile.py)
    log_keep: int = 5

    def package_store_options(self, root: Path) -> dict[str, Any]:
        """Options for ``blobs.open_store``: the local folder is also the S3 cache."""
        return {**self.package_store, "root": root}

    def package_limits(self) -> Any:
        from gdos.pkg.archive import Limits

        return Limits(max_total_bytes=self.max_package_bytes)

    def agent_config(self) -> dict[str, Any]:
        """The part of the settings every agent applies, sent in each reply."""
        return {
            "heartbeat_interval": self.heartbeat_interval,
            "metrics_interval": self.metrics_interval,
        }

    def token_address(self) -> str:
        """The mesh address a new agent should dial (for join tokens)."""
        if self.advertise:
            return self.advertise
        if "0.0.0.0" in self.mesh_bind or "*" in self.mesh_bind:
            import socket

            host = socket.gethostname()
            return self.mesh_bind.replace("0.0.0.0", host).replace("*", host)
        return self.mesh_bind
