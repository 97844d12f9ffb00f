"""The agent's session core, driven without sockets: what it says and how it answers.

agent/session.py does no I/O, so these tests hand it frames and read what it
sends. The last tests check that the real agent and the simulated agent of
the mock cluster are driven by this same core, by construction.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from gdos.agent.session import (
    CLOSE,
    CORE_KINDS,
    RECEIVES,
    RESEND_AFTER,
    WELCOME,
    Session,
    dispatch_table,
)

from gdos.identity.tokens import JoinToken
from gdos.model import NodeState
from gdos.wire import protocol

Sent = list[tuple[str, dict[str, Any]]]
CONFIG = {"heartbeat_interval": 2.0, "metrics_interval": 1.0}


class FakeWork:
    """Records what the session hands the work side."""

    HANDLERS: ClassVar[dict[str, Any]] = {
        "exec.cancel": lambda work, body: work.canceled.append(body["task"]),
    }

    def __init__(self) -> None:
        self.started: list[int] = []
        self.canceled: list[int] = []
        self.welcomes = 0
        self.states: list[NodeState] = []

    def start_exec(self, body: dict[str, Any]) -> None:
        self.started.append(body["task"])

    def welcomed(self) -> None:
        self.welcomes += 1

    def set_node_state(self, state: NodeState) -> None:
        self.states.append(state)


def make(**options: Any) -> tuple[Session, FakeWork, Sent, list[str]]:
    sent: Sent = []
    notes: list[str] = []
    work = FakeWork()
    session = Session(
        "n1",
        lambda: {"hostname": "n1"},
        lambda kind, body: sent.append((kind, body)),
        work,
        note=notes.append,
        **options,
    )
    return session, work, sent, notes


def frame(kind: str, body: dict[str, Any]) -> bytes:
    return protocol.encode(kind, body)


def welcome(session: Session, state: str = "normal") -> Any:
    return session.receive(frame("welcome", {"config": CONFIG, "state": state}))


def run(task: int, **fields: Any) -> bytes:
    return frame("exec.run", {"task": task, "argv": ["true"], "timeout": 5.0, **fields})


def test_hello_carries_the_join_proof_until_the_first_welcome() -> None:
    token = JoinToken("tcp://127.0.0.1:1", "k" * 40, "t1", b"s" * 32, time.time() + 60)
    session, work, sent, _ = make(token=token, public_key=b"p" * 40)
    session.hello()
    kind, body = sent[-1]
    assert kind == "hello" and body["name"] == "n1" and body["facts"] == {"hostname": "n1"}
    assert body["join"]["token"] == "t1" and body["join"]["proof"]
    protocol.encode(kind, body)  # within the schema

    assert welcome(session, "maintenance") == WELCOME
    assert session.online and work.welcomes == 1 and work.states == [NodeState.MAINTENANCE]
    assert (session.heartbeat_interval, session.metrics_interval) == (2.0, 1.0)
    session.receive(frame("rehello", {}))
    assert "join" not in sent[-1][1]  # enrolled: the proof is used once


def test_no_join_without_a_key() -> None:
    token = JoinToken("tcp://127.0.0.1:1", "k" * 40, "t1", b"s" * 32, time.time() + 60)
    session, _, sent, _ = make(token=token)  # --insecure: no key to prove
    session.hello()
    assert "join" not in sent[-1][1]


def test_a_pushed_config_out_of_range_keeps_the_defaults() -> None:
    session, work, _, _ = make()
    config = {"heartbeat_interval": 0.0, "metrics_interval": "fast"}
    assert session.receive(frame("heartbeat.ack", {"config": config, "state": "disabled"})) is None
    assert (session.heartbeat_interval, session.metrics_interval) == (15.0, 5.0)
    assert session.state is NodeState.DISABLED and work.states == [NodeState.DISABLED]


def test_unacknowledged_results_are_sent_again_until_acknowledged() -> None:
    session, _, sent, _ = make()
    result = {"task": 7, "status": "succeeded", "started": 1.0, "ended": 2.0}
    session.finish(7, result, now=100.0)
    assert sent == [("exec.result", result)]
    session.resend_unacked(100.0 + RESEND_AFTER / 2)
    assert len(sent) == 1  # not yet: the daemon may be storing it
    session.heartbeat(100.0 + RESEND_AFTER)
    assert [k for k, _ in sent] == ["exec.result", "heartbeat", "exec.result"]
    session.receive(frame("exec.result.ack", {"task": 7}))
    session.resend_unacked(100.0 + 10 * RESEND_AFTER)
    assert len(sent) == 3 and not session.unacked and not session.sent_at


def test_a_welcome_sends_every_unacknowledged_result_at_once() -> None:
    session, _, sent, _ = make()
    session.finish(1, {"task": 1, "status": "failed", "started": 1.0, "ended": 2.0})
    sent.clear()
    welcome(session)
    assert [(k, b["task"]) for k, b in sent] == [("exec.result", 1)]


def test_exec_is_admitted_once_and_refused_as_the_node_state_says() -> None:
    session, work, sent, _ = make()
    welcome(session, "disabled")
    session.receive(run(1, allow_drained=True))
    kind, body = sent[-1]
    assert (kind, body["status"]) == ("exec.result", "unreachable")
    assert body["reason"] == "node is disabled; the agent refuses work"

    session.receive(frame("config", {"config": CONFIG, "state": "maintenance"}))
    session.receive(run(2))
    assert sent[-1][1]["reason"] == "node is in maintenance; the agent takes no new work"
    session.receive(run(3, allow_drained=True))
    session.receive(run(3, allow_drained=True))  # a repeat while it runs: ignored
    assert work.started == [3]

    result = {"task": 3, "status": "succeeded", "started": 1.0, "ended": 2.0}
    session.finish(3, result)
    session.receive(run(3, allow_drained=True))  # a repeat once over: the stored result
    assert work.started == [3] and sent[-1] == ("exec.result", result)


def test_work_kinds_go_to_the_work_and_odd_frames_are_noted() -> None:
    session, work, _, notes = make()
    assert session.receive(frame("exec.cancel", {"task": 4})) is None
    assert work.canceled == [4]
    session.receive(frame("log.close", {"stream": 1}))  # a kind this work does not handle
    session.receive(b"\x00garbage")
    assert notes[0] == "unexpected log.close from the daemon"
    assert notes[1].startswith("bad frame from the daemon")


def test_revocation_and_a_refused_key_end_the_connection() -> None:
    session, _, _, _ = make()
    assert session.receive(frame("revoked", {"reason": "gone"})) == CLOSE
    refused = {"code": "key_not_accepted", "message": "pending"}
    assert session.receive(frame("error", refused)) == CLOSE
    assert session.receive(frame("error", {"code": "internal", "message": "x"})) is None


def test_goodbye_only_on_a_welcomed_connection() -> None:
    session, _, sent, _ = make()
    session.bye()
    assert sent == []
    welcome(session)
    session.bye()
    assert sent[-1] == ("bye", {"reason": "the agent is stopping"})
    session.lost()
    sent.clear()
    session.bye()
    assert sent == []


def test_silence_is_counted_in_heartbeat_intervals() -> None:
    session, _, _, _ = make()
    now = time.monotonic()
    assert not session.silent_too_long(now, now - 10.0)  # never under MIN_SILENCE
    assert session.silent_too_long(now, now - 46.0)  # 3 x 15 s
    assert Session.next_hello_wait(20.0) == 30.0


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("exec.nonsense", "no message kind"),
        ("hello", "not a kind the daemon sends"),  # the agent's own kind
        ("node.list", "not a kind the daemon sends"),  # a control kind
        ("welcome", "answered by the session core"),
    ],
)
def test_a_bad_dispatch_table_is_refused_at_start_up(kind: str, why: str) -> None:
    bad = type("BadWork", (FakeWork,), {"HANDLERS": {kind: lambda work, body: None}})
    with pytest.raises(ValueError, match=why):
        Session("n1", dict, lambda kind, body: None, bad())


# -- the real agent and the simulator share this core ----------------------------


def test_the_real_agent_answers_every_kind_the_daemon_sends(tmp_path: Path) -> None:
    from gdos.agent.link import Link, LinkConfig
    from gdos.agent.work import AgentWork

    assert set(protocol.KINDS) >= RECEIVES
    # Both sides agree on who sends what; only these two travel both ways.
    assert {"error", "pty.credit"} == RECEIVES & protocol.AGENT_SENDS
    assert set(dispatch_table(AgentWork)) == RECEIVES
    config = LinkConfig(
        name="n1", address="tcp://127.0.0.1:1", server_key=None, keypair=None, state_dir=tmp_path
    )
    link = Link(config, {"hostname": "n1"})
    try:
        assert type(link.session) is Session and link.session.work is link.work
    finally:
        link.ctx.destroy(linger=0)


def test_the_simulator_is_driven_by_the_same_core(tmp_path: Path) -> None:
    from gdos.agent.link import Link, LinkConfig
    from gdos.agent.work import AgentWork

    from gdos.devtools.sim_agent import SimAgent

    sim_table, real_table = dispatch_table(SimAgent), dispatch_table(AgentWork)
    for kind in CORE_KINDS:  # the very same handlers, not copies
        assert sim_table[kind] is real_table[kind]
    assert set(sim_table) <= RECEIVES

    async def say_hello_welcome_bye(session: Session) -> Sent:
        sent: Sent = []
        session.send = lambda kind, body: sent.append((kind, body))
        assert type(session) is Session
        session.hello()
        assert session.receive(frame("welcome", {"config": CONFIG, "state": "normal"})) == WELCOME
        session.bye()
        return [(k, b) for k, b in sent if k in ("hello", "bye")]

    async def scenario() -> tuple[Sent, Sent]:
        cluster = SimpleNamespace(
            config=SimpleNamespace(name=lambda i: f"sim-{i:05d}"),
            token=None,
            note=print,
            loop=asyncio.get_running_loop(),
            online=0,
            welcomed=0,
        )
        sim = SimAgent(cluster, 3, b"", b"")  # type: ignore[arg-type]
        config = LinkConfig(
            name="n1",
            address="tcp://127.0.0.1:1",
            server_key=None,
            keypair=None,
            state_dir=tmp_path,
        )
        link = Link(config, {"hostname": "n1"})
        try:
            return (
                await say_hello_welcome_bye(sim.session),
                await say_hello_welcome_bye(link.session),
            )
        finally:
            sim.close()
            link.ctx.destroy(linger=0)

    sim_sent, real_sent = asyncio.run(scenario())
    assert [k for k, _ in sim_sent] == [k for k, _ in real_sent] == ["hello", "bye"]
    assert sim_sent[0][1].keys() == real_sent[0][1].keys()
    assert sim_sent[0][1]["version"] == real_sent[0][1]["version"]
    assert sim_sent[1] == real_sent[1]


@pytest.mark.parametrize(
    ("state", "action", "code"),
    [
        ("maintenance", "rollback", "node_maintenance"),  # as the daemon refuses it
        ("maintenance", "adopt", "node_maintenance"),
        ("maintenance", "stop", None),
        ("disabled", "destroy", None),  # removing what is there is always allowed
        ("disabled", "stop", "node_disabled"),
        ("normal", "deploy", None),
    ],
)
def test_services_on_the_agent_refuse_as_the_daemon_does(
    tmp_path: Path, state: str, action: str, code: str | None
) -> None:
    from gdos.agent.services import ServiceHost

    from gdos.errors import GdosError
    from gdos.model import Action

    host = ServiceHost(tmp_path, lambda kind, body: None, lambda work: work.close())
    host.node_state = state
    if code is None:
        host._refuse_work(Action(action))
    else:
        with pytest.raises(GdosError) as refused:
            host._refuse_work(Action(action))
        assert refused.value.code == code
