"""Backups of the state database, and restoring one.

``create`` copies the live database through SQLite's online backup API, in
a worker thread with its own connection that first pins one read snapshot,
so the copy is consistent and the daemon keeps serving (WAL: the reader
never blocks the daemon's writes). Copies are written owner-only (they hold
join-token secrets), as ``.part`` then renamed, and switched to a
single-file journal so a backup is one self-contained file.

``restore`` never swaps files under a running store. It checks the file
(integrity, schema version not newer than this gdos, the tables of its
version present), keeps a copy of the current database
(``pre-restore-*.db``), stages the file and writes a marker; the daemon then
answers, shuts down cleanly and re-executes itself with the same argv.
At start, before the store opens, ``apply_pending`` swaps the staged file in
(removing the old ``-wal``/``-shm``). Re-executing rebuilds every in-memory
view (registry, key ring, catalog, tasks, alerts) from the restored rows,
exactly as after a restart; agents redial by themselves. A daemon killed
between staging and the swap completes the restore at its next start.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from gdos.daemon.store import MIGRATIONS, SCHEMA_VERSION
from gdos.errors import ErrorCode, GdosError
from gdos.paths import Paths, ensure_private_dir

log = logging.getLogger("gdosd.backups")

STEP_PAGES = 1024
PREFIX = "gdos-"
STAGED = "restore-staging.db"
MARKER = "restore.json"
COUNTED = ("nodes", "keys", "tasks", "packages", "systems", "instances", "alert_rules", "audit")


def backups_dir(paths: Paths) -> Path:
    return paths.state_dir / "backups"


def stamp(now: float | None = None) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now or time.time()))


def copy_database(source: Path, dest: Path) -> None:
    """Consistent online copy of ``source`` into ``dest`` (blocking; run in a thread)."""
    part = dest.with_name(dest.name + ".part")
    part.unlink(missing_ok=True)
    src = sqlite3.connect(str(source), timeout=10)
    try:
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # pin one snapshot
        fd = os.open(part, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        dst = sqlite3.connect(str(part))
        try:
            src.backup(dst, pages=STEP_PAGES)
            dst.execute("PRAGMA journal_mode=DELETE").fetchone()
        finally:
            dst.close()
    finally:
        with contextlib.suppress(sqlite3.Error):
            src.rollback()
        src.close()
    with open(part, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(part, dest)


def inspect(path: Path) -> dict[str, Any]:
    """Check a database file; return its schema version and row counts.

    Refuses (backup_invalid) a file that is not an intact gdos database of
    a schema this gdos can open.
    """
    if not path.is_file():
        raise GdosError(ErrorCode.BACKUP_INVALID, f"{path} is not a file; see 'gdos backup list'.")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            check = conn.execute("PRAGMA integrity_check").fetchone()[0]
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            present = [t for t in COUNTED if t in tables]
            counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in present}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise GdosError(
            ErrorCode.BACKUP_INVALID, f"{path} is not a readable SQLite database ({exc})."
        ) from None
    if check != "ok":
        raise GdosError(ErrorCode.BACKUP_INVALID, f"{path} fails its integrity check: {check}.")
    if not 1 <= version <= SCHEMA_VERSION:
        raise GdosError(
            ErrorCode.BACKUP_INVALID,
            f"{path} has schema version {version}; this gdos reads 1 to {SCHEMA_VERSION} "
            "(a newer backup needs a newer gdos).",
        )
    missing = sorted(required_tables(version) - tables)
    if missing:
        raise GdosError(
            ErrorCode.BACKUP_INVALID,
            f"{path} is not a gdos database: tables {', '.join(missing)} are missing.",
        )
    return {"schema_version": version, "counts": counts}


def required_tables(version: int) -> set[str]:
    """The tables migrations 1..version create (derived, so it never goes stale)."""
    conn = sqlite3.connect(":memory:")
    try:
        for script in MIGRATIONS[:version]:
            conn.executescript(script)
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def describe(path: Path) -> dict[str, Any]:
    info = path.stat()
    version: int | None = None
    with contextlib.suppress(sqlite3.Error):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    return {
        "path": str(path),
        "name": path.name,
        "time": info.st_mtime,
        "size": info.st_size,
        "schema_version": version,
    }


def apply_pending(paths: Paths) -> dict[str, Any] | None:
    """At start, before the store opens: swap a staged restore in. Returns its marker."""
    marker = paths.state_dir / MARKER
    if not marker.exists():
        return None
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        info = {}
    staged = backups_dir(paths) / STAGED
    if staged.exists():
        for suffix in ("-wal", "-shm"):
            Path(str(paths.db) + suffix).unlink(missing_ok=True)
        os.replace(staged, paths.db)
        log.warning(
            "restored %s (the previous database is %s)", info.get("source"), info.get("pre_restore")
        )
    marker.unlink(missing_ok=True)
    return dict(info) if isinstance(info, dict) else {}


def reexec() -> None:
    """Replace this process by a fresh daemon with the same command line."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    # -P: the fresh daemon never imports from its working directory either.
    argv = [sys.executable, "-P", *sys.orig_argv[1:]]
    os.execv(sys.executable, argv)


class Backups:
    def __init__(self, paths: Paths, db: Path, every: float = 0.0, keep: int = 10) -> None:
        self.paths, self.db = paths, db
        self.dir = backups_dir(paths)
        self.every, self.keep = every, keep
        self.restart_requested = False
        self._lock = asyncio.Lock()

    async def create(self, path: str | None = None) -> dict[str, Any]:
        dest = self._destination(path)
        async with self._lock:
            started = time.monotonic()
            await asyncio.to_thread(copy_database, self.db, dest)
        log.info("backup %s written in %.2fs", dest, time.monotonic() - started)
        return {**describe(dest), "seconds": time.monotonic() - started}

    def _destination(self, path: str | None) -> Path:
        if path:
            dest = Path(path)
            if not dest.is_absolute():
                raise GdosError(ErrorCode.INVALID_ARGUMENT, "the backup path must be absolute.")
            if dest.exists():
                raise GdosError(ErrorCode.ALREADY_EXISTS, f"{dest} exists; give a new file name.")
            if not dest.parent.is_dir():
                raise GdosError(ErrorCode.INVALID_ARGUMENT, f"folder {dest.parent} does not exist.")
            return dest
        ensure_private_dir(self.dir)
        base = f"{PREFIX}{stamp()}"
        dest, n = self.dir / f"{base}.db", 1
        while dest.exists():
            dest, n = self.dir / f"{base}-{n}.db", n + 1
        return dest

    def list(self) -> list[dict[str, Any]]:
        if not self.dir.is_dir():
            return []
        files = [p for p in self.dir.glob("*.db") if p.name != STAGED]
        return sorted((describe(p) for p in files), key=lambda d: d["time"])

    def prune(self) -> builtins.list[str]:
        """Keep the newest ``keep`` gdos-*.db files (pre-restore copies are kept)."""
        files = sorted(self.dir.glob(f"{PREFIX}*.db"), key=lambda p: p.stat().st_mtime)
        doomed = files[: max(0, len(files) - self.keep)]
        for path in doomed:
            path.unlink(missing_ok=True)
        return [str(p) for p in doomed]

    async def schedule(self, audit: Any) -> None:
        """Every ``every`` seconds: a backup, then retention."""
        while True:
            await asyncio.sleep(self.every)
            try:
                made = await self.create()
                pruned = self.prune()
                audit.record("gdosd", "backup.create", made["path"], "ok", {"pruned": pruned})
            except Exception as exc:
                log.exception("scheduled backup failed")
                code = getattr(exc, "code", ErrorCode.INTERNAL)
                audit.record("gdosd", "backup.create", None, str(code), {"message": str(exc)})

    async def stage_restore(self, path: str, user: str) -> dict[str, Any]:
        """Check ``path``, keep the current database, stage the file for the swap."""
        source = Path(path)
        if not source.is_absolute():
            raise GdosError(ErrorCode.INVALID_ARGUMENT, "the backup path must be absolute.")
        ensure_private_dir(self.dir)
        staged = self.dir / STAGED
        async with self._lock:
            try:
                await asyncio.to_thread(_copy_private, source, staged)
                info = await asyncio.to_thread(inspect, staged)
            except OSError as exc:
                staged.unlink(missing_ok=True)
                raise GdosError(ErrorCode.BACKUP_INVALID, f"cannot read {path}: {exc}.") from None
            except GdosError as exc:
                staged.unlink(missing_ok=True)
                raise GdosError(exc.code, exc.message.replace(str(staged), path)) from None
            pre = self.dir / f"pre-restore-{stamp()}.db"
            await asyncio.to_thread(copy_database, self.db, pre)
        marker = {
            "source": path,
            "user": user,
            "pre_restore": str(pre),
            "requested": time.time(),
            **info,
        }
        tmp = self.paths.state_dir / (MARKER + ".part")
        tmp.write_text(json.dumps(marker))
        os.replace(tmp, self.paths.state_dir / MARKER)
        self.restart_requested = True
        return {"path": path, "pre_restore": str(pre), **info}


def _copy_private(source: Path, dest: Path) -> None:
    dest.unlink(missing_ok=True)
    fd = os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out, 1024 * 1024)
