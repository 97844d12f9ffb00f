"""`gdos node drain NAME --reason TEXT`: the reason shows wherever the state does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from gdos.tui.app import GdosApp
from textual.pilot import Pilot

from tests.harness import Fleet
from tests.integration.services_kit import ok
from tests.integration.test_tui import SIZE, cell, until

REASON = "disk swap, ticket OPS-42"


@pytest.fixture
def n1(fleet: Fleet) -> Fleet:
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    return fleet


def test_drain_reason_in_list_show_audit_and_gone_after_enable(n1: Fleet) -> None:
    said = ok(n1.gdos("node", "drain", "n1", "--reason", REASON))
    assert said == f"node n1 is now maintenance: {REASON}\n"

    node = n1.nodes()["n1"]
    assert node["state"] == "maintenance" and node["state_reason"] == REASON
    assert node["state_since"] is not None
    shown = ok(n1.gdos("node", "show", "n1"))
    assert "maintenance" in shown and REASON in shown

    entry = n1.gdos_json("audit", "--action", "node.drain")[0]
    assert entry["target"] == "n1" and entry["detail"] == {"reason": REASON}

    # drained means: no new work unless asked for (exec's allow_drained)
    refused = n1.gdos("exec", "n1", "--", "true")
    assert refused.returncode == 6 and "maintenance" in refused.stderr
    assert n1.gdos("exec", "n1", "--include-drained", "--", "true").returncode == 0

    ok(n1.gdos("node", "enable", "n1"))
    node = n1.nodes()["n1"]
    assert node["state"] == "normal" and node["state_reason"] is None
    assert REASON not in ok(n1.gdos("node", "show", "n1"))


def test_a_reason_that_is_not_one_printable_line_is_refused(n1: Fleet) -> None:
    refused = n1.gdos("node", "drain", "n1", "--reason", "two\nlines")
    assert refused.returncode == 2 and refused.stderr.startswith("error[invalid_argument]: ")
    assert n1.nodes()["n1"]["state"] == "normal"


def test_the_dashboard_shows_the_reason(n1: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GDOS_HOME", str(n1.daemon_home))
    app = GdosApp(refresh=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: cell(app, "n1", "state") == "normal", "n1's row")
        ok(await asyncio.to_thread(n1.gdos, "node", "drain", "n1", "--reason", REASON))
        wanted = f"maintenance ({REASON})"
        await until(pilot, lambda: cell(app, "n1", "state") == wanted, "the drain reason")

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await scenario(pilot)

    asyncio.run(main())
