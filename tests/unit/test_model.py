"""The one vocabulary: enums equal their stored strings, and one refusal policy."""

from __future__ import annotations

import itertools

import pytest

from gdos.errors import ErrorCode
from gdos.model import (
    FINAL_HOST_STATUSES,
    Action,
    HostStatus,
    InstanceState,
    NodeState,
    refusal,
)


def test_members_are_their_strings() -> None:
    """Rows and wire bodies hold plain strings; an enum member must compare equal."""
    assert NodeState.MAINTENANCE == "maintenance"
    assert InstanceState("running") is InstanceState.RUNNING
    assert f"{HostStatus.TIMED_OUT}" == "timed_out"
    assert HostStatus.RUNNING not in FINAL_HOST_STATUSES


@pytest.mark.parametrize(
    ("state", "action", "allow_drained", "code"),
    [
        ("normal", "deploy", False, None),
        ("maintenance", "deploy", False, ErrorCode.NODE_MAINTENANCE),
        ("maintenance", "rollback", False, ErrorCode.NODE_MAINTENANCE),
        ("maintenance", "adopt", False, ErrorCode.NODE_MAINTENANCE),
        ("maintenance", "stop", False, None),
        ("maintenance", "destroy", False, None),
        ("maintenance", "shell", False, None),
        ("maintenance", "exec", False, ErrorCode.NODE_MAINTENANCE),
        ("maintenance", "exec", True, None),
        ("disabled", "exec", True, ErrorCode.NODE_DISABLED),
        ("disabled", "shell", False, ErrorCode.NODE_DISABLED),
        ("disabled", "stop", False, ErrorCode.NODE_DISABLED),
        ("disabled", "destroy", False, None),
    ],
)
def test_refusal_policy(state: str, action: str, allow_drained: bool, code: ErrorCode) -> None:
    found = refusal(state, action, "n1", allow_drained=allow_drained)
    assert (found.code if found else None) == code


def test_daemon_and_agent_wordings_agree_on_every_case() -> None:
    """The daemon's check and the agent's check are one policy, worded twice."""
    for state, action, drained in itertools.product(NodeState, Action, (False, True)):
        daemon = refusal(state, action, "n1", allow_drained=drained)
        agent = refusal(state, action, "n1", allow_drained=drained, by_agent=True)
        assert (daemon and daemon.code) == (agent and agent.code), (state, action, drained)
        if daemon is not None:
            assert "gdos node enable n1" in daemon.message
            assert agent is not None and "the agent" in agent.message
