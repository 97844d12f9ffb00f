"""Alert rules: what a rule is, how one is checked, and how one target is debounced.

A rule compares one metric of the catalogue (gdos/metric_catalog.py) of
every node, or every instance, it matches with a threshold. Three built-in
rules exist in every daemon and cannot be removed: ``node-offline`` and
``instance-failed`` watch the pseudo-metrics ``online`` and ``failed``, and
``disk-full`` watches node disk above 90 % for 60 s. Everything here is pure:
the engine that evaluates rules against live values is gdos/daemon/alerts.py,
their rows are gdos/daemon/alert_store.py.
"""

from __future__ import annotations

import fnmatch
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from gdos.errors import ErrorCode, GdosError
from gdos.metric_catalog import find_metric, scope_metrics
from gdos.names import check_name

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
ONLINE, FAILED = "online", "failed"  # pseudo-metrics of the built-in rules
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
    known = [m.name for m in scope_metrics("*" if instance_glob else None)]
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

    def stats(self) -> tuple[float, float, float, int, float]:
        """(min, avg, max, samples, last): what an event row records."""
        return self.min, self.avg, self.max, self.samples, self.last


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
