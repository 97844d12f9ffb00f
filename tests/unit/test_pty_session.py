"""The agent's side of a shell, without a daemon: spawn, relay, credit, refusals."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from gdos.agent.pty_session import PtySession
from gdos.agent.pty_spawn import SpawnRefused, spawn
from gdos.agent.shells import ShellSessions

Sent = list[tuple[str, dict[str, Any]]]


def request(**fields: Any) -> dict[str, Any]:
    return {"session": 7, "rows": 24, "cols": 80, "tty": False, "credit": 4, **fields}


def run_session(req: dict[str, Any], feed: bytes | None = None, timeout: float = 20) -> Sent:
    """Run one session to its end, granting output credit back as a daemon would."""
    sent: Sent = []

    async def main() -> None:
        session: PtySession

        def send(kind: str, body: dict[str, Any]) -> None:
            sent.append((kind, body))
            if kind == "pty.output":
                session.grant(1)

        session = PtySession(req, send)
        task = asyncio.ensure_future(session.run())
        if feed is not None:
            session.input(feed)
            session.eof()
        await asyncio.wait_for(task, timeout)

    asyncio.run(main())
    return sent


def output(sent: Sent) -> bytes:
    return b"".join(b["data"] for k, b in sent if k == "pty.output")


def test_a_command_on_pipes_reports_output_and_exit_status() -> None:
    sent = run_session(request(argv=["sh", "-c", "cat; echo err >&2; exit 3"]), feed=b"\x00\xffin")
    kinds = [k for k, _ in sent]
    assert kinds[0] == "pty.opened" and kinds[-1] == "pty.exit"
    assert output([(k, b) for k, b in sent if b.get("stream") == "stdout"]) == b"\x00\xffin"
    assert output([(k, b) for k, b in sent if b.get("stream") == "stderr"]) == b"err\n"
    assert sent[-1][1] == {"session": 7, "exit_code": 3, "reason": None}


def test_a_pty_has_the_requested_size_and_is_the_controlling_terminal() -> None:
    script = "stty size; test -t 0 && echo tty; ps -o tty= -p $$"
    sent = run_session(request(tty=True, rows=33, cols=101, argv=["sh", "-c", script]))
    text = output(sent).decode()
    assert "33 101" in text and "tty" in text
    assert "pts/" in text  # the shell's controlling terminal is the pty
    assert sent[-1][1]["exit_code"] == 0


def test_output_waits_for_credit() -> None:
    sent: Sent = []

    async def main() -> None:
        session = PtySession(
            request(credit=2, argv=["sh", "-c", "head -c 1000000 /dev/zero"]),
            lambda k, b: sent.append((k, b)),
        )
        task = asyncio.ensure_future(session.run())
        await asyncio.sleep(0.5)
        assert sum(1 for k, _ in sent if k == "pty.output") == 2  # no more without credit
        session.grant(1000)
        await asyncio.wait_for(task, 20)

    asyncio.run(main())
    assert len(output(sent)) == 1_000_000


def test_input_credit_is_granted_back_as_input_is_written() -> None:
    sent: Sent = []

    async def main() -> None:
        session = PtySession(request(argv=["cat"]), lambda k, b: sent.append((k, b)))
        task = asyncio.ensure_future(session.run())
        for _ in range(20):  # typed before the program started: queued, then written
            session.input(b"x" * 1000)
        session.eof()
        session.grant(100)
        await asyncio.wait_for(task, 20)

    asyncio.run(main())
    assert output(sent) == b"x" * 20_000
    # half an input window (16 chunks) written: credit for them goes back at once
    assert [b["credit"] for k, b in sent if k == "pty.credit"] == [16]


def test_close_kills_the_process_group() -> None:
    sent: Sent = []

    async def main() -> None:
        session = PtySession(request(argv=["sleep", "300"]), lambda k, b: sent.append((k, b)))
        task = asyncio.ensure_future(session.run())
        while not sent:
            await asyncio.sleep(0.01)
        session.close("the client left the session")
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert sent[-1][1] == {
        "session": 7,
        "exit_code": 129,
        "reason": "the client left the session",
    }


def test_refusals_carry_stable_codes() -> None:
    def refused(**fields: Any) -> SpawnRefused:
        with pytest.raises(SpawnRefused) as info:
            asyncio.run(spawn(request(**fields)))
        return info.value

    assert refused(user="no-such-user-here").code in ("user_unknown", "not_permitted")
    assert refused(cwd="/nonexistent/folder").code == "invalid_argument"
    missing = refused(argv=["definitely-not-a-command"])
    assert missing.code is None and missing.exit_code == 127


def test_a_disabled_node_refuses_shells() -> None:
    sent: Sent = []
    shells = ShellSessions(lambda k, b: sent.append((k, b)), lambda coro: coro.close())
    shells.open(request(), "disabled")
    assert sent == [
        (
            "pty.exit",
            {
                "session": 7,
                "code": "node_disabled",
                "reason": "node is disabled; the agent refuses shells",
            },
        )
    ]
    shells.open(request(), "maintenance")  # drained nodes still give shells
    assert 7 in shells.live


@pytest.mark.skipif(os.geteuid() != 0, reason="--user needs root")
def test_user_switching_runs_as_that_user() -> None:
    sent = run_session(request(user="nobody", argv=["id", "-un"]))
    assert output(sent) == b"nobody\n"
