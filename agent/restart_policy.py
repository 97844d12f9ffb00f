"""The restart policy: what happens when a managed service exits on its own.

Driven by the manifest's typed ``restart`` (``gdos.pkg.manifest.RestartPolicy``,
the one home of its defaults). ``on-failure`` restarts after a non-zero or
unknown exit status, ``always`` after any exit, ``no`` never. Restarts back
off exponentially (``backoff * 2**n`` capped at ``backoff_max``); more than
``max_retries`` of them inside ``window`` seconds is flapping, and the
instance is given up as ``failed`` for an operator to look at.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from gdos.model import InstanceState
from gdos.pkg.manifest import RestartPolicy


@dataclass(frozen=True)
class Verdict:
    """Where an exited instance settles; ``delay`` is set when it restarts (backoff)."""

    state: InstanceState
    error: str
    delay: float | None = None


def wants_restart(policy: RestartPolicy, code: int | None) -> bool:
    """An unknown exit status (a process we did not spawn) counts as a failure."""
    return policy.policy == "always" or (policy.policy == "on-failure" and code != 0)


def backoff_delay(policy: RestartPolicy, count: int) -> float:
    """Seconds to wait before restart number ``count + 1`` inside the window."""
    return min(policy.backoff * 2 ** min(count, 30), policy.backoff_max)


def judge(
    policy: RestartPolicy, code: int | None, reason: str, recent: deque[float], now: float
) -> Verdict:
    """Decide after an exit; ``recent`` (restart times) is pruned and, on a restart, grown."""
    if not wants_restart(policy, code):
        return Verdict(InstanceState.STOPPED if code == 0 else InstanceState.ERROR, reason)
    while recent and recent[0] < now - policy.window:
        recent.popleft()
    count = len(recent)
    if count >= policy.max_retries:
        giving_up = f"restarted {count} times in {policy.window:g}s; giving up ({reason})"
        return Verdict(InstanceState.FAILED, giving_up)
    delay = backoff_delay(policy, count)
    recent.append(now)
    return Verdict(InstanceState.BACKOFF, f"{reason}; restarting in {delay:g}s", delay)
