"""Systems, modules and instances: definitions, and operations across nodes.

A system is a named set of modules; a module is a package (name, optional
pinned version) with overrides and ``after`` dependencies; an instance is a
module deployed on one node. Definitions are checked when they are written:
unknown packages or modules, invalid overrides and dependency cycles are
refused then, never discovered half-way through a start.

Every operation is planned whole first (gdos/daemon/service_plans.py),
records the instance's state before anything is sent (the seed's
asynchronous flow: ``deploying`` first), then sends one ``svc.*`` message
per instance and waits for the agent's ``svc.done``
(gdos/daemon/service_dispatch.py). States come from the agent's
``svc.state`` and ``svc.report`` (gdos/daemon/instance_reports.py).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from gdos import units
from gdos.daemon import module_defs
from gdos.daemon.catalog import Catalog
from gdos.daemon.guard import check_instance_room, check_report_size
from gdos.daemon.instance_reports import InstanceReports
from gdos.daemon.mesh import Mesh
from gdos.daemon.opids import OpIds
from gdos.daemon.registry import LiveNode, NodeRegistry
from gdos.daemon.service_dispatch import Dispatcher, check_node
from gdos.daemon.service_plans import (
    ADOPTED,
    GOALS,
    Operation,
    Planner,
    Step,
    Target,
    instance_name,
    levels,
)
from gdos.errors import ErrorCode, GdosError
from gdos.model import Action, InstanceState
from gdos.names import check_name
from gdos.pkg.manifest import apply_overrides
from gdos.wire.protocol import Message

__all__ = ["ADOPTED", "Operation", "Services", "Step", "Target", "instance_name", "levels"]

log = logging.getLogger("gdosd.services")

DEPLOY_TIMEOUT = 900.0
ADOPT_TIMEOUT = 60.0
Emit = Callable[[dict[str, Any]], None]


class Services:
    """System and module definitions, instance views, and running operations."""

    def __init__(self, catalog: Catalog, registry: NodeRegistry, mesh: Mesh, op_ids: OpIds) -> None:
        self.catalog, self.registry, self.mesh = catalog, registry, mesh
        self.watchers: list[Emit] = []
        self.planner = Planner(catalog, registry)
        self.ops = Dispatcher(registry, mesh, op_ids)
        self.reports = InstanceReports(catalog, mesh, self._publish, self.view)

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
                    "running": sum(1 for i in instances if i["state"] == InstanceState.RUNNING),
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
        return self.planner.system(name)

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
            if started is not None and row["state"] == InstanceState.RUNNING
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
            self.ops.fail_lost(node, set(msg.body["ops"]))
        self.reports.on_report(node, msg.body)

    def on_done(self, node: LiveNode, msg: Message) -> None:
        self.ops.on_done(node, msg.body)

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

    # -- operations -----------------------------------------------------------------
    def plan(self, body: dict[str, Any]) -> Operation:
        """Check an operation and list its steps; refuses before anything is sent."""
        return self.planner.plan(body)

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
            if step.action == Action.DESTROY and exc.code == ErrorCode.INSTANCE_UNKNOWN:
                return step.result(True, state=self._forget(step))
            return step.result(False, code=str(exc.code), message=exc.message)
        reached = state.get("state") if state else None
        if state and reached not in GOALS[step.action]:
            why = state.get("error") or f"it is {reached}"
            code = ErrorCode.STOP_FAILED if step.action == Action.STOP else ErrorCode.START_FAILED
            return step.result(False, state=state, code=str(code), message=why)
        return step.result(True, state=state)

    async def _perform(self, step: Step) -> dict[str, Any] | None:
        node = self.registry.get(step.node)
        check_node(node, step.action)
        if step.action == Action.DEPLOY:
            assert step.package is not None and step.manifest is not None
            row = self.catalog.instance(step.system, step.module, step.node) or {
                "system": step.system,
                "module": step.module,
                "node": step.node,
            }
            self._record(
                row,
                {
                    "state": InstanceState.DEPLOYING,
                    "package": step.package["name"],
                    "version": step.package["version"],
                    "sha256": step.package["sha256"],
                    "error": None,
                    "kind": "managed",
                },
            )
            spec = step.spec()
            return await self.ops.dispatch(node, "svc.deploy", {"spec": spec}, DEPLOY_TIMEOUT)
        body = {"instance": step.key, "action": step.action}
        return await self.ops.dispatch(node, "svc.action", body, _action_timeout(step.action))

    def _forget(self, step: Step) -> dict[str, Any]:
        """Destroying what the node does not have (an older agent says so) is done."""
        for view in self.reports.forget(step.system, step.module, step.node):
            self._publish(view)
        return {"instance": step.key, "state": InstanceState.DESTROYED}

    # -- adoption --------------------------------------------------------------------
    async def adopt(self, body: dict[str, Any]) -> dict[str, Any]:
        name = check_name(body["name"], "instance name")
        node = self.registry.get(check_name(body["node"]))
        check_node(node, Action.ADOPT)
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
        state = await self.ops.dispatch(node, "svc.adopt", request, ADOPT_TIMEOUT)
        row = self.catalog.instance(ADOPTED, name, node.name)
        return {"instance": self.view(row) if row else state}


def _action_timeout(action: str) -> float:
    # The agent bounds every step itself (probe retries, stop_timeout then SIGKILL);
    # this only catches an agent that never answers.
    return 3600.0 if action in ("start", "restart", "rollback") else 900.0
