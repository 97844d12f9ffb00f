"""The audit trail: who changed what, when, and how it ended.

Rows go to the append-only ``audit`` table (migration 4: triggers refuse
UPDATE and DELETE, and no control request removes a row). Changes made
through the control socket are recorded in one place: ``AuditTrail.policy``
wraps the handler of every request kind listed in ``ACTIONS`` as it is
registered (gdos/daemon/handlers.py), so a handler that succeeds appends
``ok`` and one that refuses appends its error code.
What no control request drives is recorded by explicit calls: enrollment by
join token (``KeyRing.on_enroll``), the outcome of a service operation when
it ends, scheduled backups and the restore itself (after the swap).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gdos.daemon.storage import storage_failure
from gdos.daemon.store import Store
from gdos.errors import ErrorCode, GdosError
from gdos.model import NodeState

log = logging.getLogger("gdosd.audit")

Body = dict[str, Any]
Handler = Callable[[Any, Any], Awaitable[Body | None]]
MAX_LIMIT = 10_000
DAEMON_USER = "gdosd"  # the user of rows the daemon writes on its own (schedules)


@dataclass(frozen=True)
class Action:
    """How one control request kind shows in the trail."""

    name: str | Callable[[Body], str]
    target: Callable[[Body, Body | None], str | None]
    detail: Callable[[Body, Body | None], Any] | None = None
    record_ok: bool = True  # False: the success is recorded elsewhere (when it ends)

    def action(self, body: Body) -> str:
        return self.name(body) if callable(self.name) else self.name


def _field(name: str) -> Callable[[Body, Body | None], str | None]:
    return lambda body, reply: None if body.get(name) is None else str(body[name])


def _key_target(body: Body, reply: Body | None) -> str | None:
    return "--all" if body.get("all") else body.get("name")


def _key_detail(body: Body, reply: Body | None) -> Any:
    if not reply:
        return None
    keys = reply.get("keys", [])
    detail: Body = {
        "keys": [k["name"] for k in keys],
        "fingerprints": [k["fingerprint"] for k in keys],
    }
    if reply.get("refused"):
        detail["refused"] = [f"{k['name']} {k['fingerprint']}" for k in reply["refused"]]
    return detail


def _key_fingerprints(body: Body, reply: Body | None) -> Any:
    keys = (reply or {}).get("keys", [])
    return {"fingerprints": [k["fingerprint"] for k in keys]} if reply else None


_STATE_ACTIONS: dict[str, str] = {
    NodeState.MAINTENANCE: "node.drain",
    NodeState.DISABLED: "node.disable",
    NodeState.NORMAL: "node.enable",
}


def _state_action(body: Body) -> str:
    return _STATE_ACTIONS.get(str(body.get("state")), "node.set_state")


def _exec_target(body: Body, reply: Body | None) -> str:
    if body.get("all"):
        return "--all"
    parts = [str(t) for t in body.get("targets") or []]
    if body.get("match"):
        parts.append(f"--match {body['match']}")
    return ",".join(parts)[:500]


def _exec_detail(body: Body, reply: Body | None) -> Any:
    detail: Body = {"argv": body.get("argv")}
    if reply:
        detail["task"] = reply.get("task")
    return detail


def _package_target(body: Body, reply: Body | None) -> str | None:
    package = (reply or {}).get("package")
    return f"{package['name']}@{package['version']}" if package else None


def _module_target(body: Body, reply: Body | None) -> str:
    return f"{body.get('system')}/{body.get('module')}"


def _system_target(body: Body, reply: Body | None) -> str:
    return str(body.get("name")) + (f"/{body['module']}" if body.get("module") else "")


def _token_target(body: Body, reply: Body | None) -> str | None:
    return (reply or {}).get("id")


def _token_detail(body: Body, reply: Body | None) -> Any:
    return {k: body.get(k) for k in ("ttl", "uses") if body.get(k) is not None} or None


def _adopt_target(body: Body, reply: Body | None) -> str:
    return f"adopted/{body.get('name')}@{body.get('node')}"


def _backup_target(body: Body, reply: Body | None) -> str | None:
    return (reply or {}).get("path") or body.get("path")


def _rule_detail(body: Body, reply: Body | None) -> Any:
    keys = ("metric", "op", "value", "for_seconds", "node", "instance", "severity")
    return {k: body[k] for k in keys if body.get(k) is not None}


# control request kind -> how it is recorded; anything not listed changes nothing
ACTIONS: dict[str, Action] = {
    "key.accept": Action("key.accept", _key_target, _key_detail),
    "key.reject": Action("key.reject", _field("name"), _key_fingerprints),
    "key.delete": Action("key.delete", _field("name"), _key_fingerprints),
    "node.rm": Action("node.rm", _field("name")),
    "node.set_state": Action(
        _state_action,
        _field("name"),
        lambda b, r: {"reason": b["reason"]} if b.get("reason") else None,
    ),
    "token.create": Action("token.create", _token_target, _token_detail),
    "exec.start": Action("exec.start", _exec_target, _exec_detail),
    "task.cancel": Action("task.cancel", _field("id")),
    "shell.open": Action(
        "shell.open", _field("node"), lambda b, r: {"session": (r or {}).get("session")}
    ),
    "package.commit": Action("package.push", _package_target),
    "package.rm": Action("package.rm", lambda b, r: f"{b.get('name')}@{b.get('version')}"),
    "system.create": Action("system.create", _field("name")),
    "system.add": Action("system.add", _module_target),
    "system.rm": Action("system.rm", _system_target),
    # the outcome of an accepted operation is recorded when it ends (operation_done)
    "svc.run": Action(lambda b: str(b.get("action")), _field("target"), record_ok=False),
    "svc.adopt.start": Action("adopt", _adopt_target),
    "alert.rule.add": Action("alert.rule.add", _field("name"), _rule_detail),
    "alert.rule.rm": Action("alert.rule.rm", _field("name")),
    "backup.create": Action("backup.create", _backup_target),
    # a restore is recorded in the restored database, once the daemon is back
    "backup.restore": Action("backup.restore", _field("path"), record_ok=False),
}


class AuditTrail:
    """Appends rows and answers queries; never updates or deletes one."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(
        self,
        user: str | None,
        action: str,
        target: str | None,
        result: str = "ok",
        detail: Any = None,
    ) -> None:
        """Append one row. A failure is logged, never raised: auditing must not
        turn a change that happened into an error for the operator."""
        try:
            self.store.append_audit(user or "unknown", action, target, result, detail)
        except Exception:
            log.exception("could not append audit row %s %s", action, target)

    def policy(self, kind: str, handler: Handler) -> Handler:
        """The handler of control request ``kind`` as the trail needs it: wrapped
        when the kind changes something (``ACTIONS``), else unchanged. Applied as
        each handler is registered (gdos/daemon/handlers.py)."""
        action = ACTIONS.get(kind)
        return handler if action is None else self._audited(handler, action)

    def _audited(self, handler: Handler, action: Action) -> Handler:
        async def audited(conn: Any, msg: Any) -> Body | None:
            body = msg.body
            try:
                reply = await handler(conn, msg)
            except GdosError as exc:
                self._record_request(conn, action, body, None, str(exc.code), exc.message)
                raise
            except Exception as exc:
                failure = storage_failure(exc, self.store.path)  # the row may not fit either
                code = failure.code if failure is not None else ErrorCode.INTERNAL
                self._record_request(conn, action, body, None, str(code), None)
                raise
            if action.record_ok:
                self._record_request(conn, action, body, reply, "ok", None)
            return reply

        return audited

    def _record_request(
        self,
        conn: Any,
        action: Action,
        body: Body,
        reply: Body | None,
        result: str,
        message: str | None,
    ) -> None:
        try:
            target = action.target(body, reply)
            detail = action.detail(body, reply) if action.detail else None
        except Exception:  # a malformed body must still leave a row
            target, detail = None, None
        if message is not None:
            detail = {**(detail if isinstance(detail, dict) else {}), "message": message}
        self.record(getattr(conn, "user", None), action.action(body), target, result, detail)

    def operation_done(self, user: str, action: str, target: str, task: Any) -> None:
        """The outcome of a service operation (deploy, start, ...) once it ended."""
        if task.cancelled():
            self.record(user, action, target, "cancelled", {"message": "the daemon stopped"})
            return
        error = task.exception()
        if error is not None:
            code = str(error.code) if isinstance(error, GdosError) else str(ErrorCode.INTERNAL)
            self.record(user, action, target, code, {"message": str(error)})
            return
        outcome = task.result()
        results = outcome.get("results") or []
        failed = [r for r in results if not r.get("ok")]
        result = "ok" if outcome.get("ok") else str(failed[0].get("code") if failed else "failed")
        detail: Body = {"instances": len(results), "failed": len(failed)}
        if failed:
            detail["message"] = f"{failed[0].get('instance')}: {failed[0].get('message')}"
        self.record(user, action, target, result, detail)

    def list(
        self,
        since: float | None = None,
        user: str | None = None,
        action: str | None = None,
        limit: int = 100,
    ) -> list[Body]:
        """The newest ``limit`` matching rows, oldest first."""
        return self.store.audit_rows(since, user, action, max(1, min(int(limit), MAX_LIMIT)))
