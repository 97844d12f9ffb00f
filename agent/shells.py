"""The agent's shell sessions, keyed by the daemon's session id.

A session lives only as long as the connection it was opened on: when the
link to the daemon drops, every session is closed and its process group
hung up, because the daemon has already told the operator the session is
lost and nobody could type into it any more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from gdos.agent.pty_session import PtySession, Send

from gdos.model import Action, refusal

log = logging.getLogger("gdos.agent.shell")

Spawn = Callable[[Coroutine[Any, Any, None]], None]


def refuse_shell(send: Send, session: int, state: str) -> bool:
    """Answer ``pty.exit`` when a node in ``state`` refuses shells; True if it did.

    The simulator (gdos/devtools/sim_agent.py) refuses through here too.
    """
    error = refusal(state, Action.SHELL, "", by_agent=True)
    if error is not None:
        send("pty.exit", {"session": session, "code": str(error.code), "reason": error.message})
    return error is not None


class ShellSessions:
    def __init__(self, send: Send, spawn: Spawn) -> None:
        self.send, self.spawn = send, spawn
        self.live: dict[int, PtySession] = {}

    def open(self, body: dict[str, Any], state: str) -> None:
        """Start a session, unless the node state refuses shells (gdos/model.py)."""
        session_id = body["session"]
        if refuse_shell(self.send, session_id, state):
            return
        if session_id in self.live:
            return
        session = PtySession(body, self.send)
        self.live[session_id] = session
        self.spawn(self._run(session))

    async def _run(self, session: PtySession) -> None:
        try:
            await session.run()
        except Exception as exc:  # the daemon must hear the end whatever happens
            log.exception("shell session %d failed", session.id)
            self.send(
                "pty.exit",
                {"session": session.id, "reason": f"agent error: {exc}", "exit_code": None},
            )
        finally:
            self.live.pop(session.id, None)

    def _get(self, body: dict[str, Any]) -> PtySession | None:
        session = self.live.get(body["session"])
        if session is None and "data" in body:
            log.debug("data for unknown shell session %s", body["session"])
        return session

    def input(self, body: dict[str, Any]) -> None:
        if session := self._get(body):
            session.input(body["data"])

    def eof(self, body: dict[str, Any]) -> None:
        if session := self._get(body):
            session.eof()

    def resize(self, body: dict[str, Any]) -> None:
        if session := self._get(body):
            session.resize(body["rows"], body["cols"])

    def credit(self, body: dict[str, Any]) -> None:
        if session := self._get(body):
            session.grant(body["credit"])

    def close(self, body: dict[str, Any]) -> None:
        if session := self._get(body):
            session.close(body.get("reason") or "closed by the daemon")

    def close_all(self, reason: str) -> None:
        for session in list(self.live.values()):
            session.close(reason)
