"""A remote shell session as the CLI and the TUI use it, over the client.

``RemoteShell.open`` returns once the daemon accepted the session; from then
on ``events`` yields what the node sends, in order: ``opened``, ``output``
chunks, and last an ``exit`` (with the program's status) or an ``error``
(refused, lost, idle). ``write`` waits for input credit before each chunk,
so a remote program that stops reading stops the sender too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gdos.client.control import Client
from gdos.wire import protocol
from gdos.wire.flow import CreditWindow
from gdos.wire.protocol import Message


class RemoteShell:
    def __init__(self, client: Client, session: int, events: AsyncIterator[dict[str, Any]]) -> None:
        self.client, self.session, self.events = client, session, events
        self.window = CreditWindow(protocol.SHELL_INPUT_CREDIT)
        client.listen("shell.credit", self._on_credit)

    @classmethod
    async def open(
        cls,
        client: Client,
        node: str,
        *,
        rows: int,
        cols: int,
        tty: bool,
        argv: list[str] | None = None,
        user: str | None = None,
        cwd: str | None = None,
        term: str | None = None,
        idle_timeout: float | None = None,
    ) -> RemoteShell:
        reply, events = await client.stream(
            "shell.open",
            stream_credit=protocol.SHELL_STREAM_CREDIT,
            node=node,
            rows=rows,
            cols=cols,
            tty=tty,
            argv=argv or [],
            user=user,
            cwd=cwd,
            term=term,
            idle_timeout=idle_timeout,
        )
        return cls(client, int(reply["session"]), events)

    def _on_credit(self, msg: Message) -> None:
        if msg.body["session"] == self.session:
            self.window.grant(msg.body["credit"])

    async def write(self, data: bytes) -> bool:
        """Send input in chunks, each once credit allows; False once the session closed."""
        for start in range(0, len(data), protocol.CHUNK_BYTES):
            if not await self.window.acquire():
                return False
            chunk = data[start : start + protocol.CHUNK_BYTES]
            await self.client.notify("shell.input", session=self.session, data=chunk)
        return True

    async def eof(self) -> None:
        await self.client.notify("shell.eof", session=self.session)

    async def resize(self, rows: int, cols: int) -> None:
        await self.client.notify("shell.resize", session=self.session, rows=rows, cols=cols)

    async def close(self) -> None:
        """Ask the daemon to end the session (the node hangs up its process group)."""
        self.forget()
        await self.client.notify("shell.close", session=self.session)

    def forget(self) -> None:
        """Stop taking credit for this session (it ended); ``write`` returns False."""
        self.window.close()
        self.client.unlisten("shell.credit", self._on_credit)
