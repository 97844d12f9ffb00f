"""How each kind of instance is started, stopped and judged when it exits.

A *managed* instance runs a package gdos installed: its entrypoint is
spawned in its own session with the instance marker in its environment, it
must pass its readiness probe, a stop may run its stop_entrypoint, and an
exit goes through the restart policy. An *adopted* instance is a process
started outside gdos: it is found by pid, pid file or process name, started
only by its start_cmd (if it has one), stopped by its stop_cmd or SIGTERM,
and an exit just leaves it stopped.

Both kinds implement ``ProcessKind``; the supervisor core calls them and
never asks which kind it holds. Processes we spawned are reaped through
their Popen; processes we merely know about are watched through psutil and
their exit status is unknown (which the on-failure policy treats as a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from gdos.agent import probes
from gdos.agent.adoption import locate
from gdos.agent.instances import MARKER, Instance
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
from gdos.agent.restart_policy import Verdict, judge

from gdos.errors import ErrorCode, GdosError
from gdos.model import InstanceState
from gdos.pkg.manifest import Manifest

log = logging.getLogger("gdos.agent.supervisor")

ADOPTED_STOP_TIMEOUT = 10.0
ADOPTED_START_TIMEOUT = 10.0
LOCATE_EVERY = 0.1

Find = Callable[[], ProcRef | None]  # one look for the process (runs in a thread)
# Settings of a managed instance nothing was installed for yet: the manifest defaults.
_UNINSTALLED = Manifest(name="-", version="-", entrypoint="-")


class Core(Protocol):
    """What a strategy may ask of the supervisor while it starts a process."""

    def set(self, inst: Instance, state: str, error: str | None = None) -> None: ...

    def exited(self, inst: Instance, code: int | None, reason: str) -> None: ...


# -- the process of an instance, whatever its kind ------------------------------------


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "process exited"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def alive(inst: Instance) -> bool:
    if inst.child is not None:
        return inst.child.poll() is None
    return inst.main is not None and is_alive(inst.main)


def exit_status(inst: Instance) -> tuple[int | None, str]:
    code = inst.child.returncode if inst.child is not None else None
    return code, describe_exit(code)


def spawn(
    inst: Instance, argv: list[str], cwd: Path | None, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session, output appended to the instance's logs.

    Never piped to the agent: an agent restart (even SIGKILL) goes unnoticed.
    """
    out, err = inst.open_logs()
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


async def kill_group_of(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)  # unreaped leader: the group is ours
    with contextlib.suppress(subprocess.TimeoutExpired):
        await asyncio.to_thread(proc.wait, KILL_GRACE)


async def wait_gone(
    inst: Instance, targets: list[ProcRef], deadline: float, stopper: subprocess.Popen[bytes] | None
) -> None:
    while time.monotonic() < deadline:
        if inst.child is not None:
            inst.child.poll()  # reap, so it does not linger as a zombie
        if stopper is not None:
            stopper.poll()
        if not any(is_alive(t) for t in targets):
            return
        await asyncio.sleep(0.02)


async def settle_child(inst: Instance) -> None:
    """Reap what we spawned, forget the process, drop pid.json."""
    if inst.child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(inst.child.wait, KILL_GRACE)
    inst.main, inst.child = None, None
    inst.forget_pid()


def _shell(inst: Instance, command: str) -> subprocess.Popen[bytes]:
    return spawn(inst, ["/bin/sh", "-c", command], None, dict(os.environ))


class ProcessKind:
    """The interface of a kind of instance, and what both kinds do alike.

    ``launch`` and ``terminate`` are written once here; a kind says what
    differs through the small methods below them.
    """

    kind = ""
    installable = False  # takes packages (install, rollback)
    stops_on_destroy = True  # destroy stops the process, or only stops watching it
    group_signals = True  # signal whole process groups, not single processes

    def check_startable(self, inst: Instance) -> None:
        """Raise when an operator's start cannot work for this instance."""

    def after_exit(self, inst: Instance, code: int | None, reason: str, away: bool) -> Verdict:
        """Where an exit leaves the instance (``away``: it ended while no agent ran)."""
        raise NotImplementedError

    # -- starting ---------------------------------------------------------------------

    def cannot_start(self, inst: Instance) -> tuple[InstanceState, str] | None:
        """Where the instance settles when there is nothing to start, else None."""
        return None

    def spawn_main(self, inst: Instance) -> subprocess.Popen[bytes]:
        """Start the program (raises OSError)."""
        raise NotImplementedError

    def spawn_failed(self, inst: Instance, exc: OSError) -> str:
        raise NotImplementedError

    def finder(self, inst: Instance, own: ProcRef) -> tuple[Find, float] | None:
        """How to find the real process the program starts, and for how long;
        None: the spawned program is the process."""
        return None

    async def not_found(self, inst: Instance, launcher: subprocess.Popen[bytes]) -> str:
        """Clean up after a search that found nothing; the error to report."""
        raise NotImplementedError

    async def ready(self, core: Core, inst: Instance) -> None:
        core.set(inst, InstanceState.RUNNING)

    async def launch(self, core: Core, inst: Instance) -> None:
        """Start and settle in running, error, backoff or stopped."""
        refused = self.cannot_start(inst)
        if refused is not None:
            core.set(inst, *refused)
            return
        core.set(inst, InstanceState.STARTING)
        try:
            proc = self.spawn_main(inst)
        except OSError as exc:
            core.set(inst, InstanceState.ERROR, self.spawn_failed(inst, exc))
            return
        spawned = time.time()
        own = proc_ref(proc.pid, zombie_ok=True) or ProcRef(proc.pid, 0.0)
        search = self.finder(inst, own)
        if search is None:
            inst.main, inst.child = own, proc
        else:
            inst.strays.append(proc)
            found = await _poll(*search, proc)
            if found is None:
                core.set(inst, InstanceState.ERROR, await self.not_found(inst, proc))
                return
            inst.main, inst.child = found, None
        inst.started = spawned
        inst.write_pid_file()
        await self.ready(core, inst)

    # -- stopping ---------------------------------------------------------------------

    def marked(self, inst: Instance) -> list[ProcRef]:
        """Processes carrying the instance marker (only ever set by spawning)."""
        return []

    def stop_timeout(self, inst: Instance) -> float:
        raise NotImplementedError

    def stopper(self, inst: Instance, graceful: bool) -> subprocess.Popen[bytes] | None:
        """Run the kind's stop command, if it has one; None: send the stop signal."""
        return None

    def stop_signal(self, inst: Instance) -> signal.Signals:
        return signal.SIGTERM

    def kill_leftovers(self, inst: Instance) -> list[ProcRef]:
        """SIGKILL what the instance left behind once its main process is gone.

        Like systemd's control-group kill mode: workers of a crashed service must
        not hold its port (or its files) against the next start.
        """
        leftovers = self.marked(inst)
        signal_processes(leftovers, signal.SIGKILL, groups=True)
        return leftovers

    async def terminate(self, inst: Instance, graceful: bool = True) -> None:
        """End the process and everything it started. No orphan survives.

        Run the stop command (if any) or send the stop signal to the process
        and its descendants; after the stop timeout SIGKILL every survivor.
        """
        main = inst.main if inst.main is not None and alive(inst) else None
        if main is None:
            leftovers = self.kill_leftovers(inst)
            await wait_gone(inst, leftovers, time.monotonic() + KILL_GRACE, None)
            await settle_child(inst)
            return
        targets = sorted({main, *descendants(main.pid), *self.marked(inst)}, key=_started)
        deadline = time.monotonic() + self.stop_timeout(inst)
        stopper = None
        try:
            stopper = self.stopper(inst, graceful)
        except OSError as exc:
            log.warning("%s: could not run the stop command (%s); signalling", inst.name, exc)
        if stopper is None:
            signal_processes(targets, self.stop_signal(inst), groups=self.group_signals)
        await wait_gone(inst, targets, deadline, stopper)
        if stopper is not None and stopper.poll() is None:
            await kill_group_of(stopper)
        await self._kill_survivors(inst, targets)
        late = self.kill_leftovers(inst)  # started after the snapshot
        await wait_gone(inst, late, time.monotonic() + KILL_GRACE, None)
        await settle_child(inst)

    async def _kill_survivors(self, inst: Instance, targets: list[ProcRef]) -> None:
        survivors = [t for t in targets if is_alive(t)]
        if not survivors:
            return
        survivors += [d for t in survivors for d in descendants(t.pid)]
        survivors += self.marked(inst)
        signal_processes(survivors, signal.SIGKILL, groups=self.group_signals)
        await wait_gone(inst, survivors, time.monotonic() + KILL_GRACE, None)
        left = [t.pid for t in survivors if is_alive(t)]
        if left:
            log.warning("%s: processes %s survived SIGKILL", inst.name, left)


def _started(ref: ProcRef) -> float:
    return ref.create_time


async def _poll(find: Find, timeout: float, launcher: subprocess.Popen[bytes]) -> ProcRef | None:
    """Look for the process until ``timeout``, reaping the launcher meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        launcher.poll()
        found = await asyncio.to_thread(find)
        if found is not None or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(LOCATE_EVERY)


class Managed(ProcessKind):
    """A package gdos installed and runs from ``versions/<dir>``."""

    kind = "managed"
    installable = True

    @staticmethod
    def _manifest(inst: Instance) -> Manifest:
        """The current version's manifest (before any install: the manifest defaults)."""
        return inst.manifest or _UNINSTALLED

    def cannot_start(self, inst: Instance) -> tuple[InstanceState, str] | None:
        vdir = inst.version_dir
        if inst.manifest is None or vdir is None or not vdir.is_dir():
            return InstanceState.ERROR, "no installed version to start; install a package first"
        return None

    def spawn_main(self, inst: Instance) -> subprocess.Popen[bytes]:
        manifest, vdir = self._manifest(inst), inst.version_dir
        assert vdir is not None
        argv = [str(vdir / manifest.entrypoint), *map(str, manifest.args)]
        return spawn(inst, argv, vdir, self.env(inst))

    def spawn_failed(self, inst: Instance, exc: OSError) -> str:
        return f"could not start {self._manifest(inst).entrypoint}: {exc}"

    def finder(self, inst: Instance, own: ProcRef) -> tuple[Find, float] | None:
        """``pid_strategy: match``: the process named ``process_name`` started since
        ``own`` (not ``own`` itself), within ``match_timeout``."""
        manifest = self._manifest(inst)
        if manifest.pid_strategy != "match":
            return None
        name = str(manifest.process_name or "")

        def find() -> ProcRef | None:
            return next(iter(find_by_name(name, own.create_time, own.pid)), None)

        return find, manifest.match_timeout

    async def not_found(self, inst: Instance, launcher: subprocess.Popen[bytes]) -> str:
        await kill_group_of(launcher)
        self.kill_leftovers(inst)
        manifest = self._manifest(inst)
        return (
            f"no process named {manifest.process_name!r} appeared within "
            f"{manifest.match_timeout:g}s of starting {manifest.entrypoint}"
        )

    async def ready(self, core: Core, inst: Instance) -> None:
        """Running once the probe passes; a failed probe stops it as an error."""
        probe = self._manifest(inst).probe.to_dict()
        failure = await probes.wait_ready(probe, lambda: alive(inst))
        if failure is None and alive(inst):
            core.set(inst, InstanceState.RUNNING)
            return
        if not alive(inst):
            code, reason = exit_status(inst)
            core.exited(inst, code, f"{reason} during startup")
            return
        await self.terminate(inst, graceful=False)
        core.set(inst, InstanceState.ERROR, failure)

    @staticmethod
    def env(inst: Instance) -> dict[str, str]:
        """The service's environment: the agent's, the manifest's env, and its marks."""
        extra = Managed._manifest(inst).env
        return {**os.environ, **extra, "GDOS_INSTANCE": inst.name, MARKER: str(inst.home)}

    def after_exit(self, inst: Instance, code: int | None, reason: str, away: bool) -> Verdict:
        policy = self._manifest(inst).restart
        return judge(policy, code, reason, inst.recent_restarts, time.monotonic())

    def marked(self, inst: Instance) -> list[ProcRef]:
        return marked_processes(MARKER, str(inst.home))

    def stop_timeout(self, inst: Instance) -> float:
        return float(self._manifest(inst).stop_timeout)

    def stopper(self, inst: Instance, graceful: bool) -> subprocess.Popen[bytes] | None:
        manifest, vdir = self._manifest(inst), inst.version_dir
        if not graceful or not manifest.stop_entrypoint or vdir is None:
            return None
        argv = [str(vdir / manifest.stop_entrypoint), *map(str, manifest.stop_args)]
        return spawn(inst, argv, vdir, self.env(inst))

    def stop_signal(self, inst: Instance) -> signal.Signals:
        try:
            return signal.Signals[self._manifest(inst).stop_signal]
        except KeyError:
            return signal.SIGTERM


class Adopted(ProcessKind):
    """A process started outside gdos, watched (and maybe started) by its adoption."""

    kind = "adopted"
    stops_on_destroy = False  # gdos did not start it: destroying only stops watching
    group_signals = False  # its group may hold processes that are not its own

    def check_startable(self, inst: Instance) -> None:
        if not inst.adopt.start_cmd:
            raise GdosError(
                ErrorCode.START_FAILED,
                f"{inst.name} was adopted without a start_cmd; start it by hand "
                "or adopt it again with one.",
            )

    def cannot_start(self, inst: Instance) -> tuple[InstanceState, str] | None:
        if inst.adopt.start_cmd:
            return None
        return InstanceState.STOPPED, "adopted without a start_cmd: start it by hand"

    def spawn_main(self, inst: Instance) -> subprocess.Popen[bytes]:
        return _shell(inst, str(inst.adopt.start_cmd))

    def spawn_failed(self, inst: Instance, exc: OSError) -> str:
        return f"could not run the start_cmd: {exc}"

    def finder(self, inst: Instance, own: ProcRef) -> tuple[Find, float] | None:
        """The process the start_cmd started, found the way the adoption names it
        (with neither a pid file nor a process name, the start_cmd is the process)."""
        adopt = inst.adopt
        if not (adopt.pid_file or adopt.process_name):
            return None
        return (lambda: locate(adopt, own.create_time, False)), ADOPTED_START_TIMEOUT

    async def not_found(self, inst: Instance, launcher: subprocess.Popen[bytes]) -> str:
        return (
            f"the start_cmd ran but no process matching {inst.adopt.describe()} "
            f"appeared within {ADOPTED_START_TIMEOUT:g}s"
        )

    def after_exit(self, inst: Instance, code: int | None, reason: str, away: bool) -> Verdict:
        return Verdict(InstanceState.STOPPED, reason if away else "process exited")

    def stop_timeout(self, inst: Instance) -> float:
        return ADOPTED_STOP_TIMEOUT

    def stopper(self, inst: Instance, graceful: bool) -> subprocess.Popen[bytes] | None:
        return _shell(inst, inst.adopt.stop_cmd) if inst.adopt.stop_cmd else None


KINDS: dict[str, ProcessKind] = {kind.kind: kind for kind in (Managed(), Adopted())}
