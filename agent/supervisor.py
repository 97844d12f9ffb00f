"""The node's process supervisor: install, start, watch, restart, stop, recover.

Like supervisord or systemd, but one per agent and driven by the daemon.
This module is the facade the agent calls; each concern has its own home:

- ``instances``: the records on disk (instance.json, pid.json, versions, logs);
- ``strategies``: how a managed or an adopted process starts and stops;
- ``restart_policy``: what an exit leads to (backoff, give up);
- ``monitor``: the one task that notices exits and rotates logs.

Services run in their own session with their output appended to files, so
an agent restart (even SIGKILL) goes unnoticed by them. A restarted agent
re-adopts each process whose pid *and* start (clock ticks since boot, so a
wall-clock step changes nothing) match pid.json; a pid reused by another
program is never touched. Services see ``GDOS_INSTANCE``
(``system/module``) and ``GDOS_INSTANCE_HOME``, which also marks every
descendant, so a stop finds even double-forked orphans.

Operations on one instance are serialised by a per-instance lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gdos.agent.adoption import Adoption, locate
from gdos.agent.instances import MARKER, Instance, split_instance, stored_records
from gdos.agent.monitor import Monitor
from gdos.agent.procs import descendants, is_alive
from gdos.agent.strategies import KINDS, ProcessKind, alive, exit_status

from gdos.errors import ErrorCode, GdosError
from gdos.model import InstanceState
from gdos.pkg.manifest import VERSION_PATTERN, Manifest

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]

__all__ = ["MARKER", "Supervisor", "split_instance"]

SHA_PATTERN = re.compile(r"^[0-9a-f]{12,64}\Z")
AWAY = "process exited while the agent was not running"
# Settled states in which the instance should be running again after a swap.
RUNS = (InstanceState.RUNNING, InstanceState.BACKOFF)


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
        self.instances: dict[str, Instance] = {}
        self.monitor = Monitor(
            self.instances,
            self._noticed_exit,
            poll_interval=poll_interval,
            log_max_bytes=log_max_bytes,
            log_backups=log_backups,
        )
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()  # scheduled restarts

    # -- public operations ------------------------------------------------------------

    async def recover(self) -> None:
        """Re-adopt every instance found on disk (agent start, maybe after a crash)."""
        self._ensure_monitor()
        for name, home, record in stored_records(self.root):
            if name in self.instances:
                continue
            try:
                inst = Instance(name, home, record)
            except GdosError as exc:
                log.warning("skipping %s: %s", home, exc)
                continue
            self.instances[name] = inst
            running = inst.read_pid_file()
            if running is not None:
                inst.main, inst.started = running
                inst.state = InstanceState.RUNNING  # silently: the service never noticed
                continue
            inst.forget_pid()
            if record.get("desired") != InstanceState.RUNNING:
                inst.state = InstanceState.STOPPED
                self._emit(inst)
            else:
                self.exited(inst, None, AWAY, away=True)

    def snapshot(self) -> list[dict[str, Any]]:
        return [inst.state_dict() for inst in self.instances.values()]

    async def install(self, spec: dict[str, Any], staged_dir: Path) -> dict[str, Any]:
        """Move ``staged_dir`` in as the current version; restart if it was running.

        Returns the settled state (``stopped``, or ``running`` after a restart).
        """
        name = str(spec.get("instance"))
        system, module = split_instance(spec.get("instance"))
        kind = KINDS.get(str(spec.get("kind", "managed")))
        if kind is None or not kind.installable:
            raise GdosError(ErrorCode.INVALID_ARGUMENT, "only managed instances are installed.")
        dir_name = _version_dir(spec)
        manifest = Manifest.from_dict(spec.get("manifest") or {})
        inst = self.instances.get(name)
        if inst is not None and not self._kind(inst).installable:
            raise GdosError(
                ErrorCode.ALREADY_EXISTS, f"{name} is an adopted instance; destroy it first."
            )
        if inst is None:
            record = {"kind": kind.kind, "desired": InstanceState.STOPPED, "restarts": 0}
            inst = self.instances[name] = Instance(name, self.root / system / module, record)
        self._ensure_monitor()
        async with inst.lock:
            self._cancel_pending(inst)
            was_running = self._should_run(inst)
            self.set(inst, InstanceState.INSTALLING)
            await self._store_version(inst, spec, manifest, Path(staged_dir), dir_name)
            await self._terminate(inst)
            await self._settle(inst, was_running)
            return inst.state_dict()

    async def _store_version(
        self, inst: Instance, spec: dict[str, Any], manifest: Manifest, staged: Path, dir_name: str
    ) -> None:
        """Move the unpacked package in; the one it replaces becomes ``previous``."""
        current = inst.record.get("current") or {}
        try:
            if current.get("dir") == dir_name:
                await self._terminate(inst)  # replacing the very files it runs from
            programs = [manifest.entrypoint, manifest.stop_entrypoint]
            inst.move_in(staged, dir_name, [p for p in programs if p])
        except OSError as exc:
            version = dir_name.rsplit("-", 1)[0]
            self.set(inst, InstanceState.ERROR, f"could not store version {version}: {exc}")
            raise GdosError(
                ErrorCode.STORAGE_FAILED,
                f"could not store {inst.name} {version} on this node ({exc}); "
                "check the disk and try again.",
            ) from exc
        replaced = current if current and current.get("dir") != dir_name else None
        inst.set_current({"dir": dir_name, "spec": spec}, replaced or inst.record.get("previous"))
        inst.prune_versions()
        inst.save()

    async def start(self, instance: str) -> dict[str, Any]:
        inst = self._startable(instance)
        async with inst.lock:
            self._want(inst, InstanceState.RUNNING)
            if inst.state != InstanceState.RUNNING or not alive(inst):
                inst.recent_restarts.clear()
                await self._launch(inst)
            return inst.state_dict()

    async def stop(self, instance: str) -> dict[str, Any]:
        inst = self._get(instance)
        async with inst.lock:
            self._want(inst, InstanceState.STOPPED)
            await self._stop(inst)
            return inst.state_dict()

    async def restart(self, instance: str) -> dict[str, Any]:
        inst = self._startable(instance)
        async with inst.lock:
            self._want(inst, InstanceState.RUNNING)
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
            gone = {"instance": instance, "state": InstanceState.DESTROYED, "kind": "managed"}
            self.emit({**gone, "time": time.time()})
            return gone
        inst = self._get(instance)
        async with inst.lock:
            self._cancel_pending(inst)
            if self._kind(inst).stops_on_destroy:
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
            self.set(inst, InstanceState.DESTROYED)
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
            was_running = self._should_run(inst)
            await self._terminate(inst)
            inst.set_current(previous, inst.record["current"])
            inst.save()
            await self._settle(inst, was_running)
            return inst.state_dict()

    async def adopt(self, spec: dict[str, Any], replace: bool = False) -> dict[str, Any]:
        """Watch a process started outside gdos; refused when nothing matches now,
        when a process name matches several (unless told which), and when the
        name is adopted already (unless ``replace``)."""
        name = str(spec.get("instance"))
        system, module = split_instance(spec.get("instance"))
        adopted = KINDS["adopted"]
        existing = self.instances.get(name)
        if existing is not None and self._kind(existing) is not adopted:
            raise GdosError(ErrorCode.ALREADY_EXISTS, f"{name} is a managed instance already.")
        if existing is not None and not replace:
            pid = existing.main.pid if existing.main else None
            raise GdosError(
                ErrorCode.ALREADY_EXISTS,
                f"{name} is adopted already ({existing.state}, pid {pid or '-'}); add --replace "
                "to watch another process under this name, or destroy the adoption first.",
            )
        adoption = Adoption.from_dict(dict(spec.get("adopt") or {}))
        ref = locate(adoption, since=None, use_pid=True, strict=True)
        if ref is None:
            raise GdosError(
                ErrorCode.PROCESS_NOT_FOUND,
                f"no running process matches {adoption.describe()}; "
                "check the pid, pid file or process name.",
            )
        record = {
            "kind": adopted.kind,
            "desired": InstanceState.RUNNING,
            "restarts": 0,
            "current": {"dir": None, "spec": {**spec, "kind": adopted.kind}},
            "previous": None,
        }
        inst = existing or Instance(name, self.root / system / module, record)
        self.instances[inst.name] = inst
        self._ensure_monitor()
        async with inst.lock:
            inst.replace_record(record)
            inst.logs.mkdir(parents=True, exist_ok=True)
            inst.save()
            inst.main, inst.child, inst.started = ref, None, ref.create_time
            inst.write_pid_file()
            self.set(inst, InstanceState.RUNNING)
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
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await self.monitor.close()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- what strategies report back (see strategies.Core) ----------------------------

    def set(self, inst: Instance, state: str, error: str | None = None) -> None:
        inst.state, inst.error = state, error
        self._emit(inst)

    def exited(self, inst: Instance, code: int | None, reason: str, away: bool = False) -> None:
        """The process ended on its own: stop, error, back off or give up."""
        inst.main, inst.child = None, None
        inst.forget_pid()
        kind = self._kind(inst)
        kind.kill_leftovers(inst)
        verdict = kind.after_exit(inst, code, reason, away)
        if verdict.delay is None:
            self.set(inst, verdict.state, verdict.error)
            return
        inst.record["restarts"] = int(inst.record.get("restarts", 0)) + 1
        inst.save()
        self.set(inst, verdict.state, verdict.error)
        inst.pending = asyncio.create_task(self._restart_later(inst, verdict.delay))
        self._tasks.add(inst.pending)
        inst.pending.add_done_callback(self._tasks.discard)

    # -- internals --------------------------------------------------------------------

    def _noticed_exit(self, inst: Instance) -> None:
        code, reason = exit_status(inst)
        self.exited(inst, code, reason)

    async def _restart_later(self, inst: Instance, delay: float) -> None:
        await asyncio.sleep(delay)
        if inst.pending is asyncio.current_task():
            inst.pending = None  # from here on we may hold the lock: not cancellable
        async with inst.lock:
            if inst.state != InstanceState.BACKOFF or self._closed:
                return
            try:
                await self._launch(inst)
            except Exception as exc:
                log.exception("restart of %s failed", inst.name)
                self.set(inst, InstanceState.ERROR, f"restart failed: {exc}")

    def _ensure_monitor(self) -> None:
        if not self._closed:
            self.monitor.ensure_running()

    def _kind(self, inst: Instance) -> ProcessKind:
        return _kind(inst.kind)

    async def _launch(self, inst: Instance) -> None:
        """Start the instance and wait until it is running, failed or backing off."""
        await self._kind(inst).launch(self, inst)

    async def _terminate(self, inst: Instance, graceful: bool = True) -> None:
        await self._kind(inst).terminate(inst, graceful)

    async def _stop(self, inst: Instance) -> None:
        """Stop the process (if any) and settle in ``stopped``."""
        if inst.main is not None or inst.child is not None:
            self.set(inst, InstanceState.STOPPING)
            await self._terminate(inst)
        self.set(inst, InstanceState.STOPPED)

    @staticmethod
    def _should_run(inst: Instance) -> bool:
        """Wanted running and running (or about to be again): relaunch after a swap."""
        return inst.record.get("desired") == InstanceState.RUNNING and inst.state in RUNS

    async def _settle(self, inst: Instance, was_running: bool) -> None:
        if was_running:
            inst.recent_restarts.clear()
            await self._launch(inst)
        else:
            self.set(inst, InstanceState.STOPPED)

    def _want(self, inst: Instance, desired: str) -> None:
        """An operator's decision replaces any scheduled restart and survives an agent restart."""
        self._cancel_pending(inst)
        inst.record["desired"] = desired
        inst.save()

    @staticmethod
    def _cancel_pending(inst: Instance) -> None:
        """Drop a scheduled restart (safe: it holds no lock while it waits)."""
        if inst.pending is not None:
            inst.pending.cancel()
            inst.pending = None

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
        self._kind(inst).check_startable(inst)
        return inst

    def _emit(self, inst: Instance) -> None:
        try:
            self.emit(inst.state_dict())
        except Exception:
            log.exception("state listener failed")


def _kind(name: Any) -> ProcessKind:
    kind = KINDS.get(str(name))
    if kind is None:
        raise GdosError(ErrorCode.INVALID_ARGUMENT, f"unknown instance kind {name!r}.")
    return kind


def _version_dir(spec: dict[str, Any]) -> str:
    """``<version>-<sha256[:12]>``: the folder a package version is kept in."""
    package, manifest = spec.get("package") or {}, spec.get("manifest") or {}
    version = str(package.get("version") or manifest.get("version") or "")
    sha = str(package.get("sha256") or "").lower()
    if not VERSION_PATTERN.match(version) or not SHA_PATTERN.match(sha):
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"install of {spec.get('instance')} needs a package version and sha256 "
            f"(got {version!r}, {sha!r}).",
        )
    return f"{version}-{sha[:12]}"
