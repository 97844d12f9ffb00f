"""The daemon's own log: throttled repeats, and a rotated file in the background.

``gdos daemon run`` logs to stderr (a service manager keeps it); ``gdos daemon
start`` passes ``--log-file`` so the daemon writes and rotates the file itself
(size and count from ``--log-max-mb`` and ``--log-keep``). Standard output and
error follow the current file after each rotation, so a crash report written
straight to stderr still lands in the log an operator reads.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from gdos.daemon.guard import RepeatFilter
from gdos.paths import ensure_private_dir

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _RotatingLog(logging.handlers.RotatingFileHandler):
    """Rotates by size and points fds 1 and 2 at the new file."""

    def doRollover(self) -> None:
        super().doRollover()
        _redirect_std(self.stream)

    def _open(self):  # type: ignore[no-untyped-def]
        stream = super()._open()
        os.chmod(self.baseFilename, 0o600)
        return stream


def _redirect_std(stream: object) -> None:
    fileno = getattr(stream, "fileno", None)
    if fileno is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fileno(), 1)
    os.dup2(fileno(), 2)


def setup(level: str, log_file: Path | None, max_bytes: int, keep: int) -> None:
    """Configure the root logger once for the daemon process."""
    handler: logging.Handler
    if log_file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        ensure_private_dir(log_file.parent)
        handler = _RotatingLog(log_file, maxBytes=max_bytes, backupCount=keep)
        _redirect_std(handler.stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
