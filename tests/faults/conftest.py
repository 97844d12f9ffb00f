"""Fixtures for fault tests: a NAT lab of network namespaces and a fleet inside it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults import netns
from tests.faults.netns import DAEMON_ADDR, NatLab
from tests.harness import Fleet


@pytest.fixture
def nat_lab() -> Iterator[NatLab]:
    """Daemon, router and agent namespaces, removed at teardown whatever happened.

    Skipped, with the reason, only where namespaces cannot be created (not
    root); the CI machine runs as root and can.
    """
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    lab = NatLab.create()
    try:
        yield lab
    finally:
        lab.remove()


@pytest.fixture
def nat_fleet(nat_lab: NatLab) -> Iterator[Fleet]:
    """A started daemon inside the lab's daemon namespace; agents are added by the test.

    The CLI runs outside every namespace: it talks to the daemon over the unix
    socket in GDOS_HOME, which a path reaches from any network namespace.
    """
    fleet = Fleet(host=DAEMON_ADDR, daemon_wrap=nat_lab.exec_in(nat_lab.daemon_ns))
    try:
        fleet.start_daemon()
        yield fleet
    finally:
        fleet.close()
