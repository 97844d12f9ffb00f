"""Backup while the daemon works, restore, and the state is exactly the backup's."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.harness import Fleet, wait_for
from tests.integration.services_kit import SLEEPER, ok, package

# table -> the columns that hold state (nodes refresh facts and last_seen on every hello)
COMPARED = {
    "nodes": "name, key, state",
    "keys": "*",
    "tokens": "*",
    "tasks": "id, kind, argv, user",
    "packages": "*",
    "systems": "*",
    "modules": "*",
}


def rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {
            table: conn.execute(f"SELECT {columns} FROM {table} ORDER BY 1, 2").fetchall()
            for table, columns in COMPARED.items()
        }
    finally:
        conn.close()


def test_backup_during_exec_then_restore(fleet: Fleet, tmp_path: Path) -> None:
    token = fleet.token()
    fleet.start_agent("n1", join=token)
    fleet.start_agent("n2", join=token)
    fleet.wait_online("n1", "n2")
    ok(fleet.gdos("package", "push", str(package(tmp_path, "sleeper", SLEEPER))))
    ok(fleet.gdos("system", "create", "app"))
    ok(fleet.gdos("system", "add", "app", "bg", "--package", "sleeper"))
    busy = subprocess.Popen(
        [sys.executable, "-m", "gdos.cli.main", "exec", "--all", "-t", "10s", "--", "sleep", "2"],
        env=fleet.env(fleet.daemon_home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: [t["status"] for t in fleet.gdos_json("task", "list")] == ["running"],
            10,
            "exec running",
        )
        made = fleet.gdos_json("backup", "create")  # online, while the task runs
        assert Path(made["path"]).name.startswith("gdos-") and made["schema_version"] >= 4
        at_backup = rows(Path(made["path"]))
        assert [t[0] for t in at_backup["tasks"]] and len(at_backup["nodes"]) == 2

        # changes after the backup, which the restore must undo
        ok(fleet.gdos("node", "drain", "n1"))
        ok(fleet.gdos("system", "create", "later"))
        ok(fleet.gdos("token", "create"))
        ok(fleet.gdos("exec", "n2", "--", "true"))
        assert rows(fleet.daemon_home / "state" / "gdos.db") != at_backup

        listed = fleet.gdos_json("backup", "list")
        assert [b["path"] for b in listed] == [made["path"]] and listed[0]["size"] > 0

        restored = fleet.gdos("backup", "restore", made["path"], "--yes")
        assert restored.returncode == 0, restored.stderr
        assert "restored" in restored.stdout and "2 nodes" in restored.stdout
        assert "daemon answering again" in restored.stdout
    finally:
        busy.wait(30)

    after = rows(fleet.daemon_home / "state" / "gdos.db")
    assert after == at_backup
    assert {n["name"]: n["state"] for n in fleet.gdos_json("node", "list")} == {
        "n1": "normal",
        "n2": "normal",
    }
    assert [s["system"] for s in fleet.gdos_json("system", "list")] == ["app"]
    fleet.wait_online("n1", "n2")  # the agents redial the re-executed daemon
    assert fleet.gdos("exec", "--all", "--", "true").returncode == 0

    pre = [b for b in fleet.gdos_json("backup", "list") if "pre-restore" in b["name"]]
    assert len(pre) == 1  # the state before the restore is kept
    assert "later" in [s[0] for s in rows(Path(pre[0]["path"]))["systems"]]
    backups = [(r["action"], r["target"]) for r in fleet.gdos_json("audit", "--action", "backup")]
    assert backups == [("backup.create", made["path"]), ("backup.restore", made["path"])]
    assert "node.drain" in [r["action"] for r in fleet.gdos_json("audit", "--action", "node")]


def test_restore_refuses_what_is_not_a_gdos_backup(fleet: Fleet, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    future = tmp_path / "future.db"
    conn = sqlite3.connect(future)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    for path, why in ((junk, "not a readable"), (other, "schema version 0"), (future, "99")):
        result = fleet.gdos("backup", "restore", str(path), "--yes")
        assert result.returncode == 1 and "error[backup_invalid]" in result.stderr, path
        assert why in result.stderr
    missing = fleet.gdos("backup", "restore", str(tmp_path / "nope.db"), "--yes")
    assert "error[backup_invalid]" in missing.stderr
    assert fleet.gdos("node", "list").returncode == 0  # still serving, nothing replaced
    assert fleet.gdos_json("backup", "list") == []


def test_scheduled_backups_keep_the_newest(fleet: Fleet) -> None:
    fleet.stop_daemon()
    fleet.start_daemon("--backup-every", "1s", "--backup-keep", "2")

    def scheduled() -> list[dict[str, Any]]:
        return [r for r in fleet.gdos_json("audit", "--user", "gdosd") if r["result"] == "ok"]

    wait_for(lambda: len(scheduled()) >= 3, 15, "three scheduled backups")
    kept = fleet.gdos_json("backup", "list")
    assert 1 <= len(kept) <= 2 and all(b["name"].startswith("gdos-") for b in kept)
    made = [r["target"] for r in scheduled()]
    assert {b["path"] for b in kept} <= set(made)
    assert any(r["detail"]["pruned"] for r in scheduled())
