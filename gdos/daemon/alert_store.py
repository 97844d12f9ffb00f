"""The SQL of the alert tables (``alert_rules``, ``alert_events``) and of the
counts the Prometheus export reads.

The tables are created by gdos/daemon/store.py's migrations; this module is
the only one that reads or writes them, so the alert engine and the exporter
speak of rules and events, never of statements.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlite_utils

_RULE_COLUMNS = (
    "name, metric, op, value, for_seconds, node_glob, instance_glob, severity, builtin,"
    " command, webhook, created"
)
_STATS = "min = ?, avg = ?, max = ?, samples = ?, last_value = ?"


class AlertStore:
    """Rules and events in the daemon's database (its thread only)."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    # -- rules ------------------------------------------------------------------------
    def ensure_rule(self, rule: dict[str, Any]) -> None:
        """Insert a built-in rule unless a rule of that name exists (it is never updated)."""
        self.db.execute(
            f"INSERT OR IGNORE INTO alert_rules ({_RULE_COLUMNS})"
            " VALUES (:name, :metric, :op, :value, :for_seconds, :node_glob, :instance_glob,"
            " :severity, :builtin, :command, :webhook, :created)",
            rule,
        )

    def rules(self) -> list[dict[str, Any]]:
        return list(self.db["alert_rules"].rows)

    def add_rule(self, rule: dict[str, Any]) -> None:
        self.db.table("alert_rules").insert(rule)

    def remove_rule(self, name: str) -> None:
        self.db.execute("DELETE FROM alert_rules WHERE name = ?", [name])

    # -- events -----------------------------------------------------------------------
    def open_events(self) -> list[dict[str, Any]]:
        """Events not yet ended (still firing when the daemon stopped, or now)."""
        return list(self.db["alert_events"].rows_where("ended IS NULL"))

    def events(self, active: bool, limit: int) -> list[dict[str, Any]]:
        """The newest events first; only open ones when ``active``."""
        where = "ended IS NULL" if active else None
        return list(self.db["alert_events"].rows_where(where, order_by="id DESC", limit=limit))

    def open_event(self, row: dict[str, Any]) -> int:
        """Insert a firing event; its id."""
        table = self.db.table("alert_events").insert(row)
        return int(table.last_pk)  # type: ignore[arg-type]

    def close_event(
        self, event_id: int, ended: float, stats: tuple[Any, ...], message: str
    ) -> None:
        """End an event with its final (min, avg, max, samples, last) and message."""
        self.db.execute(
            f"UPDATE alert_events SET ended = ?, {_STATS}, message = ? WHERE id = ?",
            [ended, *stats, message, event_id],
        )

    def update_stats(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """(min, avg, max, samples, last, id) of open events, in one transaction."""
        with self.db.conn:
            self.db.conn.execute("BEGIN")
            self.db.conn.executemany(f"UPDATE alert_events SET {_STATS} WHERE id = ?", rows)

    def active_by_severity(self) -> dict[str, int]:
        """Open events counted by severity (severities with none are absent)."""
        rows = self.db.execute(
            "SELECT severity, COUNT(*) FROM alert_events WHERE ended IS NULL GROUP BY severity"
        ).fetchall()
        return {str(severity): int(count) for severity, count in rows}


def tasks_by_status(db: sqlite_utils.Database) -> dict[str, int]:
    """Exec tasks counted by status, for the Prometheus export.

    It reads the tasks table of gdos/daemon/store.py; it belongs among the
    store's query methods and lives here until that module takes it.
    """
    rows = db.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status").fetchall()
    return {str(status): int(count) for status, count in rows}
