"""Size-based rotation of a service's stdout/stderr logs, copytruncate style.

The service holds its log files open (its stdout and stderr were opened with
O_APPEND before it started), so the agent cannot rename them away: the
service would keep writing into the renamed file. Instead, when the live file
outgrows the limit, older copies shift up (``.1`` -> ``.2`` ... the oldest
dropped), the live file is copied to ``.1`` and then truncated to zero.
Because the service writes with O_APPEND, its next write lands at the new
end of file, without a sparse hole.

Known loss window: whatever the service writes between the end of the copy
and the truncate is lost (typically microseconds to milliseconds of output).
That is the price of never touching the service's descriptors.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def needs_rotation(path: Path, max_bytes: int) -> bool:
    """True when ``path`` exists and is larger than ``max_bytes`` (a cheap stat)."""
    try:
        return path.stat().st_size > max_bytes
    except OSError:
        return False


def backup_path(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def rotate(path: Path, backups: int) -> None:
    """Shift ``path.1..`` up, copy ``path`` to ``path.1``, truncate ``path`` to 0.

    With ``backups`` <= 0 the live file is only truncated. ``path.1`` appears
    atomically (copied under a temporary name, then renamed).
    """
    if backups > 0:
        for index in range(backups - 1, 0, -1):
            older = backup_path(path, index)
            if older.exists():
                os.replace(older, backup_path(path, index + 1))
        partial = path.with_name(f".{path.name}.1.tmp")
        shutil.copyfile(path, partial)
        os.replace(partial, backup_path(path, 1))
    os.truncate(path, 0)


def rotate_if_needed(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate ``path`` when it exceeds ``max_bytes``; True when it did."""
    if not needs_rotation(path, max_bytes):
        return False
    rotate(path, backups)
    return True
