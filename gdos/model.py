"""The one vocabulary of gdos: every state and status, and what a node state refuses.

The daemon, the agent, the simulator, the CLI and the dashboard all speak of
node states, instance states and exec statuses. They are declared here once,
as string enums (a member equals its string, so stored rows and wire bodies
need no conversion), together with the single policy of which action a node
refuses in which state. The daemon checks it before sending and the agent
checks it again on arrival; both call :func:`refusal`, so they cannot disagree.
"""

from __future__ import annotations

from enum import StrEnum

from gdos.errors import ErrorCode, GdosError


class NodeState(StrEnum):
    """The operator's setting for a node (``gdos node drain/disable/enable``)."""

    NORMAL = "normal"
    MAINTENANCE = "maintenance"  # drained: finishes what runs, takes no new work
    DISABLED = "disabled"  # stops its instances and refuses all work


class InstanceState(StrEnum):
    """What one instance (system/module@node) is doing, as its agent reports it."""

    DEPLOYING = "deploying"  # the daemon sent a deploy; no answer yet
    INSTALLING = "installing"  # the agent is fetching and unpacking the package
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    BACKOFF = "backoff"  # exited; the restart policy waits before starting again
    FAILED = "failed"  # exited and the restart policy gave up
    ERROR = "error"  # an operation on it failed (deploy, start...)
    DESTROYED = "destroyed"
    UNKNOWN = "unknown"  # its node has not re-reported since the daemon started


# A process exists (or is about to) in these states.
LIVE_STATES = frozenset({InstanceState.RUNNING, InstanceState.STARTING, InstanceState.STOPPING})
# An instance in these states needs an operator (alert ``instance-failed``).
FAILED_STATES = frozenset({InstanceState.FAILED, InstanceState.ERROR})


class HostStatus(StrEnum):
    """How one host of an exec task ended (or that it still runs)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"
    UNREACHABLE = "unreachable"


class TaskStatus(StrEnum):
    """An exec task as a whole: running until every host has a final status."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


FINAL_HOST_STATUSES = frozenset(HostStatus) - {HostStatus.RUNNING}


class ShellStatus(StrEnum):
    """A remote shell session, as the daemon records it in the store."""

    OPENING = "opening"  # asked of the agent; no answer yet
    RUNNING = "running"
    EXITED = "exited"  # the program ended (its exit code is kept)
    REFUSED = "refused"  # the agent would not open it
    CLOSED = "closed"  # the operator or the client ended it
    FAILED = "failed"  # the node was not connected, never started it, or the client broke credit
    TIMED_OUT = "timed_out"  # idle past its --idle-timeout
    LOST = "lost"  # the node or the daemon went away mid-session


class Action(StrEnum):
    """The kinds of work a node state may refuse."""

    DEPLOY = "deploy"
    START = "start"
    RESTART = "restart"
    ROLLBACK = "rollback"
    STOP = "stop"
    DESTROY = "destroy"
    ADOPT = "adopt"
    EXEC = "exec"
    SHELL = "shell"


# New work: refused in maintenance (exec only without --include-drained).
_NEW_WORK = frozenset(
    {Action.DEPLOY, Action.START, Action.RESTART, Action.ROLLBACK, Action.ADOPT, Action.EXEC}
)
# Allowed even on a disabled node: removing what is there.
_ALWAYS_ALLOWED = frozenset({Action.DESTROY})


def refusal(
    state: str, action: str, node: str, *, allow_drained: bool = False, by_agent: bool = False
) -> GdosError | None:
    """Why a node in ``state`` refuses ``action``, or None when it accepts it.

    ``allow_drained`` is exec's ``--include-drained``. ``by_agent`` words the
    sentence for the agent's own check (it cannot tell the operator which
    daemon command to run, only that it refused).
    """
    act = Action(action)
    if state == NodeState.DISABLED and act not in _ALWAYS_ALLOWED:
        what = "shells" if act is Action.SHELL else "work"
        if by_agent:
            return GdosError(ErrorCode.NODE_DISABLED, f"node is disabled; the agent refuses {what}")
        return GdosError(
            ErrorCode.NODE_DISABLED,
            f"node {node} is disabled; run 'gdos node enable {node}' to allow {what}.",
        )
    drained_ok = act is Action.EXEC and allow_drained
    if state == NodeState.MAINTENANCE and act in _NEW_WORK and not drained_ok:
        if by_agent:
            return GdosError(
                ErrorCode.NODE_MAINTENANCE, "node is in maintenance; the agent takes no new work"
            )
        hint = "add --include-drained or " if act is Action.EXEC else "end it with "
        return GdosError(
            ErrorCode.NODE_MAINTENANCE,
            f"node {node} is in maintenance and takes no new work; "
            f"{hint}'gdos node enable {node}'.",
        )
    return None
