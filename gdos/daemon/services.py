"""Systems, modules and instances: definitions, and operations across nodes.

A system is a named set of modules; a module is a package (name, optional
pinned version) with overrides and ``after`` dependencies; an instance is a
module deployed on one node. Definitions are checked when they are written:
unknown packages or modules, invalid overrides and dependency cycles are
refused then, never discovered half-way through a start.

Every operation records the instance's state before anything is sent (the
seed's asynchronous flow: ``deploying`` first), sends one ``svc.*`` message
per instance with an op id that no daemon run hands out twice
(gdos/daemon/opids.py), and waits for the agent's ``svc.done``. The answer
only settles the operation: states come from the agent's ``svc.state`` and
``svc.report`` (gdos/daemon/instance_reports.py), so an answer to an
operation this daemon does not know (an earlier run's, resent after a
reconnect) changes nothing. Every answer is acknowledged (``svc.done.ack``)
so the agent can drop it. A whole-system start goes level by level in
dependency order, stop in reverse.
"""

from __future__ import annotations

import asyncio
import fnmatch
import graphlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gdos import units
from gdos.daemon import module_defs
from gdos.daemon.catalog import Catalog
from gdos.daemon.guard import check_instance_room, check_report_size
from gdos.daemon.instance_reports import InstanceReports
from gdos.daemon.mesh import Mesh
from gdos.daemon.opids import OpIds
from gdos.daemon.placement import check_platform
from gdos.daemon.registry import LiveNode, NodeRegistry
from gdos.errors import ErrorCode, GdosError
from gdos.manifest import apply_overrides
from gdos.names import check_name
from gdos.protocol import Message

log = logging.getLogger("gdosd.services")

ACTIONS = ("deploy", "start", "stop", "restart", "destroy", "rollback")
# What an instance's state must be once an action settled, to count as done.
GOALS = {
    "deploy": ("stopped", "running"),
    "start": ("running",),
    "restart": ("running",),
    "rollback": ("stopped", "running"),
    "stop": ("stopped",),
    "destroy": ("destroyed",),
}
ADOPTED = "adopted"  # the pseudo-system of processes adopted with 'gdos adopt'
DEPLOY_TIMEOUT = 900.0
Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Target:
    """``SYSTEM``, ``SYSTEM/MODULE`` or ``SYSTEM/MODULE@NODE``."""

    system: str
    module: str | None = None
    node: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        rest, _, node = text.partition("@")
        system, _, module = rest.partition("/")
        try:
            check_name(system, "system name")
            if module:
                check_name(module, "module name")
            if node:
                check_name(node)
        except GdosError:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT,
                f"target {text!r} is not SYSTEM, SYSTEM/MODULE or SYSTEM/MODULE@NODE "
                "(names: letters, digits, '.', '_', '-').",
            ) from None
        return cls(system, module or None, node or None)


def instance_name(row: dict[str, Any]) -> str:
    return f"{row['system']}/{row['module']}@{row['node']}"


class Services:
    def __init__(self, catalog: Catalog, registry: NodeRegistry, mesh: Mesh, op_ids: OpIds) -> None:
        self.catalog, self.registry, self.mesh = catalog, registry, mesh
        # op id -> (node, the node's connection when sent, the answer to come)
        self.pending: dict[int, tuple[str, float | None, asyncio.Future[dict[str, Any]]]] = {}
        self.watchers: list[Emit] = []
        self.op_ids = op_ids
        self.reports = InstanceReports(catalog, mesh, self._publish, self.view)
        registry.on_offline.append(self._on_offline)

    # -- definitions -------------------------------------------------------------
    def create_system(self, name: str) -> dict[str, Any]:
        check_name(name, "system name")
        if name == ADOPTED:
            raise GdosError(ErrorCode.INVALID_ARGUMENT, f"{ADOPTED!r} is reserved for gdos adopt.")
        self.catalog.create_system(name)
        return {"system": name}

    def add_module(self, body: dict[str, Any]) -> dict[str, Any]:
        system, name = body["system"], check_name(body["module"], "module name")
        self._system(system)
        package = self.catalog.package(body["package"], body.get("version"))
        modules = {m["name"]: m for m in self.catalog.modules(system)}
        existing = modules.get(name)
        settings = module_defs.merged(existing, body, bool(body.get("replace")))
        overrides, after = settings["overrides"], settings["after"]
        apply_overrides(package["manifest"], overrides)  # refuses invalid overrides now
        for other in after:
            if other == name or other not in modules:
                raise GdosError(
                    ErrorCode.MODULE_UNKNOWN,
                    f"--after {other}: no module {other} in system {system} "
                    "(add it first; a module cannot depend on itself).",
                )
        row = {
            "system": system,
            "name": name,
            "package": package["name"],
            "version": body.get("version"),
            "overrides": overrides,
            "after": after,
        }
        modules[name] = row
        levels(modules.values())  # refuses a cycle before anything is saved
        self.catalog.save_module(row)
        changed = module_defs.changes(existing, row) if existing else []
        how = "added" if not existing else "replaced" if body.get("replace") else "updated"
        return {
            "module": row,
            "result": how if existing is None or changed else "unchanged",
            "changes": changed,
        }

    def show_system(self, name: str) -> dict[str, Any]:
        modules = self._system(name)
        return {
            "system": name,
            "modules": modules,
            "levels": levels(modules),
            "instances": [self.view(r) for r in self.catalog.instances(name)],
        }

    def list_systems(self) -> list[dict[str, Any]]:
        out = []
        for name in self.catalog.system_names():
            instances = self.catalog.instances(name)
            out.append(
                {
                    "system": name,
                    "modules": len(self.catalog.modules(name)),
                    "instances": len(instances),
                    "running": sum(1 for i in instances if i["state"] == "running"),
                }
            )
        return out

    def remove_system(self, name: str, module: str | None) -> dict[str, Any]:
        modules = self._system(name)
        if module and module not in {m["name"] for m in modules}:
            raise GdosError(ErrorCode.MODULE_UNKNOWN, f"no module {module} in system {name}.")
        deployed = self.catalog.instances(name, module)
        if deployed:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT,
                f"{name}{'/' + module if module else ''} has {len(deployed)} deployed "
                f"instance(s); run 'gdos destroy {name}{'/' + module if module else ''}' first.",
            )
        dependants = [m["name"] for m in modules if module and module in m["after"]]
        if dependants:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT,
                f"modules {', '.join(dependants)} start after {module}; remove them first.",
            )
        self.catalog.delete_system(name, module)
        return {"removed": f"{name}{'/' + module if module else ''}"}

    def _system(self, name: str) -> list[dict[str, Any]]:
        if not self.catalog.has_system(name):
            raise GdosError(
                ErrorCode.SYSTEM_UNKNOWN,
                f"no system {name}; create it with 'gdos system create {name}'.",
            )
        return self.catalog.modules(name)

    # -- status --------------------------------------------------------------------
    def status(self, target: str | None) -> list[dict[str, Any]]:
        if not target:
            return [self.view(r) for r in self.catalog.instances()]
        t = Target.parse(target)
        if t.system != ADOPTED:
            self._system(t.system)
        return [self.view(r) for r in self.catalog.instances(t.system, t.module, t.node)]

    def watch_views(self) -> list[dict[str, Any]]:
        """Instance views without the fields that change by themselves (uptime)."""
        views = [self.view(r) for r in self.catalog.instances()]
        for view in views:
            del view["uptime"], view["updated"]
        return views

    def view(self, row: dict[str, Any]) -> dict[str, Any]:
        node = self.registry.nodes.get(row["node"])
        # number(): rows an older daemon stored unchecked may hold any type.
        started = units.number(row.get("started"))
        return {
            "instance": instance_name(row),
            **{k: row.get(k) for k in ("system", "module", "node", "kind", "package", "state")},
            **{k: row.get(k) for k in ("pid", "started", "restarts", "version", "error")},
            "previous_version": row.get("previous_version"),
            "uptime": time.time() - started
            if started is not None and row["state"] == "running"
            else None,
            "node_online": bool(node and node.online),
            "updated": row.get("updated"),
        }

    # -- agent reports (mesh) ----------------------------------------------------------
    @property
    def reported_nodes(self) -> set[str]:
        """Nodes whose instance states are current (their agent re-reported)."""
        return self.reports.reported

    def on_state(self, node: LiveNode, msg: Message) -> None:
        check_instance_room(self.catalog, node.name, msg.body["state"])
        self.reports.on_state(node, msg.body)

    def on_report(self, node: LiveNode, msg: Message) -> None:
        check_report_size(self.catalog, node.name, msg.body["instances"])
        if "ops" in msg.body:
            self._fail_lost_ops(node, set(msg.body["ops"]))
        self.reports.on_report(node, msg.body)

    def _fail_lost_ops(self, node: LiveNode, known: set[Any]) -> None:
        """Operations sent on an earlier connection that the agent does not know
        (it restarted, or the message was lost with the link) will never be answered."""
        for op, (name, connection, future) in list(self.pending.items()):
            earlier = connection != node.connected_at
            if name == node.name and earlier and op not in known and not future.done():
                future.set_exception(
                    GdosError(
                        ErrorCode.OPERATION_FAILED,
                        f"the agent on {node.name} lost the operation (it restarted or the "
                        "link dropped); "
                        "'gdos status' shows where each instance ended up.",
                    )
                )

    def on_done(self, node: LiveNode, msg: Message) -> None:
        """Settle the operation it answers, if this daemon run is waiting for it.

        The state in the answer went out as ``svc.state`` first and is stored
        from there; an answer to an operation we do not know changes nothing.
        Either way it is acknowledged, so the agent stops resending it.
        """
        op = msg.body["op"]
        entry = self.pending.get(op)
        if entry is not None and entry[0] == node.name and not entry[2].done():
            entry[2].set_result(msg.body)
        self.mesh.send(node, "svc.done.ack", {"op": op})

    def _record(self, row: dict[str, Any], fields: dict[str, Any]) -> None:
        """The daemon's own record (``deploying``): refused, and nothing sent, if not stored."""
        try:
            views = self.reports.record(row, fields)
        except sqlite3.Error as exc:
            raise GdosError(
                ErrorCode.STORAGE_FAILED,
                f"could not record {instance_name(row)} in {self.catalog.path} ({exc}); "
                "free space on that disk and try again. Nothing was sent.",
            ) from exc
        for view in views:
            self._publish(view)

    def _publish(self, view: dict[str, Any]) -> None:
        for emit in list(self.watchers):
            emit({"type": "state", **view})

    def _on_offline(self, node: LiveNode) -> None:
        for op, (name, _, future) in list(self.pending.items()):
            if name == node.name and not future.done():
                future.set_exception(
                    GdosError(
                        ErrorCode.NODE_OFFLINE,
                        f"node {name} went offline during the operation; its instances "
                        "report their real state when it is back (see 'gdos status').",
                    )
                )
                self.pending.pop(op, None)

    # -- operations -----------------------------------------------------------------
    def plan(self, body: dict[str, Any]) -> Operation:
        """Check an operation and list its steps; refuses before anything is sent."""
        action = body["action"]
        if action not in ACTIONS:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT, f"action must be one of {', '.join(ACTIONS)}."
            )
        target = Target.parse(body["target"])
        if action == "deploy":
            steps = self._deploy_plan(target, body)
        else:
            steps = self._action_plan(target, action)
        return Operation(action, body["target"], steps)

    async def execute(self, op: Operation, emit: Emit) -> dict[str, Any]:
        """Run a planned operation to the end; ``emit`` gets progress events."""
        self.watchers.append(emit)
        try:
            results = await self._run_levels(op.levels, emit)
        finally:
            self.watchers.remove(emit)
        ok = all(r["ok"] for r in results)
        log.info("%s %s: %s", op.action, op.target, "ok" if ok else "failed")
        return {"action": op.action, "target": op.target, "ok": ok, "results": results}

    def _deploy_plan(self, target: Target, body: dict[str, Any]) -> list[list[Step]]:
        if target.node:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT, "deploy takes SYSTEM[/MODULE] and --node or --match."
            )
        modules = self._system(target.system)
        if target.module:
            modules = [m for m in modules if m["name"] == target.module]
            if not modules:
                raise GdosError(
                    ErrorCode.MODULE_UNKNOWN,
                    f"no module {target.module} in system {target.system}; "
                    f"see 'gdos system show {target.system}'.",
                )
        if not modules:
            raise GdosError(
                ErrorCode.MODULE_UNKNOWN,
                f"system {target.system} has no modules; add one with 'gdos system add'.",
            )
        nodes = self._select_nodes(body.get("nodes") or [], body.get("match"))
        facts = {n: (self.registry.store.node(n) or {}).get("facts") or {} for n in nodes}
        steps = []
        for module in modules:
            package = self.catalog.package(module["package"], module.get("version"))
            manifest = apply_overrides(package["manifest"], module["overrides"])
            for node in nodes:
                check_platform(package, node, facts[node])
                steps.append(Step(target.system, module["name"], node, "deploy", package, manifest))
        return [steps]

    def _select_nodes(self, names: list[str], pattern: str | None) -> list[str]:
        chosen = [check_name(n) for n in names]
        for name in chosen:
            self.registry.get(name)  # NODE_UNKNOWN with the usual sentence
        if pattern:
            chosen += [n for n in sorted(self.registry.nodes) if fnmatch.fnmatchcase(n, pattern)]
        chosen = list(dict.fromkeys(chosen))
        if not chosen:
            raise GdosError(
                ErrorCode.NO_TARGET,
                "no node selected; give --node NAME (repeatable) or --match GLOB "
                "(see 'gdos node list').",
            )
        return chosen

    def _action_plan(self, target: Target, action: str) -> list[list[Step]]:
        rows = self.catalog.instances(target.system, target.module, target.node)
        if not rows:
            if target.system != ADOPTED:
                self._system(target.system)
            raise GdosError(
                ErrorCode.INSTANCE_UNKNOWN,
                f"no deployed instance matches {_target_text(target)}; "
                "see 'gdos status' or deploy with 'gdos deploy'.",
            )
        by_module: dict[str, list[Step]] = {}
        for row in rows:
            step = Step(row["system"], row["module"], row["node"], action)
            by_module.setdefault(row["module"], []).append(step)
        if target.module or target.system == ADOPTED or action == "rollback":
            return [[s for steps in by_module.values() for s in steps]]
        ordered = levels(self.catalog.modules(target.system))
        if action in ("stop", "destroy"):
            ordered.reverse()
        plan = [[s for m in level for s in by_module.get(m, [])] for level in ordered]
        return [level for level in plan if level]

    async def _run_levels(self, plan: list[list[Step]], emit: Emit) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        failed = False
        for number, level in enumerate(plan, 1):
            if failed:
                results += [s.skipped("an earlier level failed") for s in level]
                continue
            if len(plan) > 1:
                modules = sorted({s.module for s in level})
                emit({"type": "level", "level": number, "of": len(plan), "modules": modules})
            outcome = await asyncio.gather(*(self._step(s) for s in level))
            results += outcome
            failed = not all(r["ok"] for r in outcome)
        return results

    async def _step(self, step: Step) -> dict[str, Any]:
        try:
            state = await self._perform(step)
        except GdosError as exc:
            if step.action == "destroy" and exc.code == ErrorCode.INSTANCE_UNKNOWN:
                return step.result(True, state=self._forget(step))
            return step.result(False, code=str(exc.code), message=exc.message)
        reached = state.get("state") if state else None
        if state and reached not in GOALS[step.action]:
            why = state.get("error") or f"it is {reached}"
            code = ErrorCode.STOP_FAILED if step.action == "stop" else ErrorCode.START_FAILED
            return step.result(False, state=state, code=str(code), message=why)
        return step.result(True, state=state)

    async def _perform(self, step: Step) -> dict[str, Any] | None:
        node = self.registry.get(step.node)
        self._check_node(node, step.action)
        if step.action == "deploy":
            assert step.package is not None and step.manifest is not None
            row = self.catalog.instance(step.system, step.module, step.node) or {
                "system": step.system,
                "module": step.module,
                "node": step.node,
            }
            self._record(
                row,
                {
                    "state": "deploying",
                    "package": step.package["name"],
                    "version": step.package["version"],
                    "sha256": step.package["sha256"],
                    "error": None,
                    "kind": "managed",
                },
            )
            spec = step.spec()
            return await self.dispatch(node, "svc.deploy", {"spec": spec}, DEPLOY_TIMEOUT)
        body = {"instance": step.key, "action": step.action}
        return await self.dispatch(node, "svc.action", body, _action_timeout(step.action))

    def _forget(self, step: Step) -> dict[str, Any]:
        """Destroying what the node does not have (an older agent says so) is done."""
        for view in self.reports.forget(step.system, step.module, step.node):
            self._publish(view)
        return {"instance": step.key, "state": "destroyed"}

    def _check_node(self, node: LiveNode, action: str) -> None:
        if node.state == "disabled" and action != "destroy":
            raise GdosError(
                ErrorCode.NODE_DISABLED,
                f"node {node.name} is disabled; enable it with 'gdos node enable {node.name}'.",
            )
        if node.state == "maintenance" and action in ("deploy", "start", "restart", "rollback"):
            raise GdosError(
                ErrorCode.NODE_MAINTENANCE,
                f"node {node.name} is in maintenance and takes no new deploys or starts; "
                f"end it with 'gdos node enable {node.name}'.",
            )
        if not node.online:
            raise GdosError(
                ErrorCode.NODE_OFFLINE,
                f"node {node.name} is offline; the operation was not sent.",
            )

    async def dispatch(
        self, node: LiveNode, kind: str, body: dict[str, Any], timeout: float
    ) -> dict[str, Any] | None:
        """Send one operation to a node and wait for its ``svc.done``."""
        op = self.op_ids.take()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[op] = (node.name, node.connected_at, future)
        try:
            if not self.mesh.send(node, kind, {**body, "op": op}):
                raise GdosError(
                    ErrorCode.NODE_OFFLINE, f"node {node.name} is not connected; nothing was sent."
                )
            try:
                done = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise GdosError(
                    ErrorCode.OPERATION_FAILED,
                    f"node {node.name} did not finish within {timeout:g}s; "
                    "'gdos status' shows what it reports.",
                ) from None
        finally:
            self.pending.pop(op, None)
        if not done["ok"]:
            raise GdosError(
                done.get("code") or ErrorCode.OPERATION_FAILED,
                done.get("message") or "the agent refused",
            )
        state = done.get("state")
        return state if isinstance(state, dict) else None

    # -- adoption --------------------------------------------------------------------
    async def adopt(self, body: dict[str, Any]) -> dict[str, Any]:
        name = check_name(body["name"], "instance name")
        node = self.registry.get(check_name(body["node"]))
        self._check_node(node, "start")
        how = [k for k in ("pid", "pid_file", "process_name") if body.get(k) is not None]
        if len(how) != 1:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT,
                "give exactly one of --pid, --pid-file or --process-name.",
            )
        choose = body.get("choose")
        if choose is not None and (choose not in ("newest", "oldest") or how != ["process_name"]):
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT,
                "--newest and --oldest pick among the processes --process-name matches; "
                "use one of them, with --process-name.",
            )
        keys = ("pid", "pid_file", "process_name", "choose", "start_cmd", "stop_cmd")
        adopt = {k: body.get(k) for k in keys} | {"logs": body.get("logs") or {}}
        spec = {"instance": f"{ADOPTED}/{name}", "kind": "adopted", "adopt": adopt}
        request = {"spec": spec, "replace": bool(body.get("replace"))}
        state = await self.dispatch(node, "svc.adopt", request, 60.0)
        row = self.catalog.instance(ADOPTED, name, node.name)
        return {"instance": self.view(row) if row else state}


@dataclass
class Operation:
    action: str
    target: str
    levels: list[list[Step]]

    def instances(self) -> list[str]:
        return [f"{s.key}@{s.node}" for level in self.levels for s in level]


@dataclass
class Step:
    """One instance's part of an operation."""

    system: str
    module: str
    node: str
    action: str
    package: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.system}/{self.module}"

    def spec(self) -> dict[str, Any]:
        assert self.package is not None
        package = {k: self.package[k] for k in ("name", "version", "sha256", "size")}
        return {
            "instance": self.key,
            "kind": "managed",
            "manifest": self.manifest,
            "package": package,
        }

    def result(self, ok: bool, **fields: Any) -> dict[str, Any]:
        return {"instance": f"{self.key}@{self.node}", "node": self.node, "ok": ok, **fields}

    def skipped(self, why: str) -> dict[str, Any]:
        return self.result(False, code=str(ErrorCode.OPERATION_FAILED), message=f"skipped: {why}")


def levels(modules: Iterable[dict[str, Any]]) -> list[list[str]]:
    """Module names grouped by dependency level; refuses a cycle."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for module in modules:
        sorter.add(module["name"], *module.get("after", []))
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise GdosError(
            ErrorCode.DEPENDENCY_CYCLE,
            f"dependency cycle {cycle}; change one module's --after so the chain ends.",
        ) from None
    out = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        out.append(ready)
        sorter.done(*ready)
    return out


def _action_timeout(action: str) -> float:
    # The agent bounds every step itself (probe retries, stop_timeout then SIGKILL);
    # this only catches an agent that never answers.
    return 3600.0 if action in ("start", "restart", "rollback") else 900.0


def _target_text(t: Target) -> str:
    return t.system + (f"/{t.module}" if t.module else "") + (f"@{t.node}" if t.node else "")
