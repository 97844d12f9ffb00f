"""Instance storage: what the supervisor keeps on disk about each instance.

Every instance lives in ``<root>/<system>/<module>/``::

    instance.json   what to run (current/previous version, desired state, restarts)
    pid.json        the running process: pid, create_time, started
    versions/<version>-<sha256[:12]>/   the extracted packages (current + previous)
    logs/stdout.log, logs/stderr.log    the service's output (rotated copytruncate)

The files are written atomically, so an agent killed at any moment leaves
the old record or the new one. ``Instance`` pairs that record with what the
agent knows in memory (state, process, scheduled restart); the record's
spec is held typed (``Manifest``, ``Adoption``) once read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gdos.agent.adoption import Adoption
from gdos.agent.procs import ProcRef, boot_id, is_alive

from gdos.errors import ErrorCode, GdosError
from gdos.model import LIVE_STATES, InstanceState
from gdos.names import check_name
from gdos.pkg.manifest import Manifest

log = logging.getLogger("gdos.agent.supervisor")

INSTANCE_FILE = "instance.json"
PID_FILE = "pid.json"
LOG_NAMES = ("stdout.log", "stderr.log")
MARKER = "GDOS_INSTANCE_HOME"  # inherited by every descendant; finds orphans at stop time


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` so that readers see the old file or the new one, never half."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def split_instance(name: Any) -> tuple[str, str]:
    """``"system/module"`` -> (system, module), both valid names (no path tricks)."""
    parts = name.split("/") if isinstance(name, str) else []
    if len(parts) != 2:
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"instance {name!r} is not valid: write it as SYSTEM/MODULE.",
        )
    return check_name(parts[0], "system name"), check_name(parts[1], "module name")


def stored_records(root: Path) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    """(name, home, record) of every instance on disk; unreadable ones are skipped."""
    for path in sorted(root.glob(f"*/*/{INSTANCE_FILE}")):
        name = f"{path.parent.parent.name}/{path.parent.name}"
        try:
            split_instance(name)
            record = json.loads(path.read_text(encoding="utf-8"))
        except (GdosError, OSError, ValueError) as exc:
            log.warning("skipping %s: %s", path, exc)
            continue
        yield name, path.parent, record


@dataclass
class Instance:
    """One supervised instance: its record on disk plus what the agent knows now."""

    name: str
    home: Path
    record: dict[str, Any]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    state: str = InstanceState.STOPPED
    error: str | None = None
    main: ProcRef | None = None
    child: subprocess.Popen[bytes] | None = None  # set when main is our own child
    started: float | None = None
    strays: list[subprocess.Popen[bytes]] = field(default_factory=list)  # to reap
    recent_restarts: deque[float] = field(default_factory=deque)
    pending: asyncio.Task[None] | None = None  # a restart waiting out its backoff
    manifest: Manifest | None = None  # of the current version (managed)
    adopt: Adoption = field(default_factory=Adoption)

    def __post_init__(self) -> None:
        self._read_spec()

    def _read_spec(self) -> None:
        """Type the current spec once: every later read uses these, not the dict."""
        spec = self.spec
        raw = spec.get("manifest")
        self.manifest = Manifest.from_dict(raw) if raw else None
        self.adopt = Adoption.from_dict(dict(spec.get("adopt") or {}))

    def replace_record(self, record: dict[str, Any]) -> None:
        self.record = record
        self._read_spec()

    def set_current(self, current: dict[str, Any], previous: dict[str, Any] | None) -> None:
        """Make ``current`` the version to run (install, rollback)."""
        self.record["current"], self.record["previous"] = current, previous
        self._read_spec()

    @property
    def kind(self) -> str:
        return str(self.record.get("kind", "managed"))

    @property
    def spec(self) -> dict[str, Any]:
        return dict((self.record.get("current") or {}).get("spec") or {})

    @property
    def log_labels(self) -> dict[str, str]:
        """The named log files besides stdout and stderr (``gdos logs --file``)."""
        return dict(self.manifest.log_paths if self.manifest else {}) or dict(self.adopt.logs)

    @property
    def version_dir(self) -> Path | None:
        current = self.record.get("current") or {}
        return self.home / "versions" / current["dir"] if current.get("dir") else None

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def state_dict(self) -> dict[str, Any]:
        package = self.spec.get("package") or {}
        previous = ((self.record.get("previous") or {}).get("spec") or {}).get("package") or {}
        live = self.main is not None and self.state in LIVE_STATES
        return {
            "instance": self.name,
            "state": self.state,
            "pid": self.main.pid if live and self.main else None,
            "started": self.started if live else None,
            "restarts": int(self.record.get("restarts", 0)),
            "version": package.get("version"),
            "sha256": package.get("sha256"),
            "package": package.get("name"),
            "previous_version": previous.get("version"),
            "error": self.error,
            "kind": self.kind,
            "time": time.time(),
        }

    # -- instance.json and pid.json ---------------------------------------------------

    def save(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.home / INSTANCE_FILE, {"instance": self.name, **self.record})

    def write_pid_file(self) -> None:
        assert self.main is not None
        data = {
            "pid": self.main.pid,
            "create_time": self.main.create_time,
            "ticks": self.main.ticks,
            "boot_id": boot_id(),
            "started": self.started,
        }
        write_json_atomic(self.home / PID_FILE, data)

    def read_pid_file(self) -> tuple[ProcRef, float] | None:
        """The recorded process if it still runs as that very process, else None.

        Written in another boot, it names no live process whatever its pid;
        without ``ticks`` (an older agent wrote it) the wall-clock start is compared.
        """
        try:
            data = json.loads((self.home / PID_FILE).read_text(encoding="utf-8"))
            ticks = data.get("ticks")
            ref = ProcRef(
                int(data["pid"]), float(data["create_time"]), None if ticks is None else int(ticks)
            )
            started = float(data.get("started") or ref.create_time)
            recorded_boot = data.get("boot_id")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if recorded_boot is not None and recorded_boot != boot_id():
            return None
        return (ref, started) if is_alive(ref) else None

    def forget_pid(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.home / PID_FILE).unlink()

    # -- versions and logs ------------------------------------------------------------

    def move_in(self, staged: Path, dir_name: str, programs: list[str]) -> None:
        """Make ``staged`` the folder ``versions/<dir_name>``, its programs executable."""
        versions = self.home / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        incoming = versions / f".incoming-{uuid.uuid4().hex}"
        shutil.move(str(staged), incoming)
        for program in programs:
            path = incoming / program
            if path.is_file() and not os.access(path, os.X_OK):
                path.chmod(path.stat().st_mode | 0o111)  # zip archives drop the x bit
        target = versions / dir_name
        if target.exists():
            shutil.rmtree(target)
        os.replace(incoming, target)

    def prune_versions(self) -> None:
        """Keep only the current and the previous version's folders."""
        keep = {(self.record.get(k) or {}).get("dir") for k in ("current", "previous")}
        for path in (self.home / "versions").iterdir():
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)

    def open_logs(self) -> tuple[int, int]:
        """stdout.log and stderr.log opened O_APPEND (the caller closes both)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        out = os.open(self.logs / LOG_NAMES[0], flags, 0o640)
        try:
            return out, os.open(self.logs / LOG_NAMES[1], flags, 0o640)
        except OSError:
            os.close(out)
            raise
