"""Threshold alerts: rules, debounced evaluation, history, hooks.

A rule compares one metric of every node (or of every instance) it matches
with a threshold, about once a second, against the current values. The
condition must hold continuously for ``for_seconds`` before an event opens
(its ``started`` is when it began to hold); it closes (``ended``) on the
first evaluation where it no longer holds, or when its target is gone (node
removed or offline for a node metric, instance stopped). While it holds the
event keeps min/avg/max and the sample count. A value that is unknown for
now (a node never seen since the daemon started) changes nothing.

Three built-in rules are created at start and cannot be removed:
``node-offline`` (registry online flag), ``instance-failed`` (catalog state
failed or error, unknown until the node's agent re-reported after a daemon
start or a reconnect) and ``disk-full`` (node disk above 90 % for 60 s).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from gdos.daemon.hooks import HookRunner
from gdos.daemon.store import Store
from gdos.errors import ErrorCode, GdosError
from gdos.names import check_name

log = logging.getLogger("gdosd.alerts")

EVALUATE_EVERY = 1.0
FLUSH_EVERY = 5.0
MAX_FOR = 7 * 86400.0
SEVERITIES = ("warning", "critical")
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
# metric name -> field of the agent's metrics sample (see the shared metric names)
NODE_METRICS = {
    "cpu": "cpu_percent",
    "mem": "mem_percent",
    "disk": "disks",
    "load1": "load1",
    "net_rx": "net_rx_bps",
    "net_tx": "net_tx_bps",
    "disk_read": "disk_read_bps",
    "disk_write": "disk_write_bps",
}
INSTANCE_METRICS = {
    "cpu": "cpu_percent",
    "rss": "rss_bytes",
    "read": "read_bps",
    "write": "write_bps",
    "threads": "threads",
    "open_files": "open_files",
}
ONLINE, FAILED = "online", "failed"  # pseudo-metrics of the built-in rules
FAILED_STATES = ("failed", "error")
GLOB = re.compile(r"^[A-Za-z0-9._\-*?\[\]!/]{1,200}\Z")


@dataclass(frozen=True)
class Rule:
    name: str
    metric: str
    op: str
    value: float
    for_seconds: float = 0.0
    node_glob: str | None = None
    instance_glob: str | None = None
    severity: str = "warning"
    builtin: int = 0
    command: str | None = None
    webhook: str | None = None
    created: float = 0.0

    @property
    def per_instance(self) -> bool:
        return self.instance_glob is not None

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.value)

    def matches(self, node: str, instance: str | None = None) -> bool:
        if self.node_glob and not fnmatch.fnmatchcase(node, self.node_glob):
            return False
        return not self.instance_glob or fnmatch.fnmatchcase(instance or "", self.instance_glob)

    def describe(self, target: str, value: float) -> str:
        if self.metric == ONLINE:
            return f"node {target} is offline"
        if self.metric == FAILED:
            return f"instance {target} has failed"
        show = self.format
        return f"{self.metric} {self.op} {show(self.value)} on {target} (now {show(value)})"

    def format(self, value: float | None) -> str:
        """A value of this rule's metric with its unit (the metric catalogue's format)."""
        from gdos.daemon.metrics import find_metric

        try:
            metric = find_metric(self.metric, "*" if self.instance_glob else None)
        except GdosError:  # the built-in pseudo-metrics: plain numbers
            return "-" if value is None else f"{value:g}"
        return metric.format(value)

    def view(self) -> dict[str, Any]:
        return asdict(self)


BUILTIN_RULES = (
    Rule("node-offline", ONLINE, "==", 0, severity="critical", builtin=1),
    Rule("instance-failed", FAILED, "==", 1, instance_glob="*", severity="critical", builtin=1),
    Rule("disk-full", "disk", ">", 90, for_seconds=60, severity="warning", builtin=1),
)


def check_rule(body: dict[str, Any], now: float | None = None) -> Rule:
    """A user rule from a control request; refuses anything malformed."""
    name = check_name(str(body.get("name", "")), "rule name")
    metric, op = body.get("metric"), body.get("op")
    instance_glob = body.get("instance") or None
    known = INSTANCE_METRICS if instance_glob else NODE_METRICS
    if metric not in known:
        scope = "instance" if instance_glob else "node"
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"unknown {scope} metric {metric!r}; use one of {', '.join(known)}.",
        )
    if op not in OPS:
        raise GdosError(ErrorCode.INVALID_ARGUMENT, f"--op must be one of {' '.join(OPS)}.")
    value = _number(body.get("value"), "--value")
    for_seconds = _number(body.get("for_seconds", 0), "--for")
    if not 0 <= for_seconds <= MAX_FOR:
        raise GdosError(ErrorCode.INVALID_ARGUMENT, "--for must be between 0s and 7d.")
    node_glob = body.get("node") or None
    for what, glob in (("--node", node_glob), ("--instance", instance_glob)):
        if glob is not None and not GLOB.match(str(glob)):
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT,
                f"{what} {glob!r} is not a glob of letters, digits, '.', '_', '-', '/' "
                "and * ? [ ] !.",
            )
    severity = body.get("severity") or "warning"
    if severity not in SEVERITIES:
        raise GdosError(ErrorCode.INVALID_ARGUMENT, "--severity must be warning or critical.")
    return Rule(
        name,
        str(metric),
        str(op),
        value,
        for_seconds,
        node_glob,
        instance_glob,
        str(severity),
        0,
        check_command(body.get("command")),
        check_webhook(body.get("webhook")),
        now or time.time(),
    )


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise GdosError(ErrorCode.INVALID_ARGUMENT, f"{what} must be a finite number.")
    return float(value)


def check_command(command: Any) -> str | None:
    """A hook command line: split like a shell would, run without one."""
    if command is None or command == "":
        return None
    import shlex

    try:
        argv = shlex.split(str(command))
    except ValueError as exc:
        raise GdosError(ErrorCode.INVALID_ARGUMENT, f"--command cannot be parsed: {exc}.") from None
    if not argv or len(str(command)) > 4096:
        raise GdosError(ErrorCode.INVALID_ARGUMENT, "--command must be 1 to 4096 characters.")
    return str(command)


def check_webhook(url: Any) -> str | None:
    if url is None or url == "":
        return None
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.hostname or len(str(url)) > 2000:
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"--webhook {url!r} is not an http:// or https:// URL with a host.",
        )
    return str(url)


# -- debounced evaluation (pure) ---------------------------------------------------------
@dataclass
class Watch:
    """One (rule, target) whose condition holds: pending, or firing once ``event_id`` is set."""

    since: float
    min: float
    max: float
    total: float
    samples: int
    last: float
    event_id: int | None = None
    flushed: float = 0.0

    @classmethod
    def begin(cls, now: float, value: float) -> Watch:
        return cls(now, value, value, value, 1, value)

    def add(self, value: float) -> None:
        self.min, self.max = min(self.min, value), max(self.max, value)
        self.total += value
        self.samples += 1
        self.last = value

    @property
    def avg(self) -> float:
        return self.total / self.samples if self.samples else self.last


def step(
    watch: Watch | None, rule: Rule, value: float, now: float
) -> tuple[Watch | None, str | None]:
    """Advance one target by one sample: (new watch, "fire" | "resolve" | None)."""
    if not rule.holds(value):
        firing = watch is not None and watch.event_id is not None
        return None, "resolve" if firing else None
    if watch is None:
        watch = Watch.begin(now, value)
    else:
        watch.add(value)
    if watch.event_id is None and now - watch.since >= rule.for_seconds:
        return watch, "fire"
    return watch, None


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
            source: Any = self.failed
            return {f"{i}@{n}": v for (n, i), v in source.items() if rule.matches(n, i)}
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


def node_values(sample: dict[str, Any]) -> dict[str, float]:
    """The shared node metric names from an agent's raw metrics sample."""
    out: dict[str, float] = {}
    for metric, field in NODE_METRICS.items():
        if metric == "disk":
            disks = [d.get("percent") for d in sample.get("disks") or [] if isinstance(d, dict)]
            numbers = [float(p) for p in disks if isinstance(p, int | float)]
            if numbers:
                out["disk"] = max(numbers)
        elif isinstance(sample.get(field), int | float):
            out[metric] = float(sample[field])
    return out


def instance_values(sample: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``sample["instances"]`` (system/module -> raw fields) with the shared names."""
    out = {}
    for name, raw in (sample.get("instances") or {}).items():
        if isinstance(name, str) and isinstance(raw, dict):
            out[name] = {
                m: float(raw[f]) for m, f in INSTANCE_METRICS.items() if _is_num(raw.get(f))
            }
    return out


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def snapshot(daemon: Any, offline_grace: float, now: float) -> Snapshot:
    """Current values from the daemon: its metrics helper when present, else the
    raw samples the registry keeps. Only online nodes have current metrics."""
    registry = daemon.registry
    online_nodes = {n for n, live in registry.nodes.items() if live.online}
    nodes: dict[str, dict[str, float]] = {}
    instances: dict[tuple[str, str], dict[str, float]] = {}
    latest = getattr(getattr(daemon, "metrics", None), "latest", None)
    if callable(latest):
        for row in latest():
            if row.get("node") not in online_nodes:
                continue
            if row.get("instance"):
                instances[(row["node"], row["instance"])] = dict(row.get("values") or {})
            else:
                nodes[row["node"]] = dict(row.get("values") or {})
    else:
        for name in online_nodes:
            sample = registry.nodes[name].metrics or {}
            nodes[name] = node_values(sample)
            for instance, values in instance_values(sample).items():
                instances[(name, instance)] = values
    settled = now - daemon.started > 2 * offline_grace
    online = {
        n: 1.0 if live.online else (0.0 if live.connected_at or settled else None)
        for n, live in registry.nodes.items()
    }
    # Until a node's agent has re-reported (after a daemon start or its reconnect),
    # its stored states may be stale: unknown for now, so nothing fires or resolves.
    reported = getattr(getattr(daemon, "services", None), "reported_nodes", None)
    failed = {
        (r["node"], f"{r['system']}/{r['module']}"): (
            float(r["state"] in FAILED_STATES)
            if reported is None or r["node"] in reported
            else None
        )
        for r in daemon.catalog.instances()
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
        self.db = store.db
        self.source, self.hooks = source, hooks
        self.default_command, self.default_webhook = default_command, default_webhook
        self.rules: dict[str, Rule] = {}
        self.watches: dict[tuple[str, str], Watch] = {}
        self._ensure_builtins()
        self._load()

    def _ensure_builtins(self) -> None:
        now = time.time()
        for rule in BUILTIN_RULES:
            self.db.execute(
                "INSERT OR IGNORE INTO alert_rules (name, metric, op, value, for_seconds,"
                " node_glob, instance_glob, severity, builtin, command, webhook, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, NULL, NULL, ?)",
                [
                    rule.name,
                    rule.metric,
                    rule.op,
                    rule.value,
                    rule.for_seconds,
                    rule.node_glob,
                    rule.instance_glob,
                    rule.severity,
                    now,
                ],
            )

    def _load(self) -> None:
        """Rules, and the events still open when the daemon stopped (they go on)."""
        self.rules = {r["name"]: Rule(**r) for r in self.db["alert_rules"].rows}
        for row in self.db["alert_events"].rows_where("ended IS NULL"):
            if row["rule"] not in self.rules:
                continue
            samples = row["samples"] or 1
            last = row["last_value"] if row["last_value"] is not None else 0.0
            self.watches[(row["rule"], row["target"])] = Watch(
                since=row["started"],
                min=row["min"] if row["min"] is not None else last,
                max=row["max"] if row["max"] is not None else last,
                total=(row["avg"] if row["avg"] is not None else last) * samples,
                samples=samples,
                last=last,
                event_id=row["id"],
                flushed=time.time(),
            )

    # -- rules ------------------------------------------------------------------------------
    def add_rule(self, body: dict[str, Any]) -> Rule:
        rule = check_rule(body)
        if rule.name in self.rules:
            raise GdosError(
                ErrorCode.ALREADY_EXISTS,
                f"alert rule {rule.name} exists; remove it with 'gdos alert rule rm "
                f"{rule.name}' first or pick another name.",
            )
        self.db.table("alert_rules").insert(rule.view())
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
        self.db.execute("DELETE FROM alert_rules WHERE name = ?", [name])
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
        where = "ended IS NULL" if active else None
        rows = list(self.db["alert_events"].rows_where(where, order_by="id DESC", limit=limit))
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
        table = self.db.table("alert_events").insert(row)
        watch.event_id = int(table.last_pk)  # type: ignore[arg-type]
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
        self.db.execute(
            "UPDATE alert_events SET ended = ?, min = ?, avg = ?, max = ?, samples = ?,"
            " last_value = ?, message = ? WHERE id = ?",
            [
                now,
                watch.min,
                watch.avg,
                watch.max,
                watch.samples,
                watch.last,
                message,
                watch.event_id,
            ],
        )

    def flush(self, force: bool = False) -> None:
        """Write the running statistics of open events, at most every few seconds."""
        now = time.time()
        rows = [
            (w.min, w.avg, w.max, w.samples, w.last, w.event_id)
            for w in self.watches.values()
            if w.event_id is not None and (force or now - w.flushed >= FLUSH_EVERY)
        ]
        if not rows:
            return
        with self.db.conn:
            self.db.conn.execute("BEGIN")
            self.db.conn.executemany(
                "UPDATE alert_events SET min = ?, avg = ?, max = ?, samples = ?, last_value = ?"
                " WHERE id = ?",
                rows,
            )
        for w in self.watches.values():
            if w.event_id is not None and (force or now - w.flushed >= FLUSH_EVERY):
                w.flushed = now

    def _hook(self, rule: Rule, payload: dict[str, Any]) -> None:
        self.hooks.submit(rule.command, rule.webhook, payload)
        self.hooks.submit(self.default_command, self.default_webhook, payload)
