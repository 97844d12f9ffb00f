"""Durable rows of the services concern: packages, systems, modules, instances.

The same SQLite database as ``Store`` (migration 3); kept apart so the
services code reads as one concern. Every state change an agent reports is
also appended to ``service_events``, the history ``gdos status`` and the
``--wait`` displays are built from. Instance writes go through ``atomic``
(raw SQL inside one savepoint), so a whole agent report is stored or none of
it is, and the daemon acknowledges only what is stored.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import sqlite_utils

from gdos.daemon.store import Store
from gdos.errors import ErrorCode, GdosError

INSTANCE_COLUMNS = frozenset(
    {"kind", "package", "state", "pid", "started", "restarts", "version", "sha256"}
    | {"previous_version", "error"}
)
_SAVEPOINTS = itertools.count(1)


class Catalog:
    def __init__(self, store: Store) -> None:
        self.db, self.path = store.db, store.path

    def _table(self, name: str) -> sqlite_utils.db.Table:
        return self.db.table(name)

    # -- packages -----------------------------------------------------------
    def add_package(self, row: dict[str, Any]) -> None:
        values = {**row, "manifest": json.dumps(row["manifest"])}
        self._table("packages").insert(values)

    def packages(self, name: str | None = None) -> list[dict[str, Any]]:
        where, args = ("name = ?", [name]) if name else (None, [])
        rows = self.db["packages"].rows_where(where, args, order_by="name, pushed_at")
        return [_package_row(r) for r in rows]

    def package(self, name: str, version: str | None = None) -> dict[str, Any]:
        """One package version; the most recently pushed one when ``version`` is None."""
        if version:
            rows = list(self.db["packages"].rows_where("name = ? AND version = ?", [name, version]))
        else:
            rows = list(
                self.db["packages"].rows_where(
                    "name = ?", [name], order_by="pushed_at DESC", limit=1
                )
            )
        if not rows:
            what = f"{name}@{version}" if version else name
            raise GdosError(
                ErrorCode.PACKAGE_UNKNOWN,
                f"no package {what}; push it with 'gdos package push FILE.zip' "
                "or see 'gdos package list'.",
            )
        return _package_row(rows[0])

    def delete_package(self, name: str, version: str) -> None:
        self.db.execute("DELETE FROM packages WHERE name = ? AND version = ?", [name, version])

    def sha_in_use(self, sha256: str) -> bool:
        """Whether any package row still points at these bytes."""
        return bool(self.db.execute("SELECT 1 FROM packages WHERE sha256 = ?", [sha256]).fetchone())

    def instances_using(self, package: str, version: str) -> list[dict[str, Any]]:
        rows = self.db["instances"].rows_where(
            "package = ? AND (version = ? OR previous_version = ?) AND state != 'destroyed'",
            [package, version, version],
        )
        return list(rows)

    # -- systems and modules ----------------------------------------------------
    def create_system(self, name: str) -> None:
        if self.db.execute("SELECT 1 FROM systems WHERE name = ?", [name]).fetchone():
            raise GdosError(ErrorCode.ALREADY_EXISTS, f"system {name} already exists.")
        self._table("systems").insert({"name": name, "created": time.time()})

    def system_names(self) -> list[str]:
        return [r["name"] for r in self.db["systems"].rows_where(order_by="name")]

    def has_system(self, name: str) -> bool:
        return bool(self.db.execute("SELECT 1 FROM systems WHERE name = ?", [name]).fetchone())

    def modules(self, system: str) -> list[dict[str, Any]]:
        rows = self.db["modules"].rows_where("system = ?", [system], order_by="name")
        return [_module_row(r) for r in rows]

    def save_module(self, row: dict[str, Any]) -> None:
        values = {
            **row,
            "overrides": json.dumps(row.get("overrides") or {}),
            "after": json.dumps(row.get("after") or []),
        }
        self._table("modules").upsert(values, pk=("system", "name"))

    def delete_system(self, name: str, module: str | None) -> None:
        if module:
            self.db.execute("DELETE FROM modules WHERE system = ? AND name = ?", [name, module])
        else:
            self.db.execute("DELETE FROM systems WHERE name = ?", [name])

    # -- instances ----------------------------------------------------------------
    def instances(
        self, system: str | None = None, module: str | None = None, node: str | None = None
    ) -> list[dict[str, Any]]:
        clauses, args = ["state != 'destroyed'"], []
        for column, value in (("system", system), ("module", module), ("node", node)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        rows = self.db["instances"].rows_where(
            " AND ".join(clauses), args, order_by="system, module, node"
        )
        return list(rows)

    def instance(self, system: str, module: str, node: str) -> dict[str, Any] | None:
        rows = list(
            self.db["instances"].rows_where(
                "system = ? AND module = ? AND node = ?", [system, module, node]
            )
        )
        return rows[0] if rows else None

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """All the instance writes inside happen, or none does (savepoints nest).

        Only raw statements belong inside: sqlite-utils' table helpers commit.
        """
        name = f"w{next(_SAVEPOINTS)}"
        outermost = not self.db.conn.in_transaction
        self.db.execute(f"SAVEPOINT {name}")
        try:
            yield
            self.db.execute(f"RELEASE {name}")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute(f"ROLLBACK TO {name}")
                self.db.execute(f"RELEASE {name}")
            if outermost and self.db.conn.in_transaction:  # a failed commit stays open
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            raise

    def set_instance(self, key: tuple[str, str, str], fields: dict[str, Any]) -> bool:
        """Create or update one instance row; append an event on a real transition.

        A transition is a new state, error or process (pid): a report that
        repeats what is stored writes nothing. Returns whether anything an
        operator would see changed.
        """
        system, module, node = key
        fields = {k: v for k, v in fields.items() if k in INSTANCE_COLUMNS}
        with self.atomic():
            old = self.instance(system, module, node)
            if old is not None and all(old.get(k) == v for k, v in fields.items()):
                return False
            now = time.time()
            values = {"system": system, "module": module, "node": node, **fields, "updated": now}
            if old is None:
                values.setdefault("state", "unknown")
                columns = ", ".join(values)
                marks = ", ".join("?" for _ in values)
                self.db.execute(
                    f"INSERT INTO instances ({columns}) VALUES ({marks})", list(values.values())
                )
            else:
                changes = {k: v for k, v in values.items() if k not in ("system", "module", "node")}
                assignments = ", ".join(f"{k} = ?" for k in changes)
                self.db.execute(
                    f"UPDATE instances SET {assignments}"
                    " WHERE system = ? AND module = ? AND node = ?",
                    [*changes.values(), system, module, node],
                )
            new = {**(old or {}), **values}
            was = (old["state"], old["error"], old["pid"]) if old else None
            if was != (new.get("state"), new.get("error"), new.get("pid")):
                self.db.execute(
                    "INSERT INTO service_events (time, system, module, node, state, error,"
                    " version, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [now, system, module, node, new["state"], *_versioned(new)],
                )
        return True

    def delete_instance(self, system: str, module: str, node: str) -> None:
        with self.atomic():
            self.db.execute(
                "DELETE FROM instances WHERE system = ? AND module = ? AND node = ?",
                [system, module, node],
            )

    def events(
        self,
        system: str | None = None,
        module: str | None = None,
        limit: int = 100,
        after: int | None = None,
    ) -> list[dict[str, Any]]:
        """The last ``limit`` events, oldest first; with ``after``, the first ``limit``
        events whose id is greater (how a follower catches up without a gap)."""
        clauses, args = [], []
        for column, value in (("system", system), ("module", module), ("id >", after)):
            if value is not None:
                clauses.append(f"{column} ?" if column.endswith(">") else f"{column} = ?")
                args.append(value)
        where = " AND ".join(clauses) or None
        if after is not None:
            return list(
                self.db["service_events"].rows_where(where, args, order_by="id", limit=limit)
            )
        rows = self.db["service_events"].rows_where(where, args, order_by="id DESC", limit=limit)
        return list(reversed(list(rows)))


def _versioned(row: dict[str, Any]) -> list[Any]:
    return [row.get("error"), row.get("version"), row.get("pid")]


def _package_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "manifest": json.loads(row["manifest"])}


def _module_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "overrides": json.loads(row.get("overrides") or "{}"),
        "after": json.loads(row.get("after") or "[]"),
    }
