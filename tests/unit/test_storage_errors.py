"""Storage failures are told apart from bugs; one bad host row never costs the batch."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from gdos.daemon.config import check_mesh_address
from gdos.daemon.storage import storage_failure
from gdos.daemon.store import Store
from gdos.errors import ErrorCode, GdosError


def _sqlite_error(code: int, text: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(text)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


def test_full_disk_and_io_errors_are_storage_failed_with_path_and_reason(tmp_path: Path) -> None:
    db = tmp_path / "gdos.db"
    full = storage_failure(_sqlite_error(sqlite3.SQLITE_FULL, "database or disk is full"), db)
    assert full is not None and full.code == ErrorCode.STORAGE_FAILED
    assert str(db) in full.message and "No space left on device" in full.message
    io = storage_failure(_sqlite_error(778, "disk I/O error"), db)  # SQLITE_IOERR_WRITE
    assert io is not None and "Input/output error" in io.message
    upload = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "up.part"))
    failure = storage_failure(upload, db)
    assert failure is not None and "up.part" in failure.message


def test_other_errors_are_not_storage_failures(tmp_path: Path) -> None:
    db = tmp_path / "gdos.db"
    assert storage_failure(_sqlite_error(sqlite3.SQLITE_ERROR, "no such table: x"), db) is None
    assert storage_failure(OverflowError("int too large"), db) is None
    assert storage_failure(OSError(errno.ENOENT, "missing"), db) is None
    assert storage_failure(GdosError(ErrorCode.INTERNAL, "bug"), db) is None


def test_a_row_that_cannot_be_stored_is_refused_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "gdos.db")
    hosts = [{"node": n, "status": "running"} for n in ("a", "b", "c")]
    task = store.create_task("exec", ["true"], {}, "me", hosts)
    refused = store.update_hosts(
        [
            {"task_id": task, "node": "a", "status": "succeeded", "exit_code": 0},
            {"task_id": task, "node": "b", "status": "succeeded", "exit_code": 2**63 + 5},
            {"task_id": task, "node": "c", "status": "failed", "exit_code": 1},
        ]
    )
    assert list(refused) == [1] and "OverflowError" in refused[1]
    rows = {h["node"]: (h["status"], h["exit_code"]) for h in store.task_hosts(task)}
    assert rows == {"a": ("succeeded", 0), "b": ("running", None), "c": ("failed", 1)}
    store.close()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("tcp://0.0.0.0:7420", "tcp://0.0.0.0:7420"),
        ("127.0.0.1:7500", "tcp://127.0.0.1:7500"),
        ("tcp://*:7420", "tcp://*:7420"),
        ("tcp://[::1]:7420", "tcp://[::1]:7420"),
        ("tcp://gdos-1.example:7420", "tcp://gdos-1.example:7420"),
    ],
)
def test_mesh_addresses_accepted(given: str, expected: str) -> None:
    assert check_mesh_address(given) == expected


@pytest.mark.parametrize(
    "bogus",
    ["bogus", "tcp://127.0.0.1", "udp://1.2.3.4:5", "tcp://h:0", "tcp://h:70000", "tcp://[zz]:1"],
)
def test_bad_mesh_addresses_refused(bogus: str) -> None:
    with pytest.raises(GdosError) as refused:
        check_mesh_address(bogus)
    assert refused.value.code == ErrorCode.INVALID_ARGUMENT
