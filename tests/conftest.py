from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import Fleet


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    """A started daemon on a free loopback port; agents are added by the test."""
    with Fleet() as f:  # closed even when the daemon does not come up
        f.start_daemon()
        yield f


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """On failure, attach the daemon's and agents' logs to the report."""
    if call.when != "call" or call.excinfo is None:
        return
    funcargs = item.funcargs.values() if hasattr(item, "funcargs") else []
    for fleet in [f for f in funcargs if isinstance(f, Fleet)]:  # fleet, nat_fleet, ...
        procs = ([fleet.daemon] if fleet.daemon else []) + list(fleet.agents.values())
        for proc in procs:
            item.add_report_section("call", f"log {proc.name}", proc.log_text()[-4000:])
