"""The local control socket: CLI, TUI and tests talk to the daemon here.

An AF_UNIX stream socket in the owner-only runtime folder, mode 0600, with
length-prefixed protocol frames (``gdos.transport``). Requests are answered
by the handler table in ``gdos.daemon.api``; a handler may open a stream,
whose events are written only while the client has granted credit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import socket
import struct
from pathlib import Path
from typing import Any

from gdos import protocol
from gdos.daemon.storage import storage_failure
from gdos.errors import ErrorCode, GdosError
from gdos.flow import CreditWindow
from gdos.paths import check_socket_path, ensure_private_dir
from gdos.protocol import Message, ProtocolError
from gdos.replies import encode_reply
from gdos.transport import frame_bytes, read_message

log = logging.getLogger("gdosd.control")


class Stream:
    """A daemon-to-client event stream with credit-based flow control."""

    def __init__(self, conn: ControlConnection, stream_id: int, credit: int) -> None:
        self.conn, self.id = conn, stream_id
        self.window = CreditWindow(credit)
        self.seq = 0

    async def send(self, event: dict[str, Any]) -> bool:
        """Send one event once credit allows; False when the client is gone."""
        if not await self.window.acquire():
            return False
        self.seq += 1
        return await self.conn.write(
            "stream.data", {"stream": self.id, "seq": self.seq, "event": event}
        )

    async def end(self, event: dict[str, Any] | None = None) -> None:
        self.seq += 1
        body: dict[str, Any] = {"stream": self.id, "seq": self.seq}
        if event is not None:
            body["event"] = event
        await self.conn.write("stream.end", body)
        self.conn.streams.pop(self.id, None)


class ControlConnection:
    """One client connection: its identity, its open streams, its writer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.user = _peer_user(writer)
        self.streams: dict[int, Stream] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    async def write(self, kind: str, body: dict[str, Any], re: int | None = None) -> bool:
        if self.closed:
            return False
        try:
            frames = encode_reply(kind, body, re)
        except ProtocolError as exc:  # larger than even a split reply may be
            log.warning("cannot send a %s reply: %s", kind, exc)
            frames = [protocol.encode("error", exc.to_body(), re=re)]
        try:
            for frame in frames:
                self.writer.write(frame_bytes(frame))
                await self.writer.drain()
            return True
        except (ConnectionError, RuntimeError):
            self.closed = True
            return False

    def open_stream(self, stream_id: int, credit: int = 0) -> Stream:
        stream = Stream(self, stream_id, credit)
        self.streams[stream_id] = stream
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
    """Accepts local clients and dispatches their requests to the API."""

    def __init__(self, path: Path, api: Any, storage_path: Path) -> None:
        self.path, self.api = path, api
        self.storage_path = storage_path  # named in storage_failed errors from SQLite
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[ControlConnection] = set()

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
            await self._dispatch(conn, msg)

    async def _dispatch(self, conn: ControlConnection, msg: Message) -> None:
        if msg.kind == "stream.credit":
            stream = conn.streams.get(msg.body["stream"])
            if stream:
                stream.window.grant(msg.body["credit"])
            return
        if msg.kind == "stream.cancel":
            stream = conn.streams.pop(msg.body["stream"], None)
            if stream:
                stream.window.close()
            return
        handler = self.api.handlers.get(msg.kind)
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
