"""Framing of protocol messages on the local control socket.

The control link is an AF_UNIX stream: each frame is a 4-byte big-endian
length followed by one protocol frame. The length is checked against
``MAX_FRAME_BYTES`` before anything is read, so a bad client cannot make the
daemon allocate an arbitrary buffer.
"""

from __future__ import annotations

import asyncio
import struct

from gdos.errors import ErrorCode
from gdos.wire.protocol import MAX_FRAME_BYTES, Message, ProtocolError, decode

_HEADER = struct.Struct(">I")


def frame_bytes(payload: bytes) -> bytes:
    """Prefix an encoded protocol frame with its length."""
    return _HEADER.pack(len(payload)) + payload


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """Read one frame; ``None`` at a clean end of stream.

    Raises ProtocolError for an oversized or undecodable frame. After an
    oversized length the stream cannot be resynchronised, so callers close it.
    """
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError(ErrorCode.BAD_FRAME, "connection closed inside a frame.") from None
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(
            ErrorCode.FRAME_TOO_LARGE,
            f"frame of {length} bytes exceeds the {MAX_FRAME_BYTES}-byte limit.",
        )
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError(ErrorCode.BAD_FRAME, "connection closed inside a frame.") from None
    return decode(payload)
