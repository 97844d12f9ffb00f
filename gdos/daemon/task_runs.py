"""What one exec task is made of in memory, and which hosts it may run on.

A task has one :class:`HostRun` per target node and the clients following it
(:class:`Subscriber`). Admission decides, before anything is sent, whether a
host runs or is ``unreachable`` at once: unknown, refused by its node state
(the one policy of :func:`gdos.model.refusal`) or offline.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gdos.daemon.registry import LiveNode, NodeRegistry
from gdos.errors import ErrorCode, GdosError
from gdos.model import FINAL_HOST_STATUSES, Action, HostStatus, refusal
from gdos.names import natural_key
from gdos.wire.flow import CreditRelay

TASK_OUTPUT_BUDGET_CHUNKS = 256  # in-flight output chunks per task, split over its hosts
MAX_HOST_CREDIT = 16
MIN_HOST_CREDIT = 2
DEFAULT_TIMEOUT = 300.0
MAX_TIMEOUT = 7 * 86400.0

Event = dict[str, Any]
Ack = Callable[[], None] | None


@dataclass
class HostRun:
    node: str
    status: str
    deadline: float | None = None
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    went_offline: bool = False
    result_pending: bool = False  # a result from the node is waiting to be stored
    forwarded: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})

    @property
    def final(self) -> bool:
        return self.status in FINAL_HOST_STATUSES

    def view(self) -> Event:
        duration = (self.ended - self.started) if self.ended and self.started else None
        return {
            "type": "host",
            "node": self.node,
            "status": self.status,
            "exit_code": self.exit_code,
            "duration": duration,
            "reason": self.reason,
        }


@dataclass
class Subscriber:
    """One client following a task: a queue of (event, ack) pairs."""

    queue: asyncio.Queue[tuple[Event, Ack]] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def push(self, event: Event, ack: Ack = None) -> None:
        self.queue.put_nowait((event, ack))

    def close(self) -> None:
        """Release every pending ack so agents are never stalled by a gone client."""
        self.closed = True
        while not self.queue.empty():
            _, ack = self.queue.get_nowait()
            if ack:
                ack()


@dataclass
class LiveTask:
    """A task still running, with the output credit of each host (``grant`` sends it)."""

    id: int
    hosts: dict[str, HostRun]
    credit: int
    grant: Callable[[int, str, int], object]  # (task, node, credit)
    relays: dict[str, CreditRelay] = field(init=False)
    subscribers: list[Subscriber] = field(default_factory=list)
    canceled: bool = False
    open_count: int = 0  # hosts not yet final, kept by finish_host: O(1) per result
    first_deadline: float | None = None  # no host can be overdue before this

    def __post_init__(self) -> None:
        still_open = self.open_hosts()
        self.open_count = len(still_open)
        deadlines = [h.deadline for h in still_open if h.deadline is not None]
        self.first_deadline = min(deadlines) if deadlines else None
        self.relays = {
            name: CreditRelay(self.credit, functools.partial(self.grant, self.id, name))
            for name in self.hosts
        }

    def open_hosts(self) -> list[HostRun]:
        return [h for h in self.hosts.values() if not h.final]

    def live_subscribers(self) -> list[Subscriber]:
        return [s for s in self.subscribers if not s.closed]

    def publish(self, event: Event) -> None:
        for subscriber in self.live_subscribers():
            subscriber.push(event)


def host_credit(hosts: int) -> int:
    """Each host's output window: the task's budget split over its hosts, within bounds."""
    return max(MIN_HOST_CREDIT, min(MAX_HOST_CREDIT, TASK_OUTPUT_BUDGET_CHUNKS // hosts))


def resolve_targets(
    registry: NodeRegistry, targets: list[str], all_nodes: bool, match: str | None
) -> list[str]:
    """The node names an exec request names, in order, each once."""
    names: list[str] = []
    nodes = sorted(registry.nodes, key=natural_key)
    if all_nodes:
        names.extend(nodes)
    if match:
        names.extend(n for n in nodes if fnmatch.fnmatchcase(n, match))
    names.extend(t for t in targets if isinstance(t, str))
    unique = list(dict.fromkeys(names))
    if not unique:
        what = f"--match {match!r}" if match else "the given targets"
        raise GdosError(
            ErrorCode.NO_TARGET,
            f"no node matched {what}; run 'gdos node list' to see enrolled nodes.",
        )
    return unique


def admit(node: LiveNode | None, name: str, allow_drained: bool, deadline: float) -> HostRun:
    """The host's run: ``running`` until its deadline, or ``unreachable`` with the reason."""
    now = time.time()
    reason = None
    if node is None:
        reason = "unknown node; run 'gdos node list' to see enrolled nodes"
    elif refused := refusal(node.state, Action.EXEC, name, allow_drained=allow_drained):
        reason = refused.message
    elif not node.online or node.routing_id is None:
        reason = "node is offline" + _seen_ago(node)
    if reason:
        return HostRun(
            node=name, status=HostStatus.UNREACHABLE, reason=reason, started=now, ended=now
        )
    return HostRun(node=name, status=HostStatus.RUNNING, deadline=deadline, started=now)


def _seen_ago(node: LiveNode) -> str:
    if node.last_seen is None:
        return " (never seen by this daemon)"
    return f" (last seen {time.time() - node.last_seen:.0f}s ago)"


def exec_timeout(value: Any) -> float:
    """The per-host time limit of an exec request, checked here on the daemon side.

    Omitted means DEFAULT_TIMEOUT. Zero is refused rather than read as "the
    default" (an operator who typed 0 meant something, and would be surprised
    by 300 s); so are negative, non-finite and absurdly long limits, whoever
    sent them over the control socket.
    """
    if value is None:
        return DEFAULT_TIMEOUT
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT:
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"--timeout {value!r} is not usable: give more than 0 and at most "
            f"{MAX_TIMEOUT:.0f} seconds, or leave it out for {DEFAULT_TIMEOUT:.0f} s.",
        )
    return float(value)
