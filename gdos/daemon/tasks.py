"""Remote exec tasks: fan out, collect per-host results, enforce deadlines.

A task is stored before anything is sent, and every host result is written
(in small batches) as it arrives, so a restarted daemon resumes watching the
hosts it had in flight. A result is acknowledged to its agent only once it is
stored: when the disk refuses the write the batch is kept and retried, the
host stays open and the agent keeps the result (and resends it after a
reconnect), so nothing is lost. A value that cannot be stored fails its own
host as a protocol error, never the rest of the batch.

Live output reaches subscribers (CLI, TUI) through bounded streams: each
host's output passes a :class:`gdos.wire.flow.CreditRelay`, so the agent gets
more credit only once every subscriber has sent the chunk on, and a slow
terminal slows the remote command instead of growing a queue in the daemon.
The task's parts and admission live in ``task_runs``, the batched writes in
``task_writes``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from gdos.daemon.config import DaemonConfig
from gdos.daemon.mesh import Mesh
from gdos.daemon.registry import LiveNode, NodeRegistry
from gdos.daemon.store import Store
from gdos.daemon.task_runs import (
    MIN_HOST_CREDIT,
    Event,
    HostRun,
    LiveTask,
    Subscriber,
    admit,
    exec_timeout,
    host_credit,
    resolve_targets,
)
from gdos.daemon.task_writes import HostWrites, PendingWrite
from gdos.errors import ErrorCode, GdosError
from gdos.model import FINAL_HOST_STATUSES, HostStatus, TaskStatus
from gdos.wire import protocol
from gdos.wire.protocol import Message, ProtocolError

log = logging.getLogger("gdosd.tasks")


class ExecTasks:
    """Every running exec task of the daemon."""

    def __init__(
        self, config: DaemonConfig, store: Store, registry: NodeRegistry, mesh: Mesh
    ) -> None:
        self.config, self.store, self.registry, self.mesh = config, store, registry, mesh
        self.live: dict[int, LiveTask] = {}
        self.writes = HostWrites(store, self._notify_waiting)
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
        return resolve_targets(self.registry, targets, all_nodes, match)

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
        drained = bool(body.get("allow_drained"))
        hosts = {n: admit(self.registry.nodes.get(n), n, drained, deadline) for n in names}
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
        credit = host_credit(len(names))
        task = LiveTask(id=task_id, hosts=hosts, credit=credit, grant=self._grant)
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
            if host.status == HostStatus.RUNNING and not self.mesh.send(
                self.registry.nodes[host.node], "exec.run", run
            ):
                self._finish_host(
                    task, host, HostStatus.UNREACHABLE, reason="node is not connected"
                )
        self._maybe_done(task)
        return task, [h.view() for h in hosts.values()]

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
        relay = task.relays[host.node]
        if not relay.admit():
            log.warning("%s sent output past its credit on task %d; dropped", node.name, task.id)
            return
        stream = msg.body["stream"] if msg.body["stream"] in host.forwarded else "stdout"
        host.forwarded[stream] += len(msg.body["data"])
        event = {"type": "output", "node": node.name, "stream": stream, "data": msg.body["data"]}
        live = task.live_subscribers()
        if not live:
            relay.passed()
            return
        ack = relay.passed_after(len(live))
        for subscriber in live:
            subscriber.push(event, ack)

    def _grant(self, task_id: int, name: str, credit: int) -> None:
        """More output credit for one host of a task, as its subscribers took the output."""
        node = self.registry.nodes.get(name)
        if node is not None:
            self.mesh.send(node, "exec.credit", {"task": task_id, "credit": credit})

    def _on_result(self, node: LiveNode, msg: Message) -> None:
        if self.writes.full:
            return  # not acknowledged: the agent keeps it and sends it again later
        body = msg.body
        task_id, name = body["task"], node.name
        status = body["status"] if body["status"] in FINAL_HOST_STATUSES else HostStatus.FAILED
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
        self.writes.queue(PendingWrite(full, stored, lambda why: self._bad_result(task, host, why)))

    def _on_refused_result(self, node: LiveNode, body: dict[str, Any], exc: ProtocolError) -> None:
        """A result whose values the schema refused (an exit code of 2^63...): that host
        alone fails with the reason, and the agent is told to drop it."""
        task_id = body.get("task")
        if type(task_id) is not int:
            return
        task = self.live.get(task_id)
        host = task.hosts.get(node.name) if task else None
        if task is None or host is None or host.final:
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
        row = {"task_id": task.id, "node": host.node, "status": HostStatus.FAILED, "reason": reason}
        row.update({"exit_code": None, "started": host.started, "ended": ended})

        def stored() -> None:
            host.result_pending, host.exit_code, host.ended = False, None, ended
            self._finish_host(task, host, HostStatus.FAILED, reason=reason, write=False)
            self._ack(host.node, task.id)
            self._maybe_done(task)

        self.writes.queue(PendingWrite(row, stored))

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
                task.publish(
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
            or known["status"] == status == HostStatus.SUCCEEDED
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
        self.writes.queue(PendingWrite(full, stored, refused))

    def _on_offline(self, node: LiveNode) -> None:
        for task in self.live.values():
            host = task.hosts.get(node.name)
            if host and not host.final:
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
                self._finish_host(
                    task, host, HostStatus.CANCELED, reason="canceled; node not reachable"
                )
        self._maybe_done(task)
        return task

    def sweep(self, now: float | None = None) -> None:
        """Give up on hosts past their deadline."""
        now = now or time.time()
        self.writes.flush_due()
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
                    self._finish_host(task, host, HostStatus.FAILED, reason=reason)
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
            self.live[task_id] = LiveTask(task_id, hosts, MIN_HOST_CREDIT, self._grant)
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
        if not host.final and status in FINAL_HOST_STATUSES:
            task.open_count -= 1
        host.status, host.reason = status, reason
        host.ended = host.ended or time.time()
        if write:
            row = {"task_id": task.id, "node": host.node, "status": status, "reason": reason}
            row.update({"ended": host.ended, "started": host.started, "exit_code": host.exit_code})
            self.writes.queue(PendingWrite(row))
        task.publish(host.view())

    def _maybe_done(self, task: LiveTask) -> None:
        """Finish the task once every host is final and stored; else the sweep tries again."""
        if task.open_count > 0 or task.id not in self.live:
            return
        self.writes.flush()
        if self.writes.waiting(task.id):
            return
        status = self._task_status(task.id, task.canceled)
        try:
            self.store.finish_task(task.id, status)
        except Exception as exc:
            self.writes.failed(exc, f"finishing task {task.id}")
            return
        del self.live[task.id]
        task.publish({"type": "done", "task": task.id, "status": status})

    def _task_status(self, task_id: int, canceled: bool) -> str:
        statuses = {h["status"] for h in self.store.task_hosts(task_id)}
        if canceled or HostStatus.CANCELED in statuses:
            return TaskStatus.CANCELED
        return TaskStatus.SUCCEEDED if statuses <= {HostStatus.SUCCEEDED} else TaskStatus.FAILED

    @property
    def storage_problem(self) -> GdosError | None:
        """The last write the disk refused, until one works again."""
        return self.writes.problem

    @property
    def unsaved(self) -> int:
        """Host rows (results among them) waiting to be stored."""
        return len(self.writes.pending)

    def flush(self) -> None:
        self.writes.flush()

    def _notify_waiting(self, failure: GdosError, task_ids: set[int]) -> None:
        """Tell whoever follows a task with unsaved rows why its results wait."""
        notice = {"type": "notice", **failure.to_body()}
        for task_id in task_ids:
            task = self.live.get(task_id)
            if task is not None:
                task.publish(notice)

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
        self.writes.close()
