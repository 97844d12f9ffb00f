"""Control requests of the observe concern: audit trail, alerts, backups.

``Observe`` also wires what those need in the daemon: the audit hooks that
no control request drives (enrollment by join token), the alert evaluation
and hook workers, scheduled backups, and the re-exec after a restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from gdos.daemon import backups
from gdos.daemon.alerts import Alerts, snapshot
from gdos.daemon.audit_digest import FailureDigest
from gdos.daemon.backups import Backups
from gdos.daemon.control import ControlConnection
from gdos.daemon.hooks import HookRunner
from gdos.errors import ErrorCode, GdosError
from gdos.keys import fingerprint
from gdos.protocol import Message

if TYPE_CHECKING:
    from gdos.daemon.server import Daemon

log = logging.getLogger("gdosd.observe")

MAX_LIMIT = 10_000


class Observe:
    def __init__(self, daemon: Daemon, restored: dict[str, Any] | None = None) -> None:
        self.d = daemon
        config = daemon.config
        self.audit = daemon.audit
        self.hooks = HookRunner()
        self.alerts = Alerts(
            daemon.store,
            lambda now: snapshot(daemon, config.offline_after, now),
            self.hooks,
            getattr(config, "alert_command", None),
            getattr(config, "alert_webhook", None),
        )
        self.backups = Backups(
            daemon.paths,
            daemon.paths.db,
            float(getattr(config, "backup_every", 0.0) or 0.0),
            int(getattr(config, "backup_keep", 10)),
        )
        self.workers: list[asyncio.Task[Any]] = []
        self.enroll_failures = FailureDigest(self.audit.record)
        on_enroll = getattr(daemon.ring, "on_enroll", None)
        if on_enroll is not None:
            on_enroll.append(self._enrolled)
        if restored is not None:
            try:
                backups.carry_audit(daemon.store.db, restored.get("pre_restore"))
            except Exception:
                log.exception("could not carry the audit trail over the restore")
            self.audit.record(
                restored.get("user"),
                "backup.restore",
                restored.get("source"),
                "ok",
                {"pre_restore": restored.get("pre_restore")},
            )

    def handlers(self) -> dict[str, Any]:
        return {
            "audit.list": self.audit_list,
            "alert.rule.add": self.rule_add,
            "alert.rule.list": self.rule_list,
            "alert.rule.rm": self.rule_rm,
            "alert.list": self.alert_list,
            "backup.create": self.backup_create,
            "backup.list": self.backup_list,
            "backup.restore": self.backup_restore,
        }

    def start(self) -> list[asyncio.Task[Any]]:
        """Audit every handler registered so far, start the evaluator and schedules."""
        self.audit.wrap(self.d.api.handlers)
        self.hooks.start()
        self.workers = [asyncio.create_task(self.alerts.run(), name="alerts")]
        if self.backups.every > 0:
            task = asyncio.create_task(self.backups.schedule(self.audit), name="backups")
            self.workers.append(task)
        return self.workers

    async def close(self) -> None:
        for task in self.workers:
            task.cancel()
        for task in self.workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.hooks.close()
        with contextlib.suppress(Exception):
            self.alerts.flush(force=True)
        self.enroll_failures.close()

    def after_shutdown(self) -> None:
        """Once the store is closed: re-exec when a restore is staged."""
        if self.backups.restart_requested:
            log.warning("restarting to load the restored database")
            backups.reexec()

    def _enrolled(self, name: str, key: str, result: str, detail: dict[str, Any]) -> None:
        token = detail.get("token")
        token = token[:32] if isinstance(token, str) and token else None
        who = f"token:{token}" if token else "agent"
        detail = {"key": fingerprint(key), **detail, "token": token}
        if result == "ok":
            self.audit.record(who, "enroll", name, result, detail)
            return
        # failures repeat (anyone with the daemon's key can try): counted, not one row each
        source, reason = str(detail.get("address") or "?"), str(detail.get("reason"))
        self.enroll_failures.add(who, "enroll", name, result, source, reason, detail)

    # -- audit ----------------------------------------------------------------------------
    async def audit_list(self, conn: ControlConnection, msg: Message) -> dict[str, Any]:
        body = msg.body
        return {
            "rows": self.audit.list(
                since=body.get("since"),
                user=body.get("user"),
                action=body.get("action"),
                limit=_limit(body, 100),
            )
        }

    # -- alerts ---------------------------------------------------------------------------
    async def rule_add(self, conn: ControlConnection, msg: Message) -> dict[str, Any]:
        return {"rule": self.alerts.add_rule(msg.body).view()}

    async def rule_list(self, conn: ControlConnection, msg: Message) -> dict[str, Any]:
        return {"rules": self.alerts.rules_view()}

    async def rule_rm(self, conn: ControlConnection, msg: Message) -> dict[str, Any]:
        return {"removed": self.alerts.remove_rule(msg.body["name"]).name}

    async def alert_list(self, conn: ControlConnection, msg: Message) -> dict[str, Any]:
        active = bool(msg.body.get("active"))
        return {"events": self.alerts.events(active, _limit(msg.body, 50))}

    # -- backups --------------------------------------------------------------------------
    async def backup_create(self, conn: ControlConnection, msg: Message) -> dict[str, Any]:
        return await self.backups.create(msg.body.get("path"))

    async def backup_list(self, conn: ControlConnection, msg: Message) -> dict[str, Any]:
        return {"backups": self.backups.list()}

    async def backup_restore(self, conn: ControlConnection, msg: Message) -> dict[str, Any]:
        """Stage the restore, answer, then stop; the daemon re-executes itself."""
        if self.backups.restart_requested:
            raise GdosError(ErrorCode.INVALID_ARGUMENT, "a restore is already under way.")
        reply = await self.backups.stage_restore(msg.body["path"], conn.user)
        asyncio.get_running_loop().call_soon(self.d.stop)
        return {**reply, "pid": _pid(), "started": self.d.started, "at": time.time()}


def _limit(body: dict[str, Any], default: int) -> int:
    return max(1, min(int(body.get("limit", default)), MAX_LIMIT))


def _pid() -> int:
    import os

    return os.getpid()
