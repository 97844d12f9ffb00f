"""The mock cluster against a real daemon, and its protocol against a bare ROUTER."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import zmq
import zmq.asyncio

from gdos.errors import ExitCode
from gdos.wire import protocol
from tests.harness import Fleet, free_port, short_home, wait_for

AGENTS = 50


def _sim_online(fleet: Fleet) -> int:
    return sum(1 for n, v in fleet.nodes().items() if n.startswith("sim-") and v["online"])


def test_mock_cluster_enrolls_and_runs_exec(fleet: Fleet) -> None:
    token = fleet.token("--uses", str(AGENTS))
    home = short_home("gm-")
    fleet.homes.append(home)
    argv = [sys.executable, "-m", "gdos.cli.main", "dev", "mock-cluster"]
    argv += ["--agents", str(AGENTS), "--join", token]
    # In fleet.agents so teardown kills its process group and a failure shows its log.
    mock = fleet.agents["mock-cluster"] = fleet._spawn("mock-cluster", argv, home)

    wait_for(lambda: _sim_online(fleet) == AGENTS, 15, f"{AGENTS} sim nodes online")
    wait_for(lambda: "simulated agents online in" in mock.log_text(), 5, "the online line")
    assert f"{AGENTS} simulated agents online in" in mock.log_text()

    echo = fleet.gdos("exec", "--match", "sim-*", "--json", "--", "echo", "hi")
    assert echo.returncode == 0, echo.stderr
    hosts = json.loads(echo.stdout)["hosts"]
    assert len(hosts) == AGENTS
    assert {h["status"] for h in hosts} == {"succeeded"}
    assert {h["stdout"] for h in hosts} == {"hi\n"}
    assert {h["exit_code"] for h in hosts} == {0}

    false = fleet.gdos("exec", "--match", "sim-*", "--json", "--", "false")
    assert false.returncode == ExitCode.EXEC_FAILED, false.stderr
    hosts = json.loads(false.stdout)["hosts"]
    assert len(hosts) == AGENTS
    assert {(h["status"], h["exit_code"]) for h in hosts} == {("failed", 1)}

    slow = fleet.gdos("exec", "sim-00000", "sim-00001", "-t", "0.3s", "--json", "--", "sleep", "9")
    assert slow.returncode == ExitCode.EXEC_TIMED_OUT, slow.stderr
    assert {h["status"] for h in json.loads(slow.stdout)["hosts"]} == {"timed_out"}


# -- the simulated agent's side of the protocol, with the test as the daemon -----------


class FakeDaemon:
    """A bare ROUTER speaking just enough of the daemon's side."""

    def __init__(self, ctx: zmq.asyncio.Context, port: int) -> None:
        self.socket = ctx.socket(zmq.ROUTER)
        self.socket.linger = 0
        self.socket.bind(f"tcp://127.0.0.1:{port}")
        self.rid = b""

    async def expect(self, kind: str) -> protocol.Message:
        while True:
            rid, data = await asyncio.wait_for(self.socket.recv_multipart(), 5)
            self.rid = rid
            msg = protocol.decode(data)
            if msg.kind == kind:
                return msg
            assert msg.kind in ("heartbeat", "metrics", "exec.started"), msg

    async def send(self, kind: str, body: dict[str, Any]) -> None:
        await self.socket.send_multipart([self.rid, protocol.encode(kind, body)])


def test_sim_agent_protocol() -> None:
    from gdos.devtools.mock_cluster import Cluster, make_config

    port = free_port()
    config = make_config(1, daemon=f"127.0.0.1:{port}", insecure=True, start_index=7)
    config_body = {"heartbeat_interval": 0.2, "metrics_interval": 0.2}

    async def scenario() -> None:
        ctx = zmq.asyncio.Context()
        daemon = FakeDaemon(ctx, port)
        cluster = Cluster(config)
        closed = False
        try:
            await cluster.start()
            hello = await daemon.expect("hello")
            assert protocol.routing_name(daemon.rid) == hello.body["name"] == "sim-00007"
            assert hello.body["facts"]["hostname"] == "sim-00007"
            await daemon.send("welcome", {"config": config_body, "state": "disabled"})
            await daemon.expect("heartbeat")
            await daemon.expect("metrics")
            assert cluster.welcomed == 1

            run = {"task": 1, "argv": ["echo", "hi"], "timeout": 5.0, "credit": 2}
            await daemon.send("exec.run", run)
            refused = await daemon.expect("exec.result")
            assert refused.body["status"] == "unreachable"
            assert refused.body["reason"] == "node is disabled; the agent refuses work"
            await daemon.send("exec.result.ack", {"task": 1})

            await daemon.send("config", {"config": config_body, "state": "normal"})
            await daemon.send("exec.run", {**run, "task": 2})
            output = await daemon.expect("exec.output")
            assert output.body["data"] == b"hi\n" and output.body["seq"] == 1
            result = await daemon.expect("exec.result")
            assert (result.body["status"], result.body["exit_code"]) == ("succeeded", 0)
            assert result.body["stdout"] == b"hi\n"

            # Unacknowledged: sent again after the next welcome.
            await daemon.send("rehello", {})
            await daemon.expect("hello")
            await daemon.send("welcome", {"config": config_body, "state": "normal"})
            again = await daemon.expect("exec.result")
            assert again.body["task"] == 2
            await daemon.send("exec.result.ack", {"task": 2})

            await daemon.send("exec.run", {**run, "task": 3, "argv": ["sleep", "30"]})
            await daemon.expect("exec.started")
            await daemon.send("exec.cancel", {"task": 3})
            canceled = await daemon.expect("exec.result")
            assert canceled.body["status"] == "canceled"

            # Stopping says goodbye, as the real agent does on SIGTERM.
            cluster.close()
            closed = True
            bye = await daemon.expect("bye")
            assert bye.body["reason"] == "the agent is stopping"
        finally:
            if not closed:
                cluster.close()
            daemon.socket.close()
            ctx.term()

    asyncio.run(scenario())
