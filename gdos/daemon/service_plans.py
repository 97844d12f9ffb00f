"""Planning a service operation: which instance does what, level by level.

An operation (deploy, start, stop...) on a target becomes levels of
:class:`Step` s before anything is sent, so a bad target, an unknown module,
a package that does not fit a node or a dependency cycle is refused whole.
A whole-system start goes level by level in dependency order, stop in reverse.
"""

from __future__ import annotations

import fnmatch
import graphlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gdos.daemon.catalog import Catalog
from gdos.daemon.placement import check_platform
from gdos.daemon.registry import NodeRegistry
from gdos.errors import ErrorCode, GdosError
from gdos.model import Action, InstanceState
from gdos.names import check_name
from gdos.pkg.manifest import apply_overrides

ACTIONS = ("deploy", "start", "stop", "restart", "destroy", "rollback")
# What an instance's state must be once an action settled, to count as done.
GOALS: dict[str, tuple[str, ...]] = {
    Action.DEPLOY: (InstanceState.STOPPED, InstanceState.RUNNING),
    Action.START: (InstanceState.RUNNING,),
    Action.RESTART: (InstanceState.RUNNING,),
    Action.ROLLBACK: (InstanceState.STOPPED, InstanceState.RUNNING),
    Action.STOP: (InstanceState.STOPPED,),
    Action.DESTROY: (InstanceState.DESTROYED,),
}
ADOPTED = "adopted"  # the pseudo-system of processes adopted with 'gdos adopt'


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

    def text(self) -> str:
        return (
            self.system
            + (f"/{self.module}" if self.module else "")
            + (f"@{self.node}" if self.node else "")
        )


def instance_name(row: dict[str, Any]) -> str:
    return f"{row['system']}/{row['module']}@{row['node']}"


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


@dataclass
class Operation:
    action: str
    target: str
    levels: list[list[Step]]

    def instances(self) -> list[str]:
        return [f"{s.key}@{s.node}" for level in self.levels for s in level]


class Planner:
    """Turns an operation request into levels of steps, refusing before anything is sent."""

    def __init__(self, catalog: Catalog, registry: NodeRegistry) -> None:
        self.catalog, self.registry = catalog, registry

    def system(self, name: str) -> list[dict[str, Any]]:
        """The system's modules; SYSTEM_UNKNOWN when there is no such system."""
        if not self.catalog.has_system(name):
            raise GdosError(
                ErrorCode.SYSTEM_UNKNOWN,
                f"no system {name}; create it with 'gdos system create {name}'.",
            )
        return self.catalog.modules(name)

    def plan(self, body: dict[str, Any]) -> Operation:
        """Check an operation and list its steps; refuses before anything is sent."""
        action = body["action"]
        if action not in ACTIONS:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT, f"action must be one of {', '.join(ACTIONS)}."
            )
        target = Target.parse(body["target"])
        if action == Action.DEPLOY:
            steps = self._deploy_plan(target, body)
        else:
            steps = self._action_plan(target, action)
        return Operation(action, body["target"], steps)

    def _deploy_plan(self, target: Target, body: dict[str, Any]) -> list[list[Step]]:
        if target.node:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT, "deploy takes SYSTEM[/MODULE] and --node or --match."
            )
        modules = self._modules(target)
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

    def _modules(self, target: Target) -> list[dict[str, Any]]:
        """The modules a deploy target names: all of the system's, or the one given."""
        modules = self.system(target.system)
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
        return modules

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
                self.system(target.system)
            raise GdosError(
                ErrorCode.INSTANCE_UNKNOWN,
                f"no deployed instance matches {target.text()}; "
                "see 'gdos status' or deploy with 'gdos deploy'.",
            )
        by_module: dict[str, list[Step]] = {}
        for row in rows:
            step = Step(row["system"], row["module"], row["node"], action)
            by_module.setdefault(row["module"], []).append(step)
        if target.module or target.system == ADOPTED or action == Action.ROLLBACK:
            return [[s for steps in by_module.values() for s in steps]]
        ordered = levels(self.catalog.modules(target.system))
        if action in (Action.STOP, Action.DESTROY):
            ordered.reverse()
        plan = [[s for m in level for s in by_module.get(m, [])] for level in ordered]
        return [level for level in plan if level]


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
