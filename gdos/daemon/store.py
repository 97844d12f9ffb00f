"""The daemon's durable state in SQLite (WAL), through sqlite-utils.

Metadata and history live here; high-rate data (heartbeats, metrics) does
not. ``last_seen`` is written in batches by the registry. The schema evolves
by numbered migrations recorded in ``PRAGMA user_version``, so an old
database is upgraded in place and a newer one is refused instead of damaged.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlite_utils

from gdos.errors import ErrorCode, GdosError
from gdos.model import HostStatus, TaskStatus

MIGRATIONS: list[str] = [
    # 1: nodes, keys, tokens, exec tasks
    """
    CREATE TABLE nodes (
        name TEXT PRIMARY KEY, key TEXT, state TEXT NOT NULL DEFAULT 'normal',
        facts TEXT NOT NULL DEFAULT '{}', agent_version TEXT, address TEXT,
        first_seen REAL, last_seen REAL
    );
    CREATE TABLE keys (
        key TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
        address TEXT, via TEXT, created REAL NOT NULL, decided REAL
    );
    CREATE INDEX keys_name ON keys(name);
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY, secret BLOB NOT NULL, created REAL NOT NULL,
        expires_at REAL NOT NULL, uses_left INTEGER, used INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE tasks (
        id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, argv TEXT NOT NULL,
        options TEXT NOT NULL DEFAULT '{}', user TEXT, status TEXT NOT NULL,
        created REAL NOT NULL, finished REAL
    );
    CREATE TABLE task_hosts (
        task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
        node TEXT NOT NULL, status TEXT NOT NULL, exit_code INTEGER,
        started REAL, ended REAL, deadline REAL, reason TEXT,
        stdout BLOB NOT NULL DEFAULT x'', stderr BLOB NOT NULL DEFAULT x'',
        stdout_truncated INTEGER NOT NULL DEFAULT 0, stderr_truncated INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (task_id, node)
    );
    CREATE INDEX task_hosts_status ON task_hosts(status);
    """,
    # 2: remote shell sessions (each recording is state/sessions/ID.cast)
    """
    CREATE TABLE shell_sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL, user TEXT,
        remote_user TEXT, argv TEXT NOT NULL DEFAULT '[]', cwd TEXT,
        tty INTEGER NOT NULL DEFAULT 1, rows INTEGER, cols INTEGER,
        status TEXT NOT NULL, exit_code INTEGER, reason TEXT,
        started REAL NOT NULL, ended REAL,
        bytes_in INTEGER NOT NULL DEFAULT 0, bytes_out INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX shell_sessions_status ON shell_sessions(status);
    """,
    # 3: packages, systems, modules, instances and their state history
    """
    CREATE TABLE packages (
        name TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL,
        size INTEGER NOT NULL, manifest TEXT NOT NULL, description TEXT,
        pushed_at REAL NOT NULL, pushed_by TEXT, PRIMARY KEY (name, version)
    );
    CREATE TABLE systems (name TEXT PRIMARY KEY, created REAL NOT NULL);
    CREATE TABLE modules (
        system TEXT NOT NULL REFERENCES systems(name) ON DELETE CASCADE,
        name TEXT NOT NULL, package TEXT NOT NULL, version TEXT,
        overrides TEXT NOT NULL DEFAULT '{}', after TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (system, name)
    );
    CREATE TABLE instances (
        system TEXT NOT NULL, module TEXT NOT NULL, node TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'managed', package TEXT, state TEXT NOT NULL,
        pid INTEGER, started REAL, restarts INTEGER NOT NULL DEFAULT 0,
        version TEXT, sha256 TEXT, previous_version TEXT, error TEXT,
        updated REAL NOT NULL, PRIMARY KEY (system, module, node)
    );
    CREATE TABLE service_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL,
        system TEXT NOT NULL, module TEXT NOT NULL, node TEXT NOT NULL,
        state TEXT NOT NULL, error TEXT, version TEXT, pid INTEGER
    );
    CREATE INDEX service_events_instance ON service_events(system, module, node, id);
    """,
    # 4: audit trail (append-only, enforced by triggers) and alerts
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, user TEXT,
        action TEXT NOT NULL, target TEXT, result TEXT NOT NULL, detail TEXT
    );
    CREATE INDEX audit_time ON audit(time);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TABLE alert_rules (
        name TEXT PRIMARY KEY, metric TEXT NOT NULL, op TEXT NOT NULL, value REAL NOT NULL,
        for_seconds REAL NOT NULL DEFAULT 0, node_glob TEXT, instance_glob TEXT,
        severity TEXT NOT NULL DEFAULT 'warning', builtin INTEGER NOT NULL DEFAULT 0,
        command TEXT, webhook TEXT, created REAL NOT NULL
    );
    CREATE TABLE alert_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT NOT NULL, target TEXT NOT NULL,
        severity TEXT NOT NULL, started REAL NOT NULL, ended REAL,
        min REAL, avg REAL, max REAL, samples INTEGER NOT NULL DEFAULT 0,
        last_value REAL, message TEXT
    );
    CREATE INDEX alert_events_open ON alert_events(ended);
    """,
    # 5: why a node is drained or disabled, and since when
    """
    ALTER TABLE nodes ADD COLUMN state_reason TEXT;
    ALTER TABLE nodes ADD COLUMN state_since REAL;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


class Store:
    """Typed access to the daemon's tables; every method is one short transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def close(self) -> None:
        self.db.conn.close()

    def _table(self, name: str) -> sqlite_utils.db.Table:
        return self.db.table(name)

    def _migrate(self) -> None:
        current = self.db.execute("PRAGMA user_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise GdosError(
                ErrorCode.INTERNAL,
                f"{self.path} has schema version {current}, newer than this gdos "
                f"({SCHEMA_VERSION}); upgrade gdos or restore an older backup.",
            )
        for number in range(current, SCHEMA_VERSION):
            with self.db.conn:
                self.db.conn.execute("BEGIN")
                self.db.conn.executescript(
                    "SAVEPOINT m;" + MIGRATIONS[number] + f"; PRAGMA user_version={number + 1};"
                    "RELEASE m;"
                )

    # -- keys -------------------------------------------------------------
    def agent_keys(self) -> list[dict[str, Any]]:
        return list(self.db["keys"].rows_where(order_by="name, created"))

    def key(self, key: str) -> dict[str, Any] | None:
        rows = list(self.db["keys"].rows_where("key = ?", [key]))
        return rows[0] if rows else None

    def keys_named(self, name: str) -> list[dict[str, Any]]:
        return list(self.db["keys"].rows_where("name = ?", [name], order_by="created"))

    def record_key(self, key: str, name: str, status: str, address: str, via: str) -> None:
        now = time.time()
        self.db.execute(
            "INSERT OR REPLACE INTO keys (key, name, status, address, via, created, decided)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [key, name, status, address, via, now, now if status != "pending" else None],
        )

    def set_key_status(self, key: str, status: str) -> None:
        self._table("keys").update(key, {"status": status, "decided": time.time()})

    def delete_key(self, key: str) -> None:
        self._table("keys").delete(key)

    def set_keys_status(self, keys: list[str], status: str) -> None:
        """One transaction: every key or none (``gdos key accept --all``)."""
        now = time.time()
        with self.db.conn:
            self.db.conn.execute("BEGIN")
            self.db.conn.executemany(
                "UPDATE keys SET status = ?, decided = ? WHERE key = ?",
                [(status, now, key) for key in keys],
            )

    def count_keys(self, status: str) -> int:
        row = self.db.execute("SELECT count(*) FROM keys WHERE status = ?", [status]).fetchone()
        return int(row[0])

    def drop_oldest_keys(self, status: str, count: int) -> list[dict[str, Any]]:
        """Delete the ``count`` oldest keys in ``status``; returns them."""
        rows = list(
            self.db["keys"].rows_where("status = ?", [status], order_by="created", limit=count)
        )
        with self.db.conn:
            self.db.conn.execute("BEGIN")
            self.db.conn.executemany("DELETE FROM keys WHERE key = ?", [(r["key"],) for r in rows])
        return rows

    # -- tokens -----------------------------------------------------------
    def add_token(self, token_id: str, secret: bytes, expires_at: float, uses: int | None) -> None:
        self._table("tokens").insert(
            {
                "id": token_id,
                "secret": secret,
                "created": time.time(),
                "expires_at": expires_at,
                "uses_left": uses,
                "used": 0,
            }
        )

    def token(self, token_id: str) -> dict[str, Any] | None:
        rows = list(self.db["tokens"].rows_where("id = ?", [token_id]))
        return rows[0] if rows else None

    def tokens(self) -> list[dict[str, Any]]:
        return list(self.db["tokens"].rows_where(order_by="created"))

    def use_token(self, token_id: str) -> None:
        self.db.execute(
            "UPDATE tokens SET used = used + 1, "
            "uses_left = CASE WHEN uses_left IS NULL THEN NULL ELSE uses_left - 1 END "
            "WHERE id = ?",
            [token_id],
        )

    # -- nodes ------------------------------------------------------------
    def nodes(self) -> list[dict[str, Any]]:
        return [_node_row(r) for r in self.db["nodes"].rows_where(order_by="name")]

    def node(self, name: str) -> dict[str, Any] | None:
        rows = list(self.db["nodes"].rows_where("name = ?", [name]))
        return _node_row(rows[0]) if rows else None

    def save_node_hello(
        self, name: str, key: str | None, facts: dict[str, Any], agent_version: str, address: str
    ) -> None:
        """Insert or refresh a node at its hello: one statement (thousands enroll at once)."""
        now = time.time()
        self.db.execute(
            "INSERT INTO nodes (name, key, state, facts, agent_version, address, first_seen,"
            " last_seen) VALUES (?, ?, 'normal', ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET"
            " key = excluded.key, facts = excluded.facts, agent_version ="
            " excluded.agent_version, address = excluded.address, last_seen = excluded.last_seen",
            [name, key, json.dumps(facts), agent_version, address, now, now],
        )

    def set_node_state(self, name: str, state: str, reason: str | None, since: float) -> None:
        values = {"state": state, "state_reason": reason, "state_since": since}
        self._table("nodes").update(name, values)

    def delete_node(self, name: str) -> None:
        self._table("nodes").delete(name)

    def flush_last_seen(self, seen: Iterable[tuple[float, str]]) -> None:
        """One transaction for every node heard from since the last flush."""
        with self.db.conn:
            self.db.conn.execute("BEGIN")
            self.db.conn.executemany("UPDATE nodes SET last_seen = ? WHERE name = ?", list(seen))

    # -- tasks ------------------------------------------------------------
    def create_task(
        self,
        kind: str,
        argv: list[str],
        options: dict[str, Any],
        user: str,
        hosts: list[dict[str, Any]],
    ) -> int:
        with self.db.conn:
            self.db.conn.execute("BEGIN")
            row = [kind, json.dumps(argv), json.dumps(options), user, TaskStatus.RUNNING]
            cursor = self.db.conn.execute(
                "INSERT INTO tasks (kind, argv, options, user, status, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [*row, time.time()],
            )
            task_id = int(cursor.lastrowid or 0)
            self.db.conn.executemany(
                "INSERT INTO task_hosts (task_id, node, status, reason, deadline, started, ended)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        task_id,
                        h["node"],
                        h["status"],
                        h.get("reason"),
                        h.get("deadline"),
                        h.get("started"),
                        h.get("ended"),
                    )
                    for h in hosts
                ],
            )
        return task_id

    def update_hosts(self, rows: list[dict[str, Any]]) -> dict[int, str]:
        """Write a batch of per-host changes in one transaction.

        A row whose values cannot be stored (an out-of-range number from a
        node, say) is skipped alone, inside a savepoint, and returned as
        {index: reason}; the rest of the batch is written. A storage failure
        (full disk) raises and writes nothing, so the caller can retry it all.
        """
        refused: dict[int, str] = {}
        if not rows:
            return refused
        with self.db.conn:
            self.db.conn.execute("BEGIN")
            for index, row in enumerate(rows):
                fields = {k: v for k, v in row.items() if k not in ("task_id", "node")}
                assignments = ", ".join(f"{k} = ?" for k in fields)
                self.db.conn.execute("SAVEPOINT host_row")
                try:
                    self.db.conn.execute(
                        f"UPDATE task_hosts SET {assignments} WHERE task_id = ? AND node = ?",
                        [*fields.values(), row["task_id"], row["node"]],
                    )
                except (
                    OverflowError,
                    ValueError,
                    TypeError,
                    sqlite3.InterfaceError,
                    sqlite3.IntegrityError,
                ) as exc:
                    self.db.conn.execute("ROLLBACK TO host_row")
                    refused[index] = f"{type(exc).__name__}: {exc}"
                self.db.conn.execute("RELEASE host_row")
        return refused

    def finish_task(self, task_id: int, status: str) -> None:
        self._table("tasks").update(task_id, {"status": status, "finished": time.time()})

    def reopen_task(self, task_id: int) -> None:
        self._table("tasks").update(task_id, {"status": TaskStatus.RUNNING, "finished": None})

    def tasks(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT t.*, "
            "(SELECT COUNT(*) FROM task_hosts h WHERE h.task_id = t.id) AS hosts, "
            "(SELECT COUNT(*) FROM task_hosts h WHERE h.task_id = t.id "
            "  AND h.status = ?) AS succeeded "
            "FROM tasks t ORDER BY t.id DESC LIMIT ?",
            [HostStatus.SUCCEEDED, limit],
        )
        columns = [c[0] for c in rows.description]
        return [_task_row(dict(zip(columns, r, strict=True))) for r in rows.fetchall()]

    def task(self, task_id: int) -> dict[str, Any] | None:
        rows = list(self.db["tasks"].rows_where("id = ?", [task_id]))
        if not rows:
            return None
        task = _task_row(rows[0])
        task["hosts"] = self.task_hosts(task_id)
        return task

    def task_hosts(self, task_id: int) -> list[dict[str, Any]]:
        rows = self.db["task_hosts"].rows_where("task_id = ?", [task_id], order_by="node")
        return [_host_row(r) for r in rows]

    def open_hosts(self) -> list[dict[str, Any]]:
        """Hosts of unfinished tasks: what a restarted daemon must still watch."""
        rows = self.db["task_hosts"].rows_where("status IN ('pending', 'running')")
        return [_host_row(r) for r in rows]

    def running_task_ids(self) -> list[int]:
        rows = self.db["tasks"].rows_where("status = ?", [TaskStatus.RUNNING])
        return [r["id"] for r in rows]

    # -- shell sessions ---------------------------------------------------
    def create_shell_session(self, row: dict[str, Any]) -> int:
        """Record a session as it is opened; returns its id (also the recording's name)."""
        values = {**row, "argv": json.dumps(row.get("argv") or [])}
        values.setdefault("status", "opening")
        values.setdefault("started", time.time())
        table = self._table("shell_sessions").insert(values)
        return int(table.last_rowid or 0)

    def update_shell_session(self, session_id: int, fields: dict[str, Any]) -> None:
        self._table("shell_sessions").update(session_id, fields)

    def shell_sessions(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.db["shell_sessions"].rows_where(order_by="id DESC", limit=limit)
        return [_session_row(r) for r in rows]

    def shell_session(self, session_id: int) -> dict[str, Any] | None:
        rows = list(self.db["shell_sessions"].rows_where("id = ?", [session_id]))
        return _session_row(rows[0]) if rows else None

    def close_stale_shell_sessions(self, reason: str) -> int:
        """At start: sessions of a previous daemon run can no longer be live."""
        cursor = self.db.execute(
            "UPDATE shell_sessions SET status = 'lost', reason = ?, "
            "ended = COALESCE(ended, started) WHERE status IN ('opening', 'running')",
            [reason],
        )
        return int(cursor.rowcount)

    # -- audit trail (append-only: migration 4's triggers refuse UPDATE and DELETE) ----
    def append_audit(
        self, user: str, action: str, target: str | None, result: str, detail: Any
    ) -> None:
        text = None if detail is None else json.dumps(detail, default=str)[:4000]
        self.db.execute(
            "INSERT INTO audit (time, user, action, target, result, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [time.time(), user, action, target, result, text],
        )

    def audit_rows(
        self, since: float | None, user: str | None, action: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` matching rows, oldest first (like a log's tail).

        ``action`` is a glob when it has one of ``*?[``; else 'node' also
        matches node.drain, node.rm, ...
        """
        clauses: list[str] = ["1"]
        args: list[Any] = []
        if since is not None:
            clauses.append("time >= ?")
            args.append(since)
        if user:
            clauses.append("user = ?")
            args.append(user)
        if action and any(c in action for c in "*?["):
            clauses.append("action GLOB ?")
            args.append(action)
        elif action:
            clauses.append("(action = ? OR substr(action, 1, ?) = ?)")
            args += [action, len(action) + 1, action + "."]
        where = " AND ".join(clauses)
        query = f"SELECT * FROM audit WHERE {where} ORDER BY id DESC LIMIT ?"
        rows = [dict(r) for r in self.db.query(query, [*args, limit])]
        for row in rows:
            row["detail"] = json.loads(row["detail"]) if row["detail"] else None
        return rows[::-1]

    def carry_audit(self, pre_restore: str | None) -> int:
        """After a restore: append the rows the pre-restore copy has beyond this trail.

        The trail must survive a restore: what happened between the backup and
        the restore is copied (original times) from the pre-restore copy.
        """
        if not pre_restore or not Path(pre_restore).is_file():
            return 0
        self.db.execute("ATTACH DATABASE ? AS pre", [pre_restore])
        try:
            cursor = self.db.execute(
                "INSERT INTO main.audit (time, user, action, target, result, detail)"
                " SELECT time, user, action, target, result, detail FROM pre.audit"
                " WHERE time > (SELECT coalesce(max(time), 0) FROM main.audit) ORDER BY id"
            )
            return int(cursor.rowcount)
        finally:
            self.db.execute("DETACH DATABASE pre")


def _node_row(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["facts"] = json.loads(row.get("facts") or "{}")
    return row


def _task_row(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["argv"] = json.loads(row["argv"])
    row["options"] = json.loads(row.get("options") or "{}")
    return row


def _session_row(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["argv"] = json.loads(row.get("argv") or "[]")
    row["tty"] = bool(row["tty"])
    return row


def _host_row(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["stdout_truncated"] = bool(row["stdout_truncated"])
    row["stderr_truncated"] = bool(row["stderr_truncated"])
    return row
