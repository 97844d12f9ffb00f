"""The node's process supervisor: install, start, watch, restart, stop, recover.

Like supervisord or systemd, but one per agent and driven by the daemon.
Every instance lives in ``<root>/<system>/<module>/``::

    instance.json   what to run (current/previous version, desired state, restarts)
    pid.json        the running process: pid, create_time, started
    versions/<version>-<sha256[:12]>/   the extracted packages (current + previous)
    logs/stdout.log, logs/stderr.log    the service's output (rotated copytruncate)

Services are started in their own session with stdout/stderr opened
O_APPEND on those files, never piped to the agent, so an agent restart (even
SIGKILL) goes unnoticed by them. A restarted agent re-adopts each process
whose pid *and* create_time match pid.json; a pid reused by another program
is never touched.

Services see ``GDOS_INSTANCE`` (``system/module``) and ``GDOS_INSTANCE_HOME``
(the folder above) in their environment. The latter also marks every
descendant, so a stop finds even double-forked orphans.

Operations on one instance are serialised by a per-instance lock; a single
monitor task notices exits, applies the restart policy and rotates logs.
Processes we spawned are reaped through their Popen; processes we merely
know about (re-adopted, matched, adopted) are watched through psutil and
their exit status is unknown, which the on-failure policy treats as a
failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gdos.agent import logfiles, probes
from gdos.agent.procs import (
    KILL_GRACE,
    ProcRef,
    descendants,
    find_by_name,
    is_alive,
    marked_processes,
    proc_ref,
    signal_processes,
)

from gdos.errors import ErrorCode, GdosError
from gdos.names import check_name

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]

INSTANCE_FILE = "instance.json"
PID_FILE = "pid.json"
LOG_NAMES = ("stdout.log", "stderr.log")
MARKER = "GDOS_INSTANCE_HOME"  # inherited by every descendant; finds orphans at stop time
ADOPTED_STOP_TIMEOUT = 10.0
ADOPTED_START_TIMEOUT = 10.0
LOCATE_EVERY = 0.1
VERSION_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}\Z")
SHA_PATTERN = re.compile(r"^[0-9a-f]{12,64}\Z")
LIVE = ("running", "starting", "stopping")
DEFAULT_RESTART = {
    "policy": "on-failure",
    "max_retries": 5,
    "backoff": 1.0,
    "backoff_max": 30.0,
    "window": 60.0,
}


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


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "process exited"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class Instance:
    """One supervised instance: its record on disk plus what the agent knows now."""

    name: str
    home: Path
    record: dict[str, Any]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    state: str = "stopped"
    error: str | None = None
    main: ProcRef | None = None
    child: subprocess.Popen[bytes] | None = None  # set when main is our own child
    started: float | None = None
    strays: list[subprocess.Popen[bytes]] = field(default_factory=list)  # to reap
    recent_restarts: deque[float] = field(default_factory=deque)
    pending: asyncio.Task[None] | None = None  # a restart waiting out its backoff

    @property
    def kind(self) -> str:
        return str(self.record.get("kind", "managed"))

    @property
    def spec(self) -> dict[str, Any]:
        return dict((self.record.get("current") or {}).get("spec") or {})

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(self.spec.get("manifest") or {})

    @property
    def adopt(self) -> dict[str, Any]:
        return dict(self.spec.get("adopt") or {})

    @property
    def restart_policy(self) -> dict[str, Any]:
        return {**DEFAULT_RESTART, **(self.manifest.get("restart") or {})}

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
        live = self.main is not None and self.state in LIVE
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


class Supervisor:
    """Supervises every instance under ``root``; reports each state change to ``emit``."""

    def __init__(
        self,
        root: Path,
        emit: Emit,
        *,
        log_max_bytes: int = 10 * 1024 * 1024,
        log_backups: int = 5,
        poll_interval: float = 0.5,
    ) -> None:
        self.root = Path(root).absolute()
        self.emit = emit
        self.log_max_bytes, self.log_backups = log_max_bytes, log_backups
        self.poll_interval = poll_interval
        self.instances: dict[str, Instance] = {}
        self._monitor: asyncio.Task[None] | None = None
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()  # scheduled restarts

    # -- public operations ------------------------------------------------------------

    async def recover(self) -> None:
        """Re-adopt every instance found on disk (agent start, maybe after a crash)."""
        self._ensure_monitor()
        for path in sorted(self.root.glob(f"*/*/{INSTANCE_FILE}")):
            name = f"{path.parent.parent.name}/{path.parent.name}"
            try:
                split_instance(name)
                record = json.loads(path.read_text(encoding="utf-8"))
            except (GdosError, OSError, ValueError) as exc:
                log.warning("skipping %s: %s", path, exc)
                continue
            if name in self.instances:
                continue
            inst = Instance(name, path.parent, record)
            self.instances[name] = inst
            running = self._read_pid_file(inst)
            if running is not None:
                inst.main, inst.started = running
                inst.state = "running"  # silently: the service never noticed we were gone
                continue
            self._forget_pid(inst)
            if record.get("desired") != "running":
                inst.state = "stopped"
                self._emit(inst)
            elif inst.kind == "adopted":
                self._set(inst, "stopped", "process exited while the agent was not running")
            else:
                self._on_exit(inst, None, "process exited while the agent was not running")

    def snapshot(self) -> list[dict[str, Any]]:
        return [inst.state_dict() for inst in self.instances.values()]

    async def install(self, spec: dict[str, Any], staged_dir: Path) -> dict[str, Any]:
        """Move ``staged_dir`` in as the current version; restart if it was running.

        Returns the settled state (``stopped``, or ``running`` after a restart).
        """
        name = spec.get("instance")
        system, module = split_instance(name)
        if spec.get("kind", "managed") != "managed":
            raise GdosError(ErrorCode.INVALID_ARGUMENT, "only managed instances are installed.")
        manifest, package = spec.get("manifest") or {}, spec.get("package") or {}
        version = str(package.get("version") or manifest.get("version") or "")
        sha = str(package.get("sha256") or "").lower()
        if not VERSION_PATTERN.match(version) or not SHA_PATTERN.match(sha):
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT,
                f"install of {name} needs a package version and sha256 (got {version!r}, {sha!r}).",
            )
        if not manifest.get("entrypoint"):
            raise GdosError(ErrorCode.MANIFEST_INVALID, f"{name}: the manifest has no entrypoint.")
        inst = self.instances.get(str(name))
        if inst is not None and inst.kind != "managed":
            raise GdosError(
                ErrorCode.ALREADY_EXISTS, f"{name} is an adopted instance; destroy it first."
            )
        if inst is None:
            home = self.root / system / module
            record = {"kind": "managed", "desired": "stopped", "restarts": 0}
            inst = self.instances[str(name)] = Instance(str(name), home, record)
        self._ensure_monitor()
        async with inst.lock:
            self._cancel_pending(inst)
            was_running = inst.record.get("desired") == "running" and inst.state in (
                "running",
                "backoff",
            )
            self._set(inst, "installing")
            dir_name = f"{version}-{sha[:12]}"
            current = inst.record.get("current") or {}
            try:
                if current.get("dir") == dir_name:
                    await self._terminate(inst)  # replacing the very files it runs from
                programs = [manifest["entrypoint"], manifest.get("stop_entrypoint")]
                self._move_in(inst, Path(staged_dir), dir_name, [str(p) for p in programs if p])
            except OSError as exc:
                self._set(inst, "error", f"could not store version {version}: {exc}")
                raise GdosError(
                    ErrorCode.STORAGE_FAILED,
                    f"could not store {name} {version} on this node ({exc}); "
                    "check the disk and try again.",
                ) from exc
            if current and current.get("dir") != dir_name:
                inst.record["previous"] = current
            inst.record["current"] = {"dir": dir_name, "spec": spec}
            self._prune_versions(inst)
            self._save(inst)
            await self._terminate(inst)
            if was_running:
                inst.recent_restarts.clear()
                await self._launch(inst)
            else:
                self._set(inst, "stopped")
            return inst.state_dict()

    def _want(self, inst: Instance, desired: str) -> None:
        """An operator's decision replaces any scheduled restart and survives an agent restart."""
        self._cancel_pending(inst)
        inst.record["desired"] = desired
        self._save(inst)

    async def start(self, instance: str) -> dict[str, Any]:
        inst = self._startable(instance)
        async with inst.lock:
            self._want(inst, "running")
            if inst.state != "running" or not self._alive(inst):
                inst.recent_restarts.clear()
                await self._launch(inst)
            return inst.state_dict()

    async def stop(self, instance: str) -> dict[str, Any]:
        inst = self._get(instance)
        async with inst.lock:
            self._want(inst, "stopped")
            await self._stop(inst)
            return inst.state_dict()

    async def restart(self, instance: str) -> dict[str, Any]:
        inst = self._startable(instance)
        async with inst.lock:
            self._want(inst, "running")
            await self._stop(inst)
            inst.recent_restarts.clear()
            await self._launch(inst)
            return inst.state_dict()

    async def destroy(self, instance: str) -> dict[str, Any]:
        """Stop (managed only), delete the instance folder, report ``destroyed``.

        An adopted process is released, not stopped: gdos did not start it and
        cannot uninstall it, so destroying the adoption only stops watching it.
        An instance this node never created (its deploy failed before the
        install) is destroyed already: that is reported, not refused.
        """
        if instance not in self.instances:
            split_instance(instance)
            gone = {"instance": instance, "state": "destroyed", "kind": "managed"}
            self.emit({**gone, "time": time.time()})
            return gone
        inst = self._get(instance)
        async with inst.lock:
            self._cancel_pending(inst)
            if inst.kind == "managed":
                await self._stop(inst)
            try:
                shutil.rmtree(inst.home)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise GdosError(
                    ErrorCode.STORAGE_FAILED, f"could not remove {inst.home}: {exc}"
                ) from exc
            self.instances.pop(inst.name, None)
            inst.main, inst.child = None, None
            self._set(inst, "destroyed")
            return inst.state_dict()

    async def rollback(self, instance: str) -> dict[str, Any]:
        """Swap current and previous versions; restart when it was running."""
        inst = self._get(instance)
        async with inst.lock:
            previous = inst.record.get("previous")
            if not previous:
                raise GdosError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"{instance} has no previous version to roll back to.",
                )
            if not (inst.home / "versions" / previous["dir"]).is_dir():
                raise GdosError(
                    ErrorCode.PACKAGE_CORRUPT,
                    f"{instance}: previous version folder {previous['dir']} is missing; "
                    "install the version again.",
                )
            self._cancel_pending(inst)
            was_running = inst.record.get("desired") == "running" and inst.state in (
                "running",
                "backoff",
            )
            await self._terminate(inst)
            inst.record["previous"], inst.record["current"] = inst.record["current"], previous
            self._save(inst)
            if was_running:
                inst.recent_restarts.clear()
                await self._launch(inst)
            else:
                self._set(inst, "stopped")
            return inst.state_dict()

    async def adopt(self, spec: dict[str, Any], replace: bool = False) -> dict[str, Any]:
        """Watch a process started outside gdos; refused when nothing matches now,
        when a process name matches several (unless told which), and when the
        name is adopted already (unless ``replace``)."""
        name = spec.get("instance")
        system, module = split_instance(name)
        adopt = spec.get("adopt") or {}
        existing = self.instances.get(str(name))
        if existing is not None and existing.kind != "adopted":
            raise GdosError(ErrorCode.ALREADY_EXISTS, f"{name} is a managed instance already.")
        if existing is not None and not replace:
            pid = existing.main.pid if existing.main else None
            raise GdosError(
                ErrorCode.ALREADY_EXISTS,
                f"{name} is adopted already ({existing.state}, pid {pid or '-'}); add --replace "
                "to watch another process under this name, or destroy the adoption first.",
            )
        ref = _locate(adopt, since=None, use_pid=True, strict=True)
        if ref is None:
            raise GdosError(
                ErrorCode.PROCESS_NOT_FOUND,
                f"no running process matches {_describe_adopt(adopt)}; "
                "check the pid, pid file or process name.",
            )
        record = {
            "kind": "adopted",
            "desired": "running",
            "restarts": 0,
            "current": {"dir": None, "spec": {**spec, "kind": "adopted"}},
            "previous": None,
        }
        inst = existing or Instance(str(name), self.root / system / module, record)
        self.instances[inst.name] = inst
        self._ensure_monitor()
        async with inst.lock:
            inst.record = record
            inst.logs.mkdir(parents=True, exist_ok=True)
            self._save(inst)
            inst.main, inst.child, inst.started = ref, None, ref.create_time
            self._write_pid_file(inst)
            self._set(inst, "running")
            return inst.state_dict()

    def pids(self, instance: str) -> list[int]:
        """The main pid and its descendants (empty when not running)."""
        inst = self._get(instance)
        if inst.main is None or not is_alive(inst.main):
            return []
        return [inst.main.pid, *(ref.pid for ref in descendants(inst.main.pid))]

    async def close(self) -> None:
        """Stop watching (agent shutdown). Services keep running; recover() finds them."""
        self._closed = True
        tasks = [t for t in (self._monitor, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._monitor = None

    # -- state bookkeeping ------------------------------------------------------------

    def _get(self, instance: str) -> Instance:
        inst = self.instances.get(instance)
        if inst is None:
            raise GdosError(
                ErrorCode.INSTANCE_UNKNOWN,
                f"no instance {instance!r} on this node; see the node's instance list.",
            )
        return inst

    def _startable(self, instance: str) -> Instance:
        inst = self._get(instance)
        if inst.kind == "adopted" and not inst.adopt.get("start_cmd"):
            raise GdosError(
                ErrorCode.START_FAILED,
                f"{inst.name} was adopted without a start_cmd; start it by hand "
                "or adopt it again with one.",
            )
        return inst

    def _set(self, inst: Instance, state: str, error: str | None = None) -> None:
        inst.state, inst.error = state, error
        self._emit(inst)

    def _emit(self, inst: Instance) -> None:
        try:
            self.emit(inst.state_dict())
        except Exception:
            log.exception("state listener failed")

    def _save(self, inst: Instance) -> None:
        inst.home.mkdir(parents=True, exist_ok=True)
        write_json_atomic(inst.home / INSTANCE_FILE, {"instance": inst.name, **inst.record})

    def _write_pid_file(self, inst: Instance) -> None:
        assert inst.main is not None
        data = {
            "pid": inst.main.pid,
            "create_time": inst.main.create_time,
            "started": inst.started,
        }
        write_json_atomic(inst.home / PID_FILE, data)

    def _read_pid_file(self, inst: Instance) -> tuple[ProcRef, float] | None:
        """The recorded process if it still runs as that very process, else None."""
        try:
            data = json.loads((inst.home / PID_FILE).read_text(encoding="utf-8"))
            ref = ProcRef(int(data["pid"]), float(data["create_time"]))
            started = float(data.get("started") or ref.create_time)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return (ref, started) if is_alive(ref) else None

    def _forget_pid(self, inst: Instance) -> None:
        with contextlib.suppress(FileNotFoundError):
            (inst.home / PID_FILE).unlink()

    def _cancel_pending(self, inst: Instance) -> None:
        """Drop a scheduled restart (safe: it holds no lock while it waits)."""
        if inst.pending is not None:
            inst.pending.cancel()
            inst.pending = None

    # -- files ------------------------------------------------------------------------

    def _move_in(self, inst: Instance, staged: Path, dir_name: str, programs: list[str]) -> None:
        versions = inst.home / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        inst.logs.mkdir(exist_ok=True)
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

    def _prune_versions(self, inst: Instance) -> None:
        keep = {(inst.record.get(k) or {}).get("dir") for k in ("current", "previous")}
        for path in (inst.home / "versions").iterdir():
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)

    def _open_logs(self, inst: Instance) -> tuple[int, int]:
        inst.logs.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        out = os.open(inst.logs / LOG_NAMES[0], flags, 0o640)
        try:
            return out, os.open(inst.logs / LOG_NAMES[1], flags, 0o640)
        except OSError:
            os.close(out)
            raise

    def _spawn(
        self, inst: Instance, argv: list[str], cwd: Path | None, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a new session, output appended to the instance's logs."""
        out, err = self._open_logs(inst)
        try:
            return subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            os.close(out)
            os.close(err)

    @staticmethod
    def _env(inst: Instance) -> dict[str, str]:
        extra = {str(k): str(v) for k, v in (inst.manifest.get("env") or {}).items()}
        return {**os.environ, **extra, "GDOS_INSTANCE": inst.name, MARKER: str(inst.home)}

    # -- starting ---------------------------------------------------------------------

    async def _launch(self, inst: Instance) -> None:
        """Start the instance and wait until it is running, failed or backing off."""
        if inst.kind == "adopted":
            await self._launch_adopted(inst)
            return
        manifest, vdir = inst.manifest, inst.version_dir
        if vdir is None or not vdir.is_dir():
            self._set(inst, "error", "no installed version to start; install a package first")
            return
        self._set(inst, "starting")
        entry = str(vdir / str(manifest["entrypoint"]))
        argv = [entry, *(str(a) for a in manifest.get("args") or [])]
        try:
            proc = self._spawn(inst, argv, vdir, self._env(inst))
        except OSError as exc:
            self._set(inst, "error", f"could not start {manifest['entrypoint']}: {exc}")
            return
        spawned = time.time()
        own = proc_ref(proc.pid, zombie_ok=True) or ProcRef(proc.pid, 0.0)
        if manifest.get("pid_strategy", "spawn") == "match":
            inst.strays.append(proc)
            found = await self._match(inst, proc, own)
            if found is None:
                await self._kill_group_of(proc)
                self._kill_leftovers(inst)
                timeout = float(manifest.get("match_timeout", 10))
                self._set(
                    inst,
                    "error",
                    f"no process named {manifest.get('process_name')!r} appeared within "
                    f"{timeout:g}s of starting {manifest['entrypoint']}",
                )
                return
            inst.main, inst.child = found, None
        else:
            inst.main, inst.child = own, proc
        inst.started = spawned
        self._write_pid_file(inst)
        await self._await_ready(inst, manifest.get("probe") or {"type": "none"})

    async def _match(
        self, inst: Instance, launcher: subprocess.Popen[bytes], own: ProcRef
    ) -> ProcRef | None:
        """The process named ``process_name`` started since ``own`` (not ``own`` itself)."""
        name = str(inst.manifest.get("process_name") or "")
        deadline = time.monotonic() + float(inst.manifest.get("match_timeout", 10))
        while True:
            launcher.poll()
            found = await asyncio.to_thread(find_by_name, name, own.create_time, own.pid)
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(LOCATE_EVERY)

    async def _await_ready(self, inst: Instance, probe: dict[str, Any]) -> None:
        failure = await probes.wait_ready(probe, lambda: self._alive(inst))
        if failure is None and self._alive(inst):
            self._set(inst, "running")
            return
        if not self._alive(inst):
            code, reason = self._exit_status(inst)
            self._on_exit(inst, code, f"{reason} during startup")
            return
        await self._terminate(inst, graceful=False)
        self._set(inst, "error", failure)

    async def _launch_adopted(self, inst: Instance) -> None:
        adopt = inst.adopt
        command = adopt.get("start_cmd")
        if not command:
            self._set(inst, "stopped", "adopted without a start_cmd: start it by hand")
            return
        self._set(inst, "starting")
        try:
            proc = self._spawn(inst, ["/bin/sh", "-c", str(command)], None, dict(os.environ))
        except OSError as exc:
            self._set(inst, "error", f"could not run the start_cmd: {exc}")
            return
        spawned = time.time()
        own = proc_ref(proc.pid, zombie_ok=True) or ProcRef(proc.pid, 0.0)
        if adopt.get("pid_file") or adopt.get("process_name"):
            inst.strays.append(proc)
            deadline = time.monotonic() + ADOPTED_START_TIMEOUT
            found = None
            while found is None and time.monotonic() < deadline:
                proc.poll()
                found = await asyncio.to_thread(_locate, adopt, own.create_time, False)
                if found is None:
                    await asyncio.sleep(LOCATE_EVERY)
            if found is None:
                self._set(
                    inst,
                    "error",
                    f"the start_cmd ran but no process matching {_describe_adopt(adopt)} "
                    f"appeared within {ADOPTED_START_TIMEOUT:g}s",
                )
                return
            inst.main, inst.child = found, None
        else:
            inst.main, inst.child = own, proc
        inst.started = spawned
        self._write_pid_file(inst)
        self._set(inst, "running")

    # -- exits and restarts -----------------------------------------------------------

    def _alive(self, inst: Instance) -> bool:
        if inst.child is not None:
            return inst.child.poll() is None
        return inst.main is not None and is_alive(inst.main)

    def _exit_status(self, inst: Instance) -> tuple[int | None, str]:
        code = inst.child.returncode if inst.child is not None else None
        return code, describe_exit(code)

    def _on_exit(self, inst: Instance, code: int | None, reason: str) -> None:
        """The process ended on its own: stop, error, back off or give up."""
        inst.main, inst.child = None, None
        self._forget_pid(inst)
        self._kill_leftovers(inst)
        if inst.kind == "adopted":
            self._set(inst, "stopped", "process exited")
            return
        policy = inst.restart_policy
        wanted = policy["policy"] == "always" or (policy["policy"] == "on-failure" and code != 0)
        if not wanted:
            self._set(inst, "stopped" if code == 0 else "error", reason)
            return
        now, window = time.monotonic(), float(policy["window"])
        while inst.recent_restarts and inst.recent_restarts[0] < now - window:
            inst.recent_restarts.popleft()
        count = len(inst.recent_restarts)
        if count >= int(policy["max_retries"]):
            self._set(
                inst, "failed", f"restarted {count} times in {window:g}s; giving up ({reason})"
            )
            return
        delay = min(float(policy["backoff"]) * 2 ** min(count, 30), float(policy["backoff_max"]))
        inst.recent_restarts.append(now)
        inst.record["restarts"] = int(inst.record.get("restarts", 0)) + 1
        self._save(inst)
        self._set(inst, "backoff", f"{reason}; restarting in {delay:g}s")
        inst.pending = asyncio.create_task(self._restart_later(inst, delay))
        self._tasks.add(inst.pending)
        inst.pending.add_done_callback(self._tasks.discard)

    async def _restart_later(self, inst: Instance, delay: float) -> None:
        await asyncio.sleep(delay)
        if inst.pending is asyncio.current_task():
            inst.pending = None  # from here on we may hold the lock: not cancellable
        async with inst.lock:
            if inst.state != "backoff" or self._closed:
                return
            try:
                await self._launch(inst)
            except Exception as exc:
                log.exception("restart of %s failed", inst.name)
                self._set(inst, "error", f"restart failed: {exc}")

    # -- stopping ---------------------------------------------------------------------

    async def _stop(self, inst: Instance) -> None:
        """Stop the process (if any) and settle in ``stopped``."""
        if inst.main is not None or inst.child is not None:
            self._set(inst, "stopping")
            await self._terminate(inst)
        self._set(inst, "stopped")

    async def _terminate(self, inst: Instance, graceful: bool = True) -> None:
        """End the process and everything it started. No orphan survives.

        Managed: run stop_entrypoint (if any and ``graceful``) or send stop_signal
        to the process group and to descendants that left it; after stop_timeout
        SIGKILL the group and every survivor. Adopted: stop_cmd or SIGTERM to the
        process and its descendants, SIGKILL after 10 s.
        """
        main = inst.main if inst.main is not None and self._alive(inst) else None
        if main is None:
            leftovers = self._kill_leftovers(inst)
            await self._wait_gone(inst, leftovers, time.monotonic() + KILL_GRACE, None)
            await self._settle_child(inst)
            return
        manifest, adopted = inst.manifest, inst.kind == "adopted"
        targets = self._targets(inst, main)
        timeout = ADOPTED_STOP_TIMEOUT if adopted else float(manifest.get("stop_timeout", 10))
        deadline = time.monotonic() + timeout
        stopper = None
        stop_entry = manifest.get("stop_entrypoint") if graceful and not adopted else None
        stop_cmd = inst.adopt.get("stop_cmd") if adopted else None
        try:
            if stop_entry and inst.version_dir is not None:
                argv = [
                    str(inst.version_dir / stop_entry),
                    *map(str, manifest.get("stop_args") or []),
                ]
                stopper = self._spawn(inst, argv, inst.version_dir, self._env(inst))
            elif stop_cmd:
                stopper = self._spawn(
                    inst, ["/bin/sh", "-c", str(stop_cmd)], None, dict(os.environ)
                )
        except OSError as exc:
            log.warning("%s: could not run the stop command (%s); signalling", inst.name, exc)
        if stopper is None:
            sig = signal.SIGTERM if adopted else _signal_named(manifest.get("stop_signal"))
            signal_processes(targets, sig, groups=not adopted)
        await self._wait_gone(inst, targets, deadline, stopper)
        if stopper is not None and stopper.poll() is None:
            await self._kill_group_of(stopper)
        survivors = [t for t in targets if is_alive(t)]
        if survivors:
            survivors += [d for t in survivors for d in descendants(t.pid)]
            if not adopted:
                survivors += marked_processes(MARKER, str(inst.home))
            signal_processes(survivors, signal.SIGKILL, groups=not adopted)
            await self._wait_gone(inst, survivors, time.monotonic() + KILL_GRACE, None)
            left = [t.pid for t in survivors if is_alive(t)]
            if left:
                log.warning("%s: processes %s survived SIGKILL", inst.name, left)
        late = self._kill_leftovers(inst)  # started after the snapshot
        await self._wait_gone(inst, late, time.monotonic() + KILL_GRACE, None)
        await self._settle_child(inst)

    def _targets(self, inst: Instance, main: ProcRef) -> list[ProcRef]:
        """The process, its descendants and (managed) orphans still carrying our marker."""
        found = {main, *descendants(main.pid)}
        if inst.kind == "managed":
            found.update(marked_processes(MARKER, str(inst.home)))
        return sorted(found, key=lambda ref: ref.create_time)

    def _kill_leftovers(self, inst: Instance) -> list[ProcRef]:
        """SIGKILL what a managed instance left behind once its main process is gone.

        Like systemd's control-group kill mode: workers of a crashed service must
        not hold its port (or its files) against the next start.
        """
        if inst.kind != "managed":
            return []
        leftovers = marked_processes(MARKER, str(inst.home))
        signal_processes(leftovers, signal.SIGKILL, groups=True)
        return leftovers

    async def _wait_gone(
        self,
        inst: Instance,
        targets: list[ProcRef],
        deadline: float,
        stopper: subprocess.Popen[bytes] | None,
    ) -> None:
        while time.monotonic() < deadline:
            if inst.child is not None:
                inst.child.poll()  # reap, so it does not linger as a zombie
            if stopper is not None:
                stopper.poll()
            if not any(is_alive(t) for t in targets):
                return
            await asyncio.sleep(0.02)

    async def _settle_child(self, inst: Instance) -> None:
        """Reap what we spawned, forget the process, drop pid.json."""
        if inst.child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(inst.child.wait, KILL_GRACE)
        inst.main, inst.child = None, None
        self._forget_pid(inst)

    async def _kill_group_of(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)  # unreaped leader: the group is ours
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(proc.wait, KILL_GRACE)

    # -- monitor ----------------------------------------------------------------------

    def _ensure_monitor(self) -> None:
        if self._monitor is None and not self._closed:
            self._monitor = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("supervisor monitor tick failed")
            await asyncio.sleep(self.poll_interval)

    async def _tick(self) -> None:
        for inst in list(self.instances.values()):
            inst.strays = [p for p in inst.strays if p.poll() is None]
            if inst.state == "running" and not inst.lock.locked() and not self._alive(inst):
                code, reason = self._exit_status(inst)
                self._on_exit(inst, code, reason)
            for name in LOG_NAMES:
                path = inst.logs / name
                if logfiles.needs_rotation(path, self.log_max_bytes):
                    with contextlib.suppress(OSError):
                        await asyncio.to_thread(logfiles.rotate, path, self.log_backups)


def _signal_named(name: Any) -> signal.Signals:
    try:
        return signal.Signals[str(name or "SIGTERM")]
    except KeyError:
        return signal.SIGTERM


def _describe_adopt(adopt: dict[str, Any]) -> str:
    parts = [
        f"{key} {adopt[key]!r}" for key in ("pid", "pid_file", "process_name") if adopt.get(key)
    ]
    return " or ".join(parts) or "nothing (give a pid, pid_file or process_name)"


def _locate(
    adopt: dict[str, Any], since: float | None, use_pid: bool, strict: bool = False
) -> ProcRef | None:
    """The process an adoption points at: by pid, pid file, then process name.

    Several processes with the name are resolved by the adoption's ``choose``
    (``newest`` or ``oldest``); without one, ``strict`` (the operator's adopt)
    refuses and lists them, while a relaunch by start_cmd takes the oldest.
    """
    if use_pid and adopt.get("pid"):
        with contextlib.suppress(TypeError, ValueError):
            ref = proc_ref(int(adopt["pid"]))
            if ref is not None:
                return ref
    if adopt.get("pid_file"):
        with contextlib.suppress(OSError, ValueError):
            ref = _pid_file_ref(Path(str(adopt["pid_file"])))
            if ref is not None and (since is None or ref.create_time >= since - 0.05):
                return ref
    if adopt.get("process_name"):
        found = find_by_name(str(adopt["process_name"]), since)
        if len(found) > 1 and strict and adopt.get("choose") not in ("newest", "oldest"):
            raise _ambiguous(str(adopt["process_name"]), found)
        if found:
            return found[-1] if adopt.get("choose") == "newest" else found[0]
    return None


def _pid_file_ref(path: Path) -> ProcRef | None:
    """The process a pid file names, or None while it is empty or half written.

    A start command such as ``echo $! > FILE`` truncates the file before it
    writes the pid, so a poll can read nothing: that is "not yet", not an error.
    """
    words = path.read_text(encoding="utf-8").split()
    if not words or not words[0].isdigit():
        return None
    return proc_ref(int(words[0]))


def _ambiguous(name: str, found: list[ProcRef], shown: int = 10) -> GdosError:
    """PROCESS_AMBIGUOUS, listing the candidates (pid, start time, command line)."""
    lines = [
        f"{len(found)} processes match process name {name!r}; adopt one with --pid PID, "
        "or add --newest or --oldest:"
    ]
    for ref in found[:shown]:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ref.create_time))
        lines.append(f"  pid {ref.pid}  started {started}  {_command_line(ref.pid)}")
    if len(found) > shown:
        lines.append(f"  ... and {len(found) - shown} more")
    return GdosError(ErrorCode.PROCESS_AMBIGUOUS, "\n".join(lines))


def _command_line(pid: int, width: int = 100) -> str:
    import psutil

    try:
        text = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return "(gone)"
    return text if len(text) <= width else text[: width - 1] + "…"
