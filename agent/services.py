"""The agent's side of services: daemon operations in, instance states out.

Each ``svc.*`` operation runs as its own task and ends with one ``svc.done``,
kept until the daemon acknowledges it (``svc.done.ack``) and sent again
after every reconnect and while unacknowledged, so an answer lost with the
link, or not stored by the daemon, still arrives. Deploy fetches the package
(agent/packages.py), unpacks it safely (gdos/pkg/archive.py) into a staging
folder and hands it to the supervisor, which owns every instance from then
on.

This agent is the authority on what runs here: after each welcome the whole
instance list (deploys under way included) goes out in ``svc.report``, which
replaces the daemon's view. Every state change and report carries a
sequence number; until the daemon acknowledges the latest one as stored
(``svc.state.ack``), a fresh report goes out every ``RESEND_AFTER`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gdos.agent.logs import check_log_location
from gdos.agent.packages import PackageCache
from gdos.agent.supervisor import Supervisor

from gdos.errors import ErrorCode, GdosError
from gdos.model import Action, InstanceState, NodeState, refusal
from gdos.pkg.archive import extract_zip

log = logging.getLogger("gdos.agent.services")

Send = Callable[[str, dict[str, Any]], None]
Spawn = Callable[[Any], None]
KEEP_ANSWERS = 256
RESEND_AFTER = 5.0  # seconds without an acknowledgement before sending again
ACTIONS = frozenset({Action.START, Action.STOP, Action.RESTART, Action.DESTROY, Action.ROLLBACK})
# An instance in these states has no process to stop when its node is disabled.
AT_REST = frozenset(
    {InstanceState.STOPPED, InstanceState.FAILED, InstanceState.ERROR, InstanceState.DESTROYED}
)


class ServiceHost:
    def __init__(
        self,
        state_dir: Path,
        send: Send,
        spawn: Spawn,
        *,
        log_max_bytes: int = 10 * 1024 * 1024,
        log_backups: int = 5,
        log_roots: tuple[Path, ...] = (),
    ) -> None:
        self.send, self.spawn = send, spawn
        self.log_roots = [Path(os.path.realpath(root)) for root in log_roots]
        self.staging = state_dir / "staging"
        shutil.rmtree(self.staging, ignore_errors=True)  # half-unpacked leftovers
        self.staging.mkdir(parents=True, exist_ok=True)
        self.cache = PackageCache(state_dir / "packages", send)
        self.supervisor = Supervisor(
            state_dir / "instances",
            self._emit,
            log_max_bytes=log_max_bytes,
            log_backups=log_backups,
        )
        # op -> [answer, when last sent], until the daemon acknowledges it
        self.answers: OrderedDict[int, list[Any]] = OrderedDict()
        self.running: set[int] = set()  # ops under way, reported so the daemon can tell lost ones
        self.deploying: dict[str, dict[str, Any]] = {}  # instance -> its state while fetched
        self.node_state: str = NodeState.NORMAL
        self.seq = self.acked = 0  # last state/report sent, last one the daemon stored
        self.unacked_since: float | None = None
        self.reported_at = 0.0
        self._linked = 0  # bumped on every welcome and link loss: ends the resend loop

    async def recover(self) -> None:
        await self.supervisor.recover()

    async def close(self) -> None:
        await self.supervisor.close()

    def _next_seq(self) -> int:
        self.seq += 1
        if self.unacked_since is None:
            self.unacked_since = time.monotonic()
        return self.seq

    def _emit(self, state: dict[str, Any]) -> None:
        self.send("svc.state", {"state": state, "seq": self._next_seq()})

    def report(self) -> None:
        """The whole list: what the supervisor runs, plus deploys not installed yet."""
        instances = self.supervisor.snapshot()
        known = {item["instance"] for item in instances}
        instances += [
            {**state, "time": time.time()}
            for name, state in self.deploying.items()
            if name not in known
        ]
        ops = sorted(self.running | set(self.answers))
        self.send("svc.report", {"instances": instances, "ops": ops, "seq": self._next_seq()})
        self.reported_at = time.monotonic()

    # -- link events ---------------------------------------------------------------
    def welcomed(self) -> None:
        self.cache.link_up()
        self.report()
        for op in list(self.answers):
            self._send_answer(op)
        self._linked += 1
        self.spawn(self._resend_unacknowledged(self._linked))

    def link_lost(self) -> None:
        self._linked += 1
        self.cache.link_down()

    def on_done_ack(self, body: dict[str, Any]) -> None:
        self.answers.pop(body["op"], None)

    def on_state_ack(self, body: dict[str, Any]) -> None:
        """Every state and report up to ``seq`` is stored by the daemon."""
        self.acked = max(self.acked, min(body["seq"], self.seq))
        self.unacked_since = None if self.acked >= self.seq else time.monotonic()

    async def _resend_unacknowledged(self, linked: int) -> None:
        """While this link lasts: resend what the daemon has not stored yet."""
        while True:
            await asyncio.sleep(RESEND_AFTER / 2)
            if linked != self._linked:
                return
            now = time.monotonic()
            waiting = self.unacked_since is not None and now - self.unacked_since >= RESEND_AFTER
            if waiting and now - self.reported_at >= RESEND_AFTER:
                log.info("the daemon has not stored our instance states; reporting again")
                self.report()
            for op, (_, sent) in list(self.answers.items()):
                if now - sent >= RESEND_AFTER:
                    self._send_answer(op)

    def _send_answer(self, op: int) -> None:
        entry = self.answers[op]
        entry[1] = time.monotonic()
        self.send("svc.done", entry[0])

    def set_node_state(self, state: str) -> None:
        """A disabled node stops every instance and refuses work until enabled."""
        before, self.node_state = self.node_state, state
        if state == NodeState.DISABLED and before != NodeState.DISABLED:
            for item in self.supervisor.snapshot():
                if item["state"] not in AT_REST:
                    self.spawn(self._quietly(self.supervisor.stop(item["instance"])))

    async def _quietly(self, work: Any) -> None:
        try:
            await work
        except Exception:
            log.exception("stopping an instance of a disabled node failed")

    # -- operations -----------------------------------------------------------------
    def on_deploy(self, body: dict[str, Any]) -> None:
        self.spawn(self._answer(body["op"], self._deploy(body["spec"]), "deploy"))

    def on_action(self, body: dict[str, Any]) -> None:
        action = body["action"]
        if action not in ACTIONS:
            self._done(body["op"], GdosError(ErrorCode.INVALID_ARGUMENT, f"no action {action!r}"))
            return
        self.spawn(self._answer(body["op"], self._act(body["instance"], action), action))

    def on_adopt(self, body: dict[str, Any]) -> None:
        work = self._adopt(body["spec"], replace=bool(body.get("replace")))
        self.spawn(self._answer(body["op"], work, "adopt"))

    async def _answer(self, op: int, work: Any, what: str) -> None:
        self.running.add(op)
        try:
            state = await work
        except GdosError as exc:
            self._done(op, exc)
            return
        except Exception as exc:  # the daemon must get an answer whatever happens
            log.exception("%s failed", what)
            self._done(op, GdosError(ErrorCode.INTERNAL, f"agent error during {what}: {exc}"))
            return
        finally:
            self.running.discard(op)
        self._done(op, None, state)

    def _done(self, op: int, error: GdosError | None, state: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"op": op, "ok": error is None}
        if state is not None:
            body["state"] = state
        if error is not None:
            body |= {"code": str(error.code), "message": error.message}
        self.answers[op] = [body, 0.0]
        while len(self.answers) > KEEP_ANSWERS:
            self.answers.popitem(last=False)
        self._send_answer(op)

    def _refuse_work(self, action: Action) -> None:
        """The node state's policy (gdos/model.py), checked again on arrival."""
        error = refusal(self.node_state, action, "", by_agent=True)
        if error is not None:
            raise error

    async def _deploy(self, spec: dict[str, Any]) -> dict[str, Any]:
        self._refuse_work(Action.DEPLOY)
        package = spec["package"]
        installing = {
            "instance": spec["instance"],
            "state": InstanceState.INSTALLING,
            "version": package["version"],
            "sha256": package["sha256"],
            "package": package["name"],
            "kind": "managed",
            "time": time.time(),
        }
        self._emit(installing)
        self.deploying[spec["instance"]] = installing
        try:
            path = await self.cache.get(package["sha256"], package["size"])
            staged = self.staging / uuid.uuid4().hex
            info = await asyncio.to_thread(extract_zip, path, staged)
            manifest = info.manifest.to_dict()
            if (manifest["name"], manifest["version"]) != (package["name"], package["version"]):
                raise GdosError(
                    ErrorCode.PACKAGE_CORRUPT,
                    f"the package holds {manifest['name']}@{manifest['version']}, "
                    f"not {package['name']}@{package['version']}",
                )
            result: dict[str, Any] = await self.supervisor.install(spec, staged)
            return result
        except GdosError as exc:
            self._emit(
                {
                    "instance": spec["instance"],
                    "state": InstanceState.ERROR,
                    "error": exc.message,
                    "kind": "managed",
                    "time": time.time(),
                }
            )
            raise
        finally:
            self.deploying.pop(spec["instance"], None)

    async def _act(self, instance: str, action: str) -> dict[str, Any]:
        self._refuse_work(Action(action))
        method = getattr(self.supervisor, action)
        result: dict[str, Any] = await method(instance)
        return result

    async def _adopt(self, spec: dict[str, Any], replace: bool) -> dict[str, Any]:
        self._refuse_work(Action.ADOPT)
        logs = (spec.get("adopt") or {}).get("logs") or {}
        for path in logs.values() if isinstance(logs, dict) else []:
            check_log_location(Path(str(path)), self.log_roots)  # what `gdos logs` will allow
        result: dict[str, Any] = await self.supervisor.adopt(spec, replace=replace)
        return result
