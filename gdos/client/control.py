"""The one client of the daemon's control socket (CLI, TUI and tests).

``call`` sends a request and returns the reply body, raising ``GdosError``
with the daemon's code and sentence on refusal. ``stream`` also yields the
events of the stream the request opened, granting credit to the daemon as
they are consumed, so a slow consumer throttles the daemon. ``notify`` sends
a message nobody answers (shell input), and ``listen`` takes the daemon's
unsolicited messages of one kind (shell input credit).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from gdos import paths as gdos_paths
from gdos.errors import ErrorCode, GdosError
from gdos.wire import protocol
from gdos.wire.flow import CreditGranter
from gdos.wire.protocol import Message, ProtocolError
from gdos.wire.replies import PartJoiner
from gdos.wire.transport import frame_bytes, read_message

_END = object()


def daemon_unavailable(socket_path: Path, detail: str = "") -> GdosError:
    extra = f" ({detail})" if detail else ""
    return GdosError(
        ErrorCode.DAEMON_UNAVAILABLE,
        f"the gdos daemon is not running or not reachable at {socket_path}{extra}; "
        "start it with 'gdos daemon start' (or check GDOS_HOME).",
    )


class Client:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, socket_path: Path
    ) -> None:
        self.reader, self.writer, self.socket_path = reader, writer, socket_path
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[Message]] = {}
        self._streams: dict[int, asyncio.Queue[Any]] = {}
        self._listeners: dict[str, list[Callable[[Message], None]]] = {}
        self._parts = PartJoiner()  # replies larger than one frame (gdos/wire/replies.py)
        self._reader_task = asyncio.create_task(self._read_loop())
        self.closed = False

    @classmethod
    async def connect(cls, socket_path: Path | None = None, timeout: float = 5.0) -> Client:
        path = socket_path or gdos_paths.resolve().control_socket
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(path), limit=protocol.MAX_FRAME_BYTES + 8), timeout
            )
        except (FileNotFoundError, ConnectionRefusedError):
            raise daemon_unavailable(path) from None
        except (OSError, TimeoutError) as exc:
            raise daemon_unavailable(path, str(exc) or type(exc).__name__) from None
        return cls(reader, writer, path)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self.closed = True
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader_task
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    async def _send(self, kind: str, body: dict[str, Any], msg_id: int | None = None) -> None:
        if self.closed:
            raise daemon_unavailable(self.socket_path, "connection closed")
        self.writer.write(frame_bytes(protocol.encode(kind, body, id=msg_id)))
        try:
            await self.writer.drain()
        except ConnectionError as exc:
            raise daemon_unavailable(self.socket_path, str(exc)) from None

    async def call(self, kind: str, timeout: float | None = 30.0, **body: Any) -> dict[str, Any]:
        """Send a request; return the reply body or raise its error."""
        msg_id = next(self._ids)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._replies[msg_id] = future
        await self._send(kind, {k: v for k, v in body.items() if v is not None}, msg_id)
        try:
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise GdosError(
                ErrorCode.DAEMON_UNAVAILABLE,
                f"the daemon did not answer {kind} within {timeout:g}s; "
                "check 'gdos daemon status' and its log.",
            ) from None
        finally:
            self._replies.pop(msg_id, None)
        if reply.kind == "error":
            raise GdosError(reply.body["code"], reply.body["message"])
        return reply.body

    async def notify(self, kind: str, **body: Any) -> None:
        """Send a message that gets no reply (refusals show on the stream it concerns)."""
        await self._send(kind, {k: v for k, v in body.items() if v is not None})

    def listen(self, kind: str, callback: Callable[[Message], None]) -> None:
        """Call ``callback`` for every unsolicited ``kind`` message, until ``unlisten``."""
        self._listeners.setdefault(kind, []).append(callback)

    def unlisten(self, kind: str, callback: Callable[[Message], None]) -> None:
        callbacks = self._listeners.get(kind, [])
        if callback in callbacks:
            callbacks.remove(callback)

    async def stream(
        self, kind: str, stream_credit: int = protocol.CONTROL_STREAM_CREDIT, **body: Any
    ) -> tuple[dict[str, Any], AsyncIterator[dict[str, Any]]]:
        """Send a stream-opening request: (reply body, async iterator of events).

        A stream the daemon ends with an ``error`` event (a shell that failed,
        an event too large to send) raises it from the iterator as GdosError.
        ``stream_credit`` must be the window the daemon opens the stream with.
        """
        queue: asyncio.Queue[Any] = asyncio.Queue()
        msg_id = next(self._ids)
        self._streams[msg_id] = queue
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._replies[msg_id] = future
        await self._send(kind, {k: v for k, v in body.items() if v is not None}, msg_id)
        reply = await future
        self._replies.pop(msg_id, None)
        if reply.kind == "error":
            self._streams.pop(msg_id, None)
            raise GdosError(reply.body["code"], reply.body["message"])
        return reply.body, self._events(msg_id, queue, stream_credit)

    async def _events(
        self, stream_id: int, queue: asyncio.Queue[Any], credit: int
    ) -> AsyncIterator[dict[str, Any]]:
        granter = CreditGranter(credit)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, GdosError):
                    raise item
                kind, event = item
                if kind == "end":
                    if event is not None and event.get("type") == "error":
                        raise GdosError(event["code"], event["message"])  # the stream failed
                    if event is not None:
                        yield event
                    return
                yield event
                grant = granter.consumed()
                if grant:
                    await self._send("stream.credit", {"stream": stream_id, "credit": grant})
        finally:
            self._streams.pop(stream_id, None)

    async def _read_loop(self) -> None:
        try:
            while True:
                msg = await read_message(self.reader)
                if msg is None:
                    break
                self._route(msg)
        except (ProtocolError, ConnectionError, asyncio.IncompleteReadError):
            pass
        self.closed = True
        lost = daemon_unavailable(self.socket_path, "the daemon closed the connection")
        for future in self._replies.values():
            if not future.done():
                future.set_exception(lost)
        for queue in self._streams.values():
            queue.put_nowait(lost)

    def _route(self, msg: Message) -> None:
        if msg.kind == "reply.part" and msg.re is not None:
            try:
                whole = self._parts.add(msg)
            except ProtocolError as exc:
                whole = Message("error", exc.to_body(), re=msg.re)
            if whole is None:
                return
            msg = whole
        if msg.kind in ("stream.data", "stream.end"):
            queue = self._streams.get(msg.body["stream"])
            if queue is not None:
                kind = "data" if msg.kind == "stream.data" else "end"
                queue.put_nowait((kind, msg.body.get("event")))
            return
        future = self._replies.get(msg.re) if msg.re is not None else None
        if future is not None and not future.done():
            future.set_result(msg)
            return
        if msg.re is None:
            for listener in self._listeners.get(msg.kind, ()):
                listener(msg)
