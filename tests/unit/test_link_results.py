"""The agent keeps exec results until the daemon says they are stored, and resends them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gdos.agent.link import RESEND_AFTER, Link, LinkConfig

from gdos.protocol import Message


def _link(tmp_path: Path) -> tuple[Link, list[tuple[str, dict[str, Any]]]]:
    config = LinkConfig(
        name="n1", address="tcp://127.0.0.1:1", server_key=None, keypair=None, state_dir=tmp_path
    )
    link = Link(config, {})
    sent: list[tuple[str, dict[str, Any]]] = []
    link._send = lambda kind, body: sent.append((kind, body))  # type: ignore[method-assign]
    return link, sent


def test_unacknowledged_results_are_sent_again_until_acknowledged(tmp_path: Path) -> None:
    link, sent = _link(tmp_path)
    try:
        result = {"task": 7, "status": "succeeded", "started": 1.0, "ended": 2.0}
        link._finish(7, result)
        assert sent == [("exec.result", result)]
        first = link.sent_at[7]
        link._resend_unacked(first + RESEND_AFTER / 2)
        assert len(sent) == 1  # not yet: the daemon may be storing it
        link._resend_unacked(first + RESEND_AFTER)
        assert sent[-1] == ("exec.result", result) and len(sent) == 2
        link._on_exec_result_ack(Message(kind="exec.result.ack", body={"task": 7}))
        link._resend_unacked(first + 10 * RESEND_AFTER)
        assert len(sent) == 2 and not link.unacked and not link.sent_at
    finally:
        link.ctx.destroy(linger=0)
