"""Waiting for real processes: conditions with deadlines, never a bare sleep.

Shared by the integration tests and the benchmarks (bench/support.py), which
both start real daemons and agents on loopback and must wait for them to reach
a state. It lives with the tests, not in the installed package.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The deadline for a wait that includes starting processes: a daemon, an agent
# (which re-execs itself), a CLI call per poll. Each costs 0.3-0.5 s of CPU;
# restart-to-online took ~1 s on an idle machine, 6.5 s with 20% of a CPU and
# over 20 s with 7% (a loaded 2-core machine shared by several test runs). A
# deadline only bounds how long a failing test waits, so it is sized for the
# loaded machine; a passing test returns as soon as its condition holds.
START_WAIT = 60.0


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def short_home(prefix: str) -> Path:
    """A temporary folder short enough for a unix socket path inside it."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def wait_for(
    predicate: Callable[[], Any], timeout: float = 20.0, what: str = "", every: float = 0.05
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the condition may not be checkable yet
            last_error = exc
        time.sleep(every)
    extra = f" (last error: {last_error})" if last_error else ""
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what or predicate}{extra}")


def unchanged_for(progress: Path, seconds: float) -> int | None:
    """The count in ``progress`` if it did not move for ``seconds``, else None.

    Used to see that a writer is blocked (flow control) without guessing how
    long to sleep: the caller retries this under its own deadline.
    """

    def read() -> int:
        text = progress.read_text()
        return int(text) if text else -1

    first, deadline = read(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        if read() != first:
            return None
        time.sleep(0.01)
    return first
