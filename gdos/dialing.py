"""How mesh peers dial: address form, reconnect backoff, descriptor limits.

Shared by the agent, the daemon and the mock cluster so that every peer
redials the same way and a thousand agents never reconnect in lockstep.
"""

from __future__ import annotations

import random
import resource

from gdos.errors import ErrorCode, GdosError


def normalize_address(value: str) -> str:
    """``HOST:PORT`` or ``tcp://HOST:PORT`` -> ``tcp://HOST:PORT``."""
    if value.startswith("tcp://"):
        return value
    if ":" not in value:
        raise GdosError(ErrorCode.INVALID_ARGUMENT, f"--daemon {value!r} needs HOST:PORT.")
    return "tcp://" + value


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with 'equal jitter': half fixed, half random."""
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def raise_fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one (one per connection); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return int(soft if soft != resource.RLIM_INFINITY else 1 << 20)
