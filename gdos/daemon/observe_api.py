"""Control requests of the observe concern: audit trail, alerts, backups.

``Observe`` also wires what those need in the daemon: the audit hooks that
no control request drives (enrollment by join token), the alert evaluation
and hook workers, scheduled backups, and the re-exec after a restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from gdos.daemon import backups
from gdos.daemon.alerts import Alerts, Snapshot
from gdos.daemon.audit import AuditTrail
from gdos.daemon.audit_digest import FailureDigest
from gdos.daemon.auth import KeyRing
from gdos.daemon.backups import Backups
from gdos.daemon.config import DaemonConfig
from gdos.daemon.control import ControlConnection
from gdos.daemon.handlers import Handlers
from gdos.daemon.hooks import HookRunner
from gdos.daemon.store import Store
from gdos.errors import ErrorCode, GdosError
from gdos.identity.keys import fingerprint
from gdos.paths import Paths
from gdos.wire.control_kinds import AlertList, AuditList, BackupCreate, BackupRestore, Named
from gdos.wire.protocol import Message

log = logging.getLogger("gdosd.observe")

MAX_LIMIT = 10_000
Body = dict[str, Any]


class Observe:
    def __init__(
        self,
        handlers: Handlers,
        config: DaemonConfig,
        paths: Paths,
        store: Store,
        audit: AuditTrail,
        ring: KeyRing,
        snapshot: Callable[[float], Snapshot],
        stop: Callable[[], None],
        started: float,
        restored: dict[str, Any] | None = None,
    ) -> None:
        """``snapshot(now)``: current values for the alert rules; ``stop`` ends
        the daemon (started at ``started``), which re-executes itself when a
        restore is staged."""
        self.audit, self.stop, self.started = audit, stop, started
        self.hooks = HookRunner()
        self.alerts = Alerts(
            store,
            snapshot,
            self.hooks,
            config.alert_command,
            config.alert_webhook,
        )
        self.backups = Backups(
            paths,
            paths.db,
            float(config.backup_every or 0.0),
            int(config.backup_keep),
        )
        self.workers: list[asyncio.Task[Any]] = []
        self.enroll_failures = FailureDigest(self.audit.record)
        ring.on_enroll.append(self._enrolled)
        if restored is not None:
            self._restored(store, restored)
        handlers.register(
            {
                "audit.list": self.audit_list,
                "alert.rule.add": self.rule_add,
                "alert.rule.list": self.rule_list,
                "alert.rule.rm": self.rule_rm,
                "alert.list": self.alert_list,
                "backup.create": self.backup_create,
                "backup.list": self.backup_list,
                "backup.restore": self.backup_restore,
            }
        )

    def _restored(self, store: Store, restored: dict[str, Any]) -> None:
        """After a restore: carry the trail over, then record the restore itself."""
        try:
            store.carry_audit(restored.get("pre_restore"))
        except Exception:
            log.exception("could not carry the audit trail over the restore")
        self.audit.record(
            restored.get("user"),
            "backup.restore",
            restored.get("source"),
            "ok",
            {"pre_restore": restored.get("pre_restore")},
        )

    def start(self) -> list[asyncio.Task[Any]]:
        """Start the alert evaluator, the hook workers and scheduled backups."""
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
    async def audit_list(self, conn: ControlConnection, msg: Message[AuditList]) -> Body:
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
    async def rule_add(self, conn: ControlConnection, msg: Message) -> Body:
        return {"rule": self.alerts.add_rule(msg.body).view()}

    async def rule_list(self, conn: ControlConnection, msg: Message) -> Body:
        return {"rules": self.alerts.rules_view()}

    async def rule_rm(self, conn: ControlConnection, msg: Message[Named]) -> Body:
        return {"removed": self.alerts.remove_rule(msg.body["name"]).name}

    async def alert_list(self, conn: ControlConnection, msg: Message[AlertList]) -> Body:
        active = bool(msg.body.get("active"))
        return {"events": self.alerts.events(active, _limit(msg.body, 50))}

    # -- backups --------------------------------------------------------------------------
    async def backup_create(self, conn: ControlConnection, msg: Message[BackupCreate]) -> Body:
        return await self.backups.create(msg.body.get("path"))

    async def backup_list(self, conn: ControlConnection, msg: Message) -> Body:
        return {"backups": self.backups.list()}

    async def backup_restore(self, conn: ControlConnection, msg: Message[BackupRestore]) -> Body:
        """Stage the restore, answer, then stop; the daemon re-executes itself."""
        if self.backups.restart_requested:
            raise GdosError(ErrorCode.INVALID_ARGUMENT, "a restore is already under way.")
        reply = await self.backups.stage_restore(msg.body["path"], conn.user)
        asyncio.get_running_loop().call_soon(self.stop)
        return {**reply, "pid": os.getpid(), "started": self.started, "at": time.time()}


def _limit(body: AuditList | AlertList, default: int) -> int:
    return max(1, min(int(body.get("limit", default)), MAX_LIMIT))
