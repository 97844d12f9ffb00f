"""The audit trail: every change through the real CLI, in order, with user and result."""

from __future__ import annotations

import os
import pwd
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Fleet, wait_for
from tests.integration.services_kit import SLEEPER, ok, package


def trail(fleet: Fleet, *extra: str) -> list[dict[str, Any]]:
    return list(fleet.gdos_json("audit", *extra))


def test_a_sequence_of_changes_is_recorded_in_order(fleet: Fleet, tmp_path: Path) -> None:
    me = pwd.getpwuid(os.getuid()).pw_name
    fleet.start_agent("n1", join=fleet.token("--uses", "1"))
    fleet.wait_online("n1")
    token_id = fleet.gdos_json("token", "list")[0]["id"]
    ok(fleet.gdos("exec", "n1", "--", "true"))
    ok(fleet.gdos("node", "drain", "n1"))
    ok(fleet.gdos("node", "enable", "n1"))
    ok(fleet.gdos("package", "push", str(package(tmp_path, "sleeper", SLEEPER))))
    ok(fleet.gdos("system", "create", "app"))
    ok(fleet.gdos("system", "add", "app", "bg", "--package", "sleeper"))
    ok(fleet.gdos("deploy", "app", "--node", "n1", "--wait"))
    refused = fleet.gdos("node", "disable", "nosuch")
    assert refused.returncode == 4

    expected = [
        (me, "token.create", token_id, "ok"),
        (f"token:{token_id}", "enroll", "n1", "ok"),
        (me, "exec.start", "n1", "ok"),
        (me, "node.drain", "n1", "ok"),
        (me, "node.enable", "n1", "ok"),
        (me, "package.push", "sleeper@1.0.0", "ok"),
        (me, "system.create", "app", "ok"),
        (me, "system.add", "app/bg", "ok"),
        (me, "deploy", "app", "ok"),
        (me, "node.disable", "nosuch", "node_unknown"),
    ]

    def seen() -> list[tuple[Any, ...]]:
        return [(r["user"], r["action"], r["target"], r["result"]) for r in trail(fleet)]

    wait_for(lambda: seen() == expected, 10, f"the trail {expected}")
    rows = trail(fleet)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)
    assert rows[2]["detail"]["argv"] == ["true"] and isinstance(rows[2]["detail"]["task"], int)
    assert rows[8]["detail"] == {"instances": 1, "failed": 0}
    assert "no node named 'nosuch'" in rows[-1]["detail"]["message"]

    # filters: by action (prefix or glob), by user, by age, and the newest N
    actions = [r["action"] for r in trail(fleet, "--action", "node")]
    assert actions == ["node.drain", "node.enable", "node.disable"]
    assert [r["action"] for r in trail(fleet, "--action", "*.create")] == [
        "token.create",
        "system.create",
    ]
    assert [r["action"] for r in trail(fleet, "--user", f"token:{token_id}")] == ["enroll"]
    assert len(trail(fleet, "--since", "1h")) == len(expected)
    assert [r["action"] for r in trail(fleet, "-n", "2")] == ["deploy", "node.disable"]
    table = fleet.gdos("audit")
    assert table.returncode == 0 and "node_unknown" in table.stdout
    assert fleet.gdos("audit", "sessions").returncode == 0  # the sub-commands still work


def test_the_audit_table_refuses_update_and_delete(fleet: Fleet) -> None:
    ok(fleet.gdos("token", "create"))
    db = fleet.daemon_home / "state" / "gdos.db"
    conn = sqlite3.connect(db, timeout=10)
    try:
        assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == 1
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit SET result = 'forged'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit")
        conn.rollback()
        assert conn.execute("SELECT result FROM audit").fetchall() == [("ok",)]
    finally:
        conn.close()
    assert [r["result"] for r in trail(fleet)] == ["ok"]
