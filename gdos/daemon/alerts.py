"""The alert engine: rules evaluated against live values, events opened and closed.

About once a second every rule (gdos/daemon/alert_rules.py) is compared with
the current value of each target it matches. The condition must hold
continuously for ``for_seconds`` before an event opens (its ``started`` is
when it began to hold); it closes (``ended``) on the first evaluation where it
no longer holds, or when its target is gone (node removed or offline for a
node metric, instance stopped). While it holds the event keeps min/avg/max
and the sample count, written in batches (gdos/daemon/alert_store.py). A
value that is unknown for now (a node never seen since the daemon started)
changes nothing. Firing and resolving run the rule's hooks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gdos.daemon.alert_rules import BUILTIN_RULES, FAILED, ONLINE, Rule, Watch, check_rule, step
from gdos.daemon.alert_store import AlertStore
from gdos.daemon.hooks import HookRunner
from gdos.daemon.store import Store
from gdos.errors import ErrorCode, GdosError
from gdos.metric_catalog import instance_values, node_values
from gdos.model import FAILED_STATES

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping

    from gdos.daemon.registry import LiveNode

log = logging.getLogger("gdosd.alerts")

EVALUATE_EVERY = 1.0
FLUSH_EVERY = 5.0


# -- current values --------------------------------------------------------------------------
@dataclass
class Snapshot:
    """Current values, one evaluation's worth (targets missing from a map are gone)."""

    nodes: dict[str, dict[str, float]]  # online node -> metric -> value
    instances: dict[tuple[str, str], dict[str, float]]  # (node, system/module) -> values
    online: dict[str, float | None]  # every known node -> 1, 0, or None (unknown yet)
    failed: dict[tuple[str, str], float | None]  # instance -> 1 (failed/error), 0, None (unknown)

    def values(self, rule: Rule) -> dict[str, float | None]:
        if rule.metric == ONLINE:
            return {n: v for n, v in self.online.items() if rule.matches(n)}
        if rule.metric == FAILED:
            return {f"{i}@{n}": v for (n, i), v in self.failed.items() if rule.matches(n, i)}
        if rule.per_instance:
            return {
                f"{i}@{n}": vals[rule.metric]
                for (n, i), vals in self.instances.items()
                if rule.metric in vals and rule.matches(n, i)
            }
        return {
            n: vals[rule.metric]
            for n, vals in self.nodes.items()
            if rule.metric in vals and rule.matches(n)
        }


def snapshot(
    nodes_by_name: Mapping[str, LiveNode],
    reported: Collection[str],
    instance_rows: Iterable[Mapping[str, Any]],
    settled: bool,
) -> Snapshot:
    """Current values: each online node's latest sample, read through the metric
    catalogue, its online flag and its instances' states.

    ``reported``: nodes whose agent has re-reported since it (re)connected;
    until then their stored states may be stale, so they read as unknown and
    nothing fires or resolves. ``settled``: the daemon has run long enough
    that a node never seen since its start counts as offline, not unknown.
    """
    nodes: dict[str, dict[str, float]] = {}
    instances: dict[tuple[str, str], dict[str, float]] = {}
    for name, live in nodes_by_name.items():
        if live.online:  # a silent node's last values are not current
            nodes[name] = node_values(live.metrics)
            for instance, values in instance_values(live.metrics).items():
                instances[(name, instance)] = values
    online = {
        n: 1.0 if live.online else (0.0 if live.connected_at or settled else None)
        for n, live in nodes_by_name.items()
    }
    failed = {
        (r["node"], f"{r['system']}/{r['module']}"): (
            float(r["state"] in FAILED_STATES) if r["node"] in reported else None
        )
        for r in instance_rows
    }
    return Snapshot(nodes, instances, online, failed)


# -- the daemon's alert engine ------------------------------------------------------------------
class Alerts:
    def __init__(
        self,
        store: Store,
        source: Callable[[float], Snapshot],
        hooks: HookRunner,
        default_command: str | None = None,
        default_webhook: str | None = None,
    ) -> None:
        self.db = AlertStore(store.db)
        self.source, self.hooks = source, hooks
        self.default_command, self.default_webhook = default_command, default_webhook
        self.rules: dict[str, Rule] = {}
        self.watches: dict[tuple[str, str], Watch] = {}
        self._ensure_builtins()
        self._load()

    def _ensure_builtins(self) -> None:
        now = time.time()
        for rule in BUILTIN_RULES:
            self.db.ensure_rule({**rule.view(), "created": now})

    def _load(self) -> None:
        """Rules, and the events still open when the daemon stopped (they go on)."""
        self.rules = {r["name"]: Rule(**r) for r in self.db.rules()}
        for row in self.db.open_events():
            if row["rule"] in self.rules:
                self.watches[(row["rule"], row["target"])] = _resumed(row)

    # -- rules ------------------------------------------------------------------------------
    def add_rule(self, body: dict[str, Any]) -> Rule:
        rule = check_rule(body)
        if rule.name in self.rules:
            raise GdosError(
                ErrorCode.ALREADY_EXISTS,
                f"alert rule {rule.name} exists; remove it with 'gdos alert rule rm "
                f"{rule.name}' first or pick another name.",
            )
        self.db.add_rule(rule.view())
        self.rules[rule.name] = rule
        return rule

    def remove_rule(self, name: str) -> Rule:
        rule = self.rules.get(name)
        if rule is None:
            raise GdosError(
                ErrorCode.RULE_UNKNOWN,
                f"no alert rule {name!r}; see 'gdos alert rule list'.",
            )
        if rule.builtin:
            raise GdosError(
                ErrorCode.NOT_PERMITTED, f"{name} is a built-in rule and cannot be removed."
            )
        now = time.time()
        for key in [k for k in self.watches if k[0] == name]:
            watch = self.watches.pop(key)
            if watch.event_id is not None:
                self._close(watch, now, f"{rule.describe(key[1], watch.last)}; rule removed")
        self.db.remove_rule(name)
        del self.rules[name]
        return rule

    def rules_view(self) -> list[dict[str, Any]]:
        firing: dict[str, int] = {}
        for (name, _), watch in self.watches.items():
            if watch.event_id is not None:
                firing[name] = firing.get(name, 0) + 1
        return [
            {**r.view(), "firing": firing.get(r.name, 0)}
            for r in sorted(self.rules.values(), key=lambda r: (not r.builtin, r.name))
        ]

    def events(self, active: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        self.flush(force=True)
        rows = self.db.events(active, limit)
        now = time.time()
        for row in rows:
            row["active"] = row["ended"] is None
            row["duration"] = (row["ended"] or now) - row["started"]
            rule = self.rules.get(row["rule"])
            watch = self.watches.get((row["rule"], row["target"]))
            row["metric"] = rule.metric if rule else None
            row["instance_rule"] = bool(rule and rule.instance_glob)
            if rule and watch is not None and row["active"]:
                row["last_value"] = watch.last  # the message says "now": make it now
                row["message"] = rule.describe(row["target"], watch.last)
        return rows

    # -- evaluation ---------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            await asyncio.sleep(EVALUATE_EVERY)
            try:
                self.evaluate()
            except Exception:
                log.exception("alert evaluation failed")

    def evaluate(self, now: float | None = None) -> None:
        now = now or time.time()
        snap = self.source(now)
        for rule in list(self.rules.values()):
            values = snap.values(rule)
            for target, value in values.items():
                if value is not None:
                    self._advance(rule, target, value, now)
            for key in [k for k in self.watches if k[0] == rule.name and k[1] not in values]:
                watch = self.watches.pop(key)  # the target is gone: nothing holds any more
                if watch.event_id is not None:
                    self._resolve(rule, key[1], watch, now, "no current value")
        self.flush()

    def _advance(self, rule: Rule, target: str, value: float, now: float) -> None:
        key = (rule.name, target)
        old = self.watches.get(key)
        watch, change = step(old, rule, value, now)
        if watch is None:
            self.watches.pop(key, None)
        else:
            self.watches[key] = watch
        if change == "fire" and watch is not None:
            self._fire(rule, target, watch, now)
        elif change == "resolve" and old is not None:
            self._resolve(rule, target, old, now, None)

    def _fire(self, rule: Rule, target: str, watch: Watch, now: float) -> None:
        message = rule.describe(target, watch.last)
        row = {
            "rule": rule.name,
            "target": target,
            "severity": rule.severity,
            "started": watch.since,
            "ended": None,
            "min": watch.min,
            "avg": watch.avg,
            "max": watch.max,
            "samples": watch.samples,
            "last_value": watch.last,
            "message": message,
        }
        watch.event_id = self.db.open_event(row)
        watch.flushed = now
        log.warning("alert %s firing: %s", rule.name, message)
        self._hook(rule, {**row, "state": "firing", "value": watch.last, "fired": now})

    def _resolve(self, rule: Rule, target: str, watch: Watch, now: float, why: str | None) -> None:
        message = rule.describe(target, watch.last) + f"; resolved{f' ({why})' if why else ''}"
        self._close(watch, now, message)
        log.info("alert %s resolved: %s", rule.name, message)
        payload = {
            "rule": rule.name,
            "target": target,
            "severity": rule.severity,
            "state": "resolved",
            "started": watch.since,
            "ended": now,
            "value": watch.last,
            "min": watch.min,
            "avg": watch.avg,
            "max": watch.max,
            "samples": watch.samples,
            "message": message,
        }
        self._hook(rule, payload)

    def _close(self, watch: Watch, now: float, message: str) -> None:
        assert watch.event_id is not None
        self.db.close_event(watch.event_id, now, watch.stats(), message)

    def flush(self, force: bool = False) -> None:
        """Write the running statistics of open events, at most every few seconds."""
        now = time.time()
        due = [
            w
            for w in self.watches.values()
            if w.event_id is not None and (force or now - w.flushed >= FLUSH_EVERY)
        ]
        if not due:
            return
        self.db.update_stats((*w.stats(), w.event_id) for w in due)
        for w in due:
            w.flushed = now

    def _hook(self, rule: Rule, payload: dict[str, Any]) -> None:
        self.hooks.submit(rule.command, rule.webhook, payload)
        self.hooks.submit(self.default_command, self.default_webhook, payload)


def _resumed(row: dict[str, Any]) -> Watch:
    """The watch of an event left open by the previous daemon run."""
    samples = row["samples"] or 1
    last = row["last_value"] if row["last_value"] is not None else 0.0
    return Watch(
        since=row["started"],
        min=row["min"] if row["min"] is not None else last,
        max=row["max"] if row["max"] is not None else last,
        total=(row["avg"] if row["avg"] is not None else last) * samples,
        samples=samples,
        last=last,
        event_id=row["id"],
        flushed=time.time(),
    )
