"""The namespace harness itself: stale namespaces of a killed run are removed, others kept."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.faults import netns


@pytest.fixture
def can_netns() -> None:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)


def test_remove_stale_takes_only_namespaces_whose_creator_is_gone(can_netns: None) -> None:
    gone = _dead_pid()
    stale, ours = f"{netns.PREFIX}{gone}-test-x", f"{netns.PREFIX}{os.getpid()}-test-y"
    for name in (stale, ours):
        netns.run("ip", "netns", "add", name)
    try:
        removed = netns.remove_stale()
        assert stale in removed and stale not in netns.namespaces()
        assert ours in netns.namespaces()
    finally:
        for name in (stale, ours):
            if name in netns.namespaces():
                netns.delete(name)


def test_lab_is_removed_with_everything_running_inside(can_netns: None) -> None:
    lab = netns.NatLab.create()
    sleeper = subprocess.Popen([*lab.exec_in(lab.agent_ns), "sleep", "600"])
    try:
        lab.remove()
        assert sleeper.wait(10) != 0  # killed by the teardown, not left behind
        assert not any(ns.startswith(lab.tag) for ns in netns.namespaces())
    finally:
        sleeper.kill()
        lab.remove()


def _dead_pid() -> int:
    """The pid of a process that has exited (a killed test run's, say)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
