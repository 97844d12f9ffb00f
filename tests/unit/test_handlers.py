"""The daemon's one handler table: registration is checked against the wire
declarations, control handlers are audited as they are registered, and the
control socket answers a connection's requests concurrently, within a cap."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gdos.client.control import Client
from gdos.daemon import control
from gdos.daemon.audit import ACTIONS, AuditTrail
from gdos.daemon.control import ControlServer
from gdos.daemon.handlers import LINK_KINDS, Handlers, RegistrationError
from gdos.daemon.store import Store
from gdos.errors import ErrorCode, GdosError
from gdos.wire import protocol


def _plain(kind: str, handler: Any) -> Any:
    return handler


async def _control(conn: Any, msg: Any) -> dict[str, Any]:
    return {"kind": msg.kind}


def _mesh(node: Any, msg: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("node.frobnicate", "no message kind"),  # not declared at all
        ("welcome", "sent by the daemon"),  # mesh, daemon -> agent
        ("stream.data", "sent by the daemon"),  # control, daemon -> client
        ("ok", "sent by the daemon"),
        ("hello", "answered by its link"),
        ("stream.credit", "answered by its link"),
    ],
)
def test_a_kind_the_daemon_cannot_receive_is_refused(kind: str, why: str) -> None:
    with pytest.raises(RegistrationError, match=why):
        Handlers(_plain).register({kind: _control})


def test_a_kind_registered_twice_is_refused() -> None:
    handlers = Handlers(_plain)
    handlers.register({"node.list": _control, "bye": _mesh})
    for kind in ("node.list", "bye"):
        with pytest.raises(RegistrationError, match="has a handler already"):
            handlers.register({kind: _control})


def test_each_handler_lands_in_its_links_table() -> None:
    handlers = Handlers(_plain)
    handlers.register({"node.list": _control, "exec.result": _mesh, "pty.credit": _mesh})
    assert set(handlers.mesh) == {"exec.result", "pty.credit"}
    assert set(handlers.control) == {"node.list"}


def test_a_received_kind_without_a_handler_is_named() -> None:
    handlers = Handlers(_plain)
    received = (protocol.AGENT_SENDS | protocol.CLIENT_SENDS) - LINK_KINDS
    assert handlers.missing() == received
    with pytest.raises(RegistrationError, match="no handler for"):
        handlers.check_complete()


def test_the_daemon_registers_every_kind_it_receives(tmp_path: Path) -> None:
    """Start-up itself runs check_complete: a Daemon that builds is complete."""
    from gdos.daemon.config import DaemonConfig
    from gdos.daemon.server import Daemon
    from gdos.paths import Paths

    paths = Paths(state_dir=tmp_path / "state", runtime_dir=tmp_path / "run", log_dir=tmp_path)
    daemon = Daemon(DaemonConfig(insecure=True), paths)
    try:
        assert daemon.handlers.missing() == set()
        assert set(ACTIONS) <= set(daemon.handlers.control)
        for kind in ACTIONS:  # wrapped by the audit policy, not the concern's own method
            assert not hasattr(daemon.handlers.control[kind], "__self__"), kind
        assert hasattr(daemon.handlers.control["node.list"], "__self__")  # not audited
    finally:
        daemon._release()


def test_every_audited_action_is_a_control_request() -> None:
    assert set(ACTIONS) <= protocol.CLIENT_SENDS


def test_control_handlers_are_audited_as_they_are_registered(tmp_path: Path) -> None:
    store = Store(tmp_path / "gdos.db")
    handlers = Handlers(AuditTrail(store).policy)
    handlers.register({"node.rm": _control, "node.list": _control})
    assert handlers.control["node.list"] is _control  # changes nothing: not wrapped
    conn = type("Conn", (), {"user": "alice"})()
    msg = protocol.Message("node.rm", {"name": "web-1"}, id=1)
    assert asyncio.run(handlers.control["node.rm"](conn, msg)) == {"kind": "node.rm"}
    rows = AuditTrail(store).list()
    assert [(r["user"], r["action"], r["target"], r["result"]) for r in rows] == [
        ("alice", "node.rm", "web-1", "ok")
    ]
    store.close()


# -- the control socket: requests of one connection run concurrently ------------------


async def _serve(tmp_path: Path, table: dict[str, Any]) -> ControlServer:
    handlers = Handlers(_plain)
    handlers.register(table)
    server = ControlServer(tmp_path / "run" / "control.sock", handlers, tmp_path / "db")
    await server.start()
    return server


def test_requests_beyond_the_cap_are_refused_and_the_rest_answered(tmp_path: Path) -> None:
    """Replies come back in another order than the requests; each reaches its own."""

    async def scenario() -> None:
        gates = [asyncio.Event() for _ in range(control.MAX_IN_FLIGHT)]
        started: asyncio.Queue[int] = asyncio.Queue()

        async def slow(conn: Any, msg: Any) -> dict[str, Any]:
            started.put_nowait(msg.body["n"])
            await gates[msg.body["n"]].wait()
            return {"n": msg.body["n"]}

        async def quick(conn: Any, msg: Any) -> dict[str, Any]:
            return {"quick": True}

        server = await _serve(tmp_path, {"node.list": slow, "ping": quick})
        async with await Client.connect(server.path) as client:
            calls = [asyncio.create_task(client.call("node.list", n=n)) for n in range(len(gates))]
            assert {await started.get() for _ in calls} == set(range(len(gates)))
            with pytest.raises(GdosError) as refused:  # one more than the cap
                await client.call("ping")
            assert refused.value.code == ErrorCode.LIMIT_EXCEEDED
            assert "in flight" in refused.value.message
            for gate in reversed(gates):
                gate.set()
                await asyncio.sleep(0)
            replies = await asyncio.gather(*calls)
            assert [r["n"] for r in replies] == list(range(len(gates)))
            assert await client.call("ping") == {"quick": True}  # room again
        await server.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_stream_credit_flows_while_a_request_of_the_connection_waits(tmp_path: Path) -> None:
    """A window of one event: every further event needs a credit frame, read and
    applied while another request of the same connection is still running."""

    async def scenario() -> None:
        release = asyncio.Event()

        async def slow(conn: Any, msg: Any) -> dict[str, Any]:
            await release.wait()
            return {}

        async def feed(conn: Any, msg: Any) -> dict[str, Any]:
            stream = conn.open_stream(msg.id, 1)

            async def pump() -> None:
                for i in range(5):
                    assert await stream.send({"i": i})
                await stream.end()

            conn.spawn(pump())
            return {"stream": msg.id}

        server = await _serve(tmp_path, {"node.list": slow, "node.watch": feed})
        async with await Client.connect(server.path) as client:
            waiting = asyncio.create_task(client.call("node.list"))
            _, events = await client.stream("node.watch", stream_credit=1)
            assert [e["i"] async for e in events] == [0, 1, 2, 3, 4]
            assert not waiting.done()
            release.set()
            assert await waiting == {}
        await server.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
