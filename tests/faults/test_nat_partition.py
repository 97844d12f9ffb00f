"""An agent behind NAT: enrolls, runs exec, goes offline in a partition, comes back."""

from __future__ import annotations

import json

from tests.faults.netns import AGENT_ADDR, ROUTER_OUTER, NatLab
from tests.harness import Fleet

PARTITION_WAIT = 60.0  # generous: the daemon runs with --offline-after 2 (Fleet's default)


def exec_ip_addr(fleet: Fleet) -> str:
    """``ip -4 -o addr`` run on n1 through the mesh; its stdout."""
    result = fleet.gdos("exec", "n1", "--json", "--", "ip", "-4", "-o", "addr")
    assert result.returncode == 0, result.stderr
    host = json.loads(result.stdout)["hosts"][0]
    assert host["status"] == "succeeded", host
    return str(host["stdout"])


def test_agent_behind_nat_enrolls_execs_and_survives_a_partition(
    nat_lab: NatLab, nat_fleet: Fleet
) -> None:
    agent = nat_fleet.start_agent(
        "n1", join=nat_fleet.token(), wrap=nat_lab.exec_in(nat_lab.agent_ns)
    )
    nat_fleet.wait_online("n1")

    # The daemon sees the router, not the agent: the connection went through NAT.
    assert nat_fleet.gdos_json("node", "show", "n1")["address"] == ROUTER_OUTER
    [key] = nat_fleet.gdos_json("key", "list")
    assert key["status"] == "accepted" and key["address"] == ROUTER_OUTER
    # The command ran inside the agent's namespace, on the far side of the router.
    assert f"inet {AGENT_ADDR}/24" in exec_ip_addr(nat_fleet)

    nat_lab.partition()
    nat_fleet.wait_offline("n1", timeout=PARTITION_WAIT)
    assert agent.alive()  # the link is dead, not the agent
    refused = nat_fleet.gdos("exec", "n1", "--", "true")
    assert refused.returncode == 6, refused.stderr  # unreachable, said at once

    nat_lab.heal()
    nat_fleet.wait_online("n1", timeout=PARTITION_WAIT)
    assert f"inet {AGENT_ADDR}/24" in exec_ip_addr(nat_fleet)
    assert nat_fleet.gdos_json("node", "show", "n1")["address"] == ROUTER_OUTER
