"""The local control socket: CLI, TUI and tests talk to the daemon here.

An AF_UNIX stream socket in the owner-only runtime folder, mode 0600, with
length-prefixed protocol frames (``gdos.wire.transport``). Requests are answered
from the daemon's handler table (gdos/daemon/handlers.py); a handler may open
a stream, whose events are written only while the client has granted credit.

Each request runs as its own task, so a slow one (an adopt waits up to a
minute) holds up neither the other requests of its connection nor the stream
credit the client grants meanwhile: credit and cancel frames act as soon as
they are read. Replies carry the request's id (``re``), so they may come back
in any order; requests start in the order they arrive. A connection has at
most ``MAX_IN_FLIGHT`` requests unanswered; one more is refused at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgpack

from gdos.daemon.handlers import Handlers
from gdos.daemon.storage import storage_failure
from gdos.errors import ErrorCode, GdosError
from gdos.paths import check_socket_path, ensure_private_dir
from gdos.wire import protocol
from gdos.wire.flow import CreditWindow
from gdos.wire.protocol import Message, ProtocolError
from gdos.wire.replies import encode_reply
from gdos.wire.transport import frame_bytes, read_message

log = logging.getLogger("gdosd.control")

MAX_IN_FLIGHT = 64  # unanswered requests per connection
# What a stream puts in one event when it splits a large result (watch
# differences, an operation's results), in encoded bytes: well under a frame,
# so the envelope and one entry a little larger than usual still fit.
EVENT_BUDGET_BYTES = protocol.MAX_FRAME_BYTES // 4

T = TypeVar("T")


class Stream:
    """A daemon-to-client event stream with credit-based flow control.

    Every event is encoded here, once: one that cannot be (larger than a
    frame) ends the stream with an ``error`` event naming the code, which the
    client raises, instead of turning into an ``error`` frame no stream owns.
    """

    def __init__(self, conn: ControlConnection, stream_id: int, credit: int) -> None:
        self.conn, self.id = conn, stream_id
        self.window = CreditWindow(credit)
        self.seq = 0
        self.ended = False

    async def send(self, event: dict[str, Any]) -> bool:
        """Send one event once credit allows; False when the client is gone or the stream ended."""
        if self.ended or not await self.window.acquire():
            return False
        self.seq += 1
        try:
            frame = protocol.encode(
                "stream.data", {"stream": self.id, "seq": self.seq, "event": event}
            )
        except ProtocolError as exc:
            await self.end(stream_error(exc))
            return False
        return await self.conn.write_frames([frame])

    async def end(self, event: dict[str, Any] | None = None) -> None:
        """The stream's last frame, with ``event`` (or an error event when that cannot be sent)."""
        if self.ended:
            return
        self.ended = True
        self.window.close()
        self.seq += 1
        body: dict[str, Any] = {"stream": self.id, "seq": self.seq}
        if event is not None:
            body["event"] = event
        try:
            frame = protocol.encode("stream.end", body)
        except ProtocolError as exc:
            frame = protocol.encode("stream.end", {**body, "event": stream_error(exc)})
        await self.conn.write_frames([frame])
        self.conn.streams.pop(self.id, None)


def stream_error(exc: ProtocolError) -> dict[str, Any]:
    """The event that ends a stream whose next event could not be encoded."""
    log.warning("ending a control stream: %s", exc)
    return {
        "type": "error",
        "code": str(exc.code),
        "message": f"{exc.message} The daemon ended this stream instead; "
        "this is a gdos bug, please report it with the daemon log.",
    }


def packed_size(value: Any) -> int:
    """How many bytes ``value`` takes in a frame (msgpack)."""
    return len(msgpack.packb(value, use_bin_type=True))


def slices(entries: list[T], budget: int, size: Callable[[T], int] = packed_size) -> list[list[T]]:
    """``entries`` in order, in runs of at most ``budget`` encoded bytes (always at least
    one run; an entry larger than ``budget`` makes a run of its own)."""
    runs: list[list[T]] = [[]]
    used = 0
    for entry in entries:
        entry_size = size(entry)
        if used and used + entry_size > budget:
            runs.append([])
            used = 0
        runs[-1].append(entry)
        used += entry_size
    return runs


class ControlConnection:
    """One client connection: its identity, its open streams, its writer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.user = _peer_user(writer)
        self.streams: dict[int, Stream] = {}
        self.tasks: set[asyncio.Task[Any]] = set()  # stream pumps, ended with the connection
        self.requests = 0  # in flight
        self.closed = False

    async def write(self, kind: str, body: dict[str, Any], re: int | None = None) -> bool:
        if self.closed:
            return False
        try:
            frames = encode_reply(kind, body, re)
        except ProtocolError as exc:  # larger than even a split reply may be
            log.warning("cannot send a %s reply: %s", kind, exc)
            frames = [protocol.encode("error", exc.to_body(), re=re)]
        return await self.write_frames(frames)

    async def write_frames(self, frames: list[bytes]) -> bool:
        """Write encoded frames; False once the client is gone."""
        if self.closed:
            return False
        try:
            # all frames of one reply at once: another task's frames never come between
            self.writer.write(b"".join(frame_bytes(frame) for frame in frames))
            await self.writer.drain()
            return True
        except (ConnectionError, RuntimeError):
            self.closed = True
            return False

    def open_stream(self, stream_id: int, credit: int = 0) -> Stream:
        stream = Stream(self, stream_id, credit)
        self.streams[stream_id] = stream
        if self.closed:  # the client left while its request ran: nothing to send
            stream.window.close()
        return stream

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def close(self) -> None:
        self.closed = True
        for stream in self.streams.values():
            stream.window.close()
        for task in self.tasks:
            task.cancel()
        self.writer.close()


class ControlServer:
    """Accepts local clients and answers their requests from the handler table."""

    def __init__(self, path: Path, handlers: Handlers, storage_path: Path) -> None:
        self.path, self.handlers = path, handlers
        self.storage_path = storage_path  # named in storage_failed errors from SQLite
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[ControlConnection] = set()
        # requests still running, whether or not their client is still there
        self.requests: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        ensure_private_dir(self.path.parent)
        check_socket_path(self.path)
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        old_umask = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=protocol.MAX_FRAME_BYTES + 8
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        if self.path.stat().st_mode & 0o077:
            raise GdosError(ErrorCode.UNSAFE_PATH, f"{self.path} is not owner-only.")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ControlConnection(reader, writer)
        self.connections.add(conn)
        try:
            await self._loop(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.connections.discard(conn)
            conn.close()

    async def _loop(self, conn: ControlConnection) -> None:
        while True:
            try:
                msg = await read_message(conn.reader)
            except ProtocolError as exc:
                log.warning("control client %s sent a bad frame: %s", conn.user, exc)
                await conn.write("error", exc.to_body())
                if exc.code in (ErrorCode.FRAME_TOO_LARGE, ErrorCode.BAD_FRAME):
                    return
                continue
            if msg is None:
                return
            await self._receive(conn, msg)

    async def _receive(self, conn: ControlConnection, msg: Message) -> None:
        """Act on credit and cancel at once; start a request as its own task."""
        if msg.kind == "stream.credit":
            stream = conn.streams.get(msg.body["stream"])
            if stream:
                stream.window.grant(msg.body["credit"])
        elif msg.kind == "stream.cancel":
            stream = conn.streams.pop(msg.body["stream"], None)
            if stream:
                stream.window.close()
        elif conn.requests >= MAX_IN_FLIGHT:
            message = (
                f"{msg.kind}: this connection already has {MAX_IN_FLIGHT} requests in "
                "flight; wait for their answers before sending more."
            )
            await conn.write(
                "error", {"code": str(ErrorCode.LIMIT_EXCEEDED), "message": message}, re=msg.id
            )
        else:
            conn.requests += 1
            task = asyncio.create_task(self._request(conn, msg))
            self.requests.add(task)
            task.add_done_callback(self.requests.discard)

    async def _request(self, conn: ControlConnection, msg: Message) -> None:
        try:
            await self._dispatch(conn, msg)
        finally:
            conn.requests -= 1

    async def _dispatch(self, conn: ControlConnection, msg: Message) -> None:
        handler = self.handlers.control.get(msg.kind)
        if handler is None:
            await conn.write(
                "error",
                {
                    "code": str(ErrorCode.UNKNOWN_KIND),
                    "message": f"{msg.kind!r} is not a control request.",
                },
                re=msg.id,
            )
            return
        try:
            body = await handler(conn, msg)
        except GdosError as exc:
            await conn.write("error", exc.to_body(), re=msg.id)
            return
        except Exception as exc:
            failure = storage_failure(exc, self.storage_path)
            if failure is not None:
                log.error("control request %s: %s", msg.kind, failure)
                await conn.write("error", failure.to_body(), re=msg.id)
                return
            log.exception("control request %s failed", msg.kind)
            await conn.write(
                "error",
                {
                    "code": str(ErrorCode.INTERNAL),
                    "message": "the daemon hit an internal error; see its log.",
                },
                re=msg.id,
            )
            return
        if msg.id is None and body is None:
            return  # a notification (shell input, resize): nobody waits for an answer
        await conn.write("ok", body or {}, re=msg.id)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.connections):
            conn.close()
        for task in list(self.requests):
            task.cancel()
        if self.path.exists():
            self.path.unlink()


def _peer_user(writer: asyncio.StreamWriter) -> str:
    """The OS user behind the client, from SO_PEERCRED (for task and audit records)."""
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return pwd.getpwuid(uid).pw_name
    except (OSError, KeyError, AttributeError):
        return "unknown"
