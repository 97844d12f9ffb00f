"""Remote exec tasks: fan out, collect per-host results, enforce deadlines.

A task is stored before anything is sent, and every host result is written
(in small batches) as it arrives, so a restarted daemon resumes watching the
hosts it had in flight. A result is acknowledged to its agent only once it is
stored: when the disk refuses the write the batch is kept and retried, the
host stays open and the agent keeps the result (and resends it after a
reconnect), so nothing is lost. A value that cannot be stored fails its own
host as a protocol error, never the rest of the batch.

Live output reaches subscribers (CLI, TUI) through bounded streams: the
agent gets more output credit only once every subscriber has sent the
previous chunk on, so a slow terminal slows the remote command instead of
growing a queue in the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gdos import protocol
from gdos.daemon.config import DaemonConfig
from gdos.daemon.mesh import Mesh
from gdos.daemon.registry import LiveNode, NodeRegistry
from gdos.daemon.storage import storage_error, storage_failure
from gdos.daemon.store import Store
from gdos.errors import ErrorCode, GdosError
from gdos.names import natural_key
from gdos.protocol import Message, ProtocolError

log = logging.getLogger("gdosd.tasks")

FINAL = frozenset({"succeeded", "failed", "timed_out", "canceled", "unreachable"})
TASK_OUTPUT_BUDGET_CHUNKS = 256  # in-flight output chunks per task, split over its hosts
MAX_HOST_CREDIT = 16
MIN_HOST_CREDIT = 2
DEFAULT_TIMEOUT = 300.0
MAX_TIMEOUT = 7 * 86400.0
BATCH_DELAY = 0.02  # results written together within this window
RETRY_DELAY = 1.0  # a batch the disk refused is tried again after this
MAX_UNSAVED_BYTES = 256 * 1024 * 1024  # output held for the disk; past it agents keep theirs

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
    unacked: int = 0  # output chunks not yet passed on by every subscriber
    forwarded: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})

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
class PendingWrite:
    """One host row waiting to be stored, with what to do once it is (or cannot be)."""

    row: dict[str, Any]
    stored: Callable[[], None] | None = None
    refused: Callable[[str], None] | None = None


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
    id: int
    hosts: dict[str, HostRun]
    credit: int
    subscribers: list[Subscriber] = field(default_factory=list)
    canceled: bool = False
    open_count: int = 0  # hosts not yet final, kept by _finish_host: O(1) per result
    first_deadline: float | None = None  # no host can be overdue before this

    def __post_init__(self) -> None:
        still_open = self.open_hosts()
        self.open_count = len(still_open)
        deadlines = [h.deadline for h in still_open if h.deadline is not None]
        self.first_deadline = min(deadlines) if deadlines else None

    def open_hosts(self) -> list[HostRun]:
        return [h for h in self.hosts.values() if h.status not in FINAL]


class ExecTasks:
    """Every running exec task of the daemon."""

    def __init__(
        self, config: DaemonConfig, store: Store, registry: NodeRegistry, mesh: Mesh
    ) -> None:
        self.config, self.store, self.registry, self.mesh = config, store, registry, mesh
        self.live: dict[int, LiveTask] = {}
        self._pending: list[PendingWrite] = []
        self._unsaved_bytes = 0  # output bytes in _pending
        self.storage_problem: GdosError | None = None  # the last refused write, until one works
        self._flush_handle: asyncio.TimerHandle | None = None
        mesh.handlers.register(
            {
                "exec.started": self._on_started,
                "exec.output": self._on_output,
                "exec.result": self._on_result,
            }
        )
        mesh.on_refused["exec.result"] = self._on_refused_result
        registry.on_offline.append(self._on_offline)

    # -- start ----------------------------------------------------------------
    def resolve_targets(self, targets: list[str], all_nodes: bool, match: str | None) -> list[str]:
        names: list[str] = []
        if all_nodes:
            names.extend(sorted(self.registry.nodes, key=natural_key))
        if match:
            nodes = sorted(self.registry.nodes, key=natural_key)
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

    def start(self, body: dict[str, Any], user: str) -> tuple[LiveTask, list[Event]]:
        argv = body["argv"]
        if not argv or not all(isinstance(a, str) for a in argv):
            raise GdosError(ErrorCode.INVALID_ARGUMENT, "give a command to run after '--'.")
        timeout = exec_timeout(body.get("timeout"))
        env = body.get("env") or {}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise GdosError(ErrorCode.INVALID_ARGUMENT, "--env values must be K=V strings.")
        names = self.resolve_targets(
            body.get("targets") or [], bool(body.get("all")), body.get("match")
        )
        now = time.time()
        deadline = now + timeout + self.config.result_grace
        hosts = {n: self._admit(n, bool(body.get("allow_drained")), deadline) for n in names}
        options = {k: body.get(k) for k in ("shell", "env", "cwd", "user", "allow_drained")}
        options["timeout"] = timeout
        task_id = self.store.create_task(
            "exec",
            argv,
            options,
            user,
            [
                {
                    "node": h.node,
                    "status": h.status,
                    "reason": h.reason,
                    "deadline": h.deadline,
                    "started": h.started,
                    "ended": h.ended,
                }
                for h in hosts.values()
            ],
        )
        credit = max(MIN_HOST_CREDIT, min(MAX_HOST_CREDIT, TASK_OUTPUT_BUDGET_CHUNKS // len(names)))
        task = LiveTask(id=task_id, hosts=hosts, credit=credit)
        self.live[task_id] = task
        run = {
            "task": task_id,
            "argv": argv,
            "timeout": timeout,
            "shell": bool(body.get("shell")),
            "env": env,
            "cwd": body.get("cwd"),
            "user": body.get("user"),
            "credit": credit,
            "allow_drained": bool(body.get("allow_drained")),
        }
        for host in hosts.values():
            if host.status == "running" and not self.mesh.send(
                self.registry.nodes[host.node], "exec.run", run
            ):
                self._finish_host(task, host, "unreachable", reason="node is not connected")
        self._maybe_done(task)
        return task, [h.view() for h in hosts.values()]

    def _admit(self, name: str, allow_drained: bool, deadline: float) -> HostRun:
        now = time.time()
        node = self.registry.nodes.get(name)
        reason = None
        if node is None:
            reason = "unknown node; run 'gdos node list' to see enrolled nodes"
        elif node.state == "disabled":
            reason = f"node is disabled; run 'gdos node enable {name}' to allow work"
        elif node.state == "maintenance" and not allow_drained:
            reason = f"node is in maintenance; add --include-drained or 'gdos node enable {name}'"
        elif not node.online or node.routing_id is None:
            reason = "node is offline" + _seen_ago(node)
        if reason:
            return HostRun(node=name, status="unreachable", reason=reason, started=now, ended=now)
        return HostRun(node=name, status="running", deadline=deadline, started=now)

    # -- agent messages ---------------------------------------------------------
    def _host(self, node: LiveNode, msg: Message) -> tuple[LiveTask, HostRun] | None:
        task = self.live.get(msg.body["task"])
        host = task.hosts.get(node.name) if task else None
        return (task, host) if task and host else None

    def _on_started(self, node: LiveNode, msg: Message) -> None:
        found = self._host(node, msg)
        if found:
            found[1].went_offline = False

    def _on_output(self, node: LiveNode, msg: Message) -> None:
        found = self._host(node, msg)
        if found is None:
            self.mesh.send(node, "exec.credit", {"task": msg.body["task"], "credit": 1})
            return
        task, host = found
        if host.unacked >= task.credit:
            log.warning("%s sent output past its credit on task %d; dropped", node.name, task.id)
            return
        stream = msg.body["stream"] if msg.body["stream"] in host.forwarded else "stdout"
        host.forwarded[stream] += len(msg.body["data"])
        event = {"type": "output", "node": node.name, "stream": stream, "data": msg.body["data"]}
        live = [s for s in task.subscribers if not s.closed]
        if not live:
            self.mesh.send(node, "exec.credit", {"task": task.id, "credit": 1})
            return
        host.unacked += 1
        remaining = [len(live)]

        def ack() -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                host.unacked -= 1
                self.mesh.send(node, "exec.credit", {"task": task.id, "credit": 1})

        for subscriber in live:
            subscriber.push(event, ack)

    def _on_result(self, node: LiveNode, msg: Message) -> None:
        if self._unsaved_bytes > MAX_UNSAVED_BYTES:
            return  # not acknowledged: the agent keeps it and sends it again later
        body = msg.body
        task_id, name = body["task"], node.name
        status = body["status"] if body["status"] in FINAL else "failed"
        reason = body.get("reason")
        row = {
            "exit_code": body.get("exit_code"),
            "started": body["started"],
            "ended": body["ended"],
            "stdout": body.get("stdout", b"")[: protocol.OUTPUT_CAP_BYTES],
            "stderr": body.get("stderr", b"")[: protocol.OUTPUT_CAP_BYTES],
            "stdout_truncated": int(bool(body.get("stdout_truncated"))),
            "stderr_truncated": int(bool(body.get("stderr_truncated"))),
        }
        found = self._host(node, msg)
        if found is None:
            self._late_result(name, task_id, status, reason, row)
            return
        task, host = found
        if host.result_pending:
            return  # resent while the first copy waits to be stored: acked once it is

        def stored() -> None:
            host.result_pending = False
            self._forward_missed_output(task, host, row)
            host.started, host.ended = row["started"], row["ended"]
            host.exit_code = row["exit_code"]
            self._finish_host(task, host, status, reason=reason, write=False)
            self._ack(name, task_id)
            self._maybe_done(task)

        host.result_pending = True
        full = {"task_id": task_id, "node": name, "status": status, "reason": reason, **row}
        self._queue(PendingWrite(full, stored, lambda why: self._bad_result(task, host, why)))

    def _on_refused_result(self, node: LiveNode, body: dict[str, Any], exc: ProtocolError) -> None:
        """A result whose values the schema refused (an exit code of 2^63...): that host
        alone fails with the reason, and the agent is told to drop it."""
        task_id = body.get("task")
        if type(task_id) is not int:
            return
        task = self.live.get(task_id)
        host = task.hosts.get(node.name) if task else None
        if task is None or host is None or host.status in FINAL:
            self._ack(node.name, task_id)  # nothing open waits for it: the agent may drop it
            return
        if host.result_pending:
            return
        host.result_pending = True
        self._bad_result(task, host, exc.message)

    def _bad_result(self, task: LiveTask, host: HostRun, why: str) -> None:
        """The node's result holds a value the store refuses: fail this host alone."""
        reason = f"protocol error: the node sent a result that cannot be stored ({why})"
        log.warning("task %d, %s: %s", task.id, host.node, reason)
        ended = time.time()
        row = {"task_id": task.id, "node": host.node, "status": "failed", "reason": reason}
        row.update({"exit_code": None, "started": host.started, "ended": ended})

        def stored() -> None:
            host.result_pending, host.exit_code, host.ended = False, None, ended
            self._finish_host(task, host, "failed", reason=reason, write=False)
            self._ack(host.node, task.id)
            self._maybe_done(task)

        self._queue(PendingWrite(row, stored))

    def _ack(self, name: str, task_id: int) -> None:
        """Tell the agent its result is stored, so it stops keeping it."""
        node = self.registry.nodes.get(name)
        if node is not None:
            self.mesh.send(node, "exec.result.ack", {"task": task_id})

    def _forward_missed_output(self, task: LiveTask, host: HostRun, row: dict[str, Any]) -> None:
        """Live chunks lost in a reconnect: show what the final result holds beyond them."""
        for stream in ("stdout", "stderr"):
            missed = row[stream][host.forwarded[stream] :]
            if missed:
                host.forwarded[stream] += len(missed)
                for subscriber in task.subscribers:
                    if not subscriber.closed:
                        subscriber.push(
                            {"type": "output", "node": host.node, "stream": stream, "data": missed}
                        )

    def _late_result(
        self, name: str, task_id: int, status: str, reason: str | None, row: dict[str, Any]
    ) -> None:
        """A result for a host already given up on: keep it, nothing is lost."""
        hosts = {h["node"]: h for h in self.store.task_hosts(task_id)}
        known = hosts.get(name)
        if (
            known is None
            or known["status"] == status == "succeeded"
            or (known["status"] == status and known["ended"] == row["ended"])
        ):
            self._ack(name, task_id)  # unknown here, or this very result is stored: resent
            return
        note = "result arrived after the deadline" + (f": {reason}" if reason else "")

        def refused(why: str) -> None:
            log.warning("late result for task %d from %s refused: %s", task_id, name, why)
            self._ack(name, task_id)

        def stored() -> None:
            log.info("late result for task %d from %s stored (%s)", task_id, name, status)
            if task_id not in self.live:  # its status was decided without this result
                with contextlib.suppress(Exception):
                    self.store.finish_task(task_id, self._task_status(task_id, canceled=False))
            self._ack(name, task_id)

        full = {"task_id": task_id, "node": name, "status": status, "reason": note, **row}
        self._queue(PendingWrite(full, stored, refused))

    def _on_offline(self, node: LiveNode) -> None:
        for task in self.live.values():
            host = task.hosts.get(node.name)
            if host and host.status not in FINAL:
                host.went_offline = True

    # -- cancel and deadlines -----------------------------------------------------
    def cancel(self, task_id: int) -> LiveTask:
        task = self.live.get(task_id)
        if task is None:
            if self.store.task(task_id) is None:
                raise GdosError(
                    ErrorCode.TASK_UNKNOWN, f"no task {task_id}; run 'gdos task list' to see tasks."
                )
            raise GdosError(ErrorCode.TASK_FINISHED, f"task {task_id} has already finished.")
        task.canceled = True
        for host in task.open_hosts():
            node = self.registry.nodes.get(host.node)
            if node is None or not self.mesh.send(node, "exec.cancel", {"task": task_id}):
                self._finish_host(task, host, "canceled", reason="canceled; node not reachable")
        self._maybe_done(task)
        return task

    def sweep(self, now: float | None = None) -> None:
        """Give up on hosts past their deadline."""
        now = now or time.time()
        if self._pending and self._flush_handle is None:
            self.flush()
        for task in list(self.live.values()):
            if task.open_count <= 0:
                self._maybe_done(task)  # finishing it failed earlier (storage): again
                continue
            if task.first_deadline is None or now <= task.first_deadline:
                continue
            for host in task.open_hosts():
                if host.result_pending:
                    continue  # the result is here, waiting for the disk
                if host.deadline is not None and now > host.deadline:
                    reason = (
                        "node went offline during the run and did not report back "
                        "before the deadline"
                        if host.went_offline or not self._online(host.node)
                        else "no result from the node before the deadline"
                    )
                    self._finish_host(task, host, "failed", reason=reason)
            self._maybe_done(task)

    def _online(self, name: str) -> bool:
        node = self.registry.nodes.get(name)
        return bool(node and node.online)

    def resume(self) -> int:
        """After a restart: watch again every host that had not finished.

        Agents keep unacknowledged results and resend them once they are
        back, so no host is given up on before its agents had
        ``offline_after`` seconds to reconnect, even if its deadline passed
        while the daemon was down.
        """
        by_task: dict[int, list[dict[str, Any]]] = {}
        for row in self.store.open_hosts():
            by_task.setdefault(row["task_id"], []).append(row)
        reconnect_by = time.time() + self.config.offline_after
        for task_id, rows in by_task.items():
            hosts = {
                r["node"]: HostRun(
                    node=r["node"],
                    status=r["status"],
                    deadline=None if r["deadline"] is None else max(r["deadline"], reconnect_by),
                    started=r["started"],
                )
                for r in rows
            }
            self.live[task_id] = LiveTask(id=task_id, hosts=hosts, credit=MIN_HOST_CREDIT)
        for task_id in self.store.running_task_ids():
            if task_id not in self.live:
                self.store.finish_task(task_id, self._task_status(task_id, canceled=False))
        return len(by_task)

    # -- bookkeeping -----------------------------------------------------------
    def _finish_host(
        self,
        task: LiveTask,
        host: HostRun,
        status: str,
        reason: str | None = None,
        write: bool = True,
    ) -> None:
        """Mark a host final in memory and tell subscribers; ``write`` queues its row."""
        if host.status not in FINAL and status in FINAL:
            task.open_count -= 1
        host.status, host.reason = status, reason
        host.ended = host.ended or time.time()
        if write:
            row = {"task_id": task.id, "node": host.node, "status": status, "reason": reason}
            row.update({"ended": host.ended, "started": host.started, "exit_code": host.exit_code})
            self._queue(PendingWrite(row))
        event = host.view()
        for subscriber in task.subscribers:
            if not subscriber.closed:
                subscriber.push(event)

    def _maybe_done(self, task: LiveTask) -> None:
        """Finish the task once every host is final and stored; else the sweep tries again."""
        if task.open_count > 0 or task.id not in self.live:
            return
        self.flush()
        if any(w.row["task_id"] == task.id for w in self._pending):
            return
        status = self._task_status(task.id, task.canceled)
        try:
            self.store.finish_task(task.id, status)
        except Exception as exc:
            self._write_failed(exc, f"finishing task {task.id}")
            return
        del self.live[task.id]
        for subscriber in task.subscribers:
            if not subscriber.closed:
                subscriber.push({"type": "done", "task": task.id, "status": status})

    def _task_status(self, task_id: int, canceled: bool) -> str:
        statuses = {h["status"] for h in self.store.task_hosts(task_id)}
        if canceled or "canceled" in statuses:
            return "canceled"
        return "succeeded" if statuses <= {"succeeded"} else "failed"

    def _queue(self, write: PendingWrite) -> None:
        self._pending.append(write)
        self._unsaved_bytes += _output_bytes(write.row)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(BATCH_DELAY, self.flush)

    @property
    def unsaved(self) -> int:
        """Host rows (results among them) waiting to be stored."""
        return len(self._pending)

    def flush(self) -> None:
        """Store every queued row in one transaction, then run what waited on it.

        When the disk refuses, the rows stay queued and are tried again after
        ``RETRY_DELAY``; nothing is acknowledged meanwhile.
        """
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            refused = self.store.update_hosts([w.row for w in batch])
        except Exception as exc:
            self._pending = batch + self._pending
            self._write_failed(exc, f"storing {len(batch)} task host rows")
            with contextlib.suppress(RuntimeError):  # no loop: at shutdown
                loop = asyncio.get_running_loop()
                self._flush_handle = loop.call_later(RETRY_DELAY, self.flush)
            return
        self._unsaved_bytes -= sum(_output_bytes(w.row) for w in batch)
        if self.storage_problem is not None:
            log.info("storage works again; %d task host rows stored", len(batch))
            self.storage_problem = None
        for index, write in enumerate(batch):
            if index in refused:
                if write.refused is not None:
                    write.refused(refused[index])
                else:
                    log.error("task host row %s refused: %s", write.row, refused[index])
            elif write.stored is not None:
                write.stored()

    def _write_failed(self, exc: Exception, what: str) -> None:
        failure = storage_failure(exc, self.store.path)
        if failure is None:
            log.exception("%s failed; trying again", what)
            failure = storage_error(self.store.path, f"{type(exc).__name__}: {exc}")
        if self.storage_problem is None or self.storage_problem.message != failure.message:
            log.error("%s failed, kept to try again: %s", what, failure)
            self._notify_waiting(failure)
        self.storage_problem = failure

    def _notify_waiting(self, failure: GdosError) -> None:
        """Tell whoever follows a task with unsaved rows why its results wait."""
        waiting = {w.row["task_id"] for w in self._pending}
        notice = {"type": "notice", **failure.to_body()}
        for task_id in waiting:
            task = self.live.get(task_id)
            for subscriber in task.subscribers if task else []:
                if not subscriber.closed:
                    subscriber.push(notice)

    def subscribe(self, task: LiveTask) -> Subscriber:
        subscriber = Subscriber()
        task.subscribers.append(subscriber)
        if task.id not in self.live:
            subscriber.push(
                {
                    "type": "done",
                    "task": task.id,
                    "status": self._task_status(task.id, task.canceled),
                }
            )
        return subscriber

    def close(self) -> None:
        self.flush()
        if self._pending:
            log.warning(
                "%d task host rows could not be stored; agents resend unacknowledged results",
                len(self._pending),
            )


def _output_bytes(row: dict[str, Any]) -> int:
    return len(row.get("stdout") or b"") + len(row.get("stderr") or b"")


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
