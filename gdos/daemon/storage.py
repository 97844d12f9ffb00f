"""Telling a storage failure (full disk, I/O error, read-only file system) apart.

A write the disk refused is not a bug in the daemon: the caller gets
``error[storage_failed]`` naming the file and the OS reason, the daemon
keeps serving reads, and the next write after space returns simply works.
Every edge that answers someone (control requests, mesh peers, the exec
result writer) turns such an exception into that one error through
``storage_failure``; anything else stays an internal error.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from gdos.errors import ErrorCode, GdosError

# SQLite primary result codes that mean the disk, not the statement, failed.
_SQLITE_DISK = {
    sqlite3.SQLITE_FULL: errno.ENOSPC,
    sqlite3.SQLITE_IOERR: errno.EIO,
    sqlite3.SQLITE_READONLY: errno.EROFS,
    sqlite3.SQLITE_CANTOPEN: None,
}
_OS_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG}


def storage_failure(exc: BaseException, database: Path) -> GdosError | None:
    """The ``storage_failed`` error for ``exc``, or None when it is something else.

    ``database`` names the file for SQLite errors, which do not carry a path.
    """
    if isinstance(exc, GdosError):
        return exc if exc.code == ErrorCode.STORAGE_FAILED else None
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None or code & 0xFF not in _SQLITE_DISK:
            return None
        os_errno = _SQLITE_DISK[code & 0xFF]
        reason = f"{os.strerror(os_errno)} ({exc})" if os_errno else str(exc)
        return storage_error(database, reason)
    if isinstance(exc, OSError) and exc.errno in _OS_DISK:
        where = Path(exc.filename) if exc.filename else database
        return storage_error(where, os.strerror(exc.errno or errno.EIO))
    return None


def storage_error(path: Path, reason: str) -> GdosError:
    return GdosError(
        ErrorCode.STORAGE_FAILED,
        f"could not write {path}: {reason}; free space on that file system "
        "(the daemon keeps serving reads and resumes writing by itself).",
    )
