"""Control replies larger than one frame, split and joined again.

A reply whose frame would exceed ``MAX_FRAME_BYTES`` (``gdos status`` of a
big fleet, a long task list) is encoded once, up to ``MAX_REPLY_BYTES``, and
sent as ``reply.part`` frames answering the same request; the client joins
them and decodes the whole reply, so callers never see the split.
"""

from __future__ import annotations

from typing import Any

from gdos.errors import ErrorCode
from gdos.wire import protocol
from gdos.wire.protocol import Message, ProtocolError


def encode_reply(kind: str, body: dict[str, Any], re: int | None) -> list[bytes]:
    """The frames that carry one reply: itself, or its parts when it is too large."""
    try:
        return [protocol.encode(kind, body, re=re)]
    except ProtocolError as exc:
        if exc.code != ErrorCode.FRAME_TOO_LARGE or re is None:
            raise
    whole = protocol.encode(kind, body, re=re, limit=protocol.MAX_REPLY_BYTES)
    step = protocol.REPLY_PART_BYTES
    return [
        protocol.encode(
            "reply.part", {"data": whole[at : at + step], "more": at + step < len(whole)}, re=re
        )
        for at in range(0, len(whole), step)
    ]


class PartJoiner:
    """Collects reply.part frames per request until the last one."""

    def __init__(self) -> None:
        self._parts: dict[int, bytearray] = {}

    def add(self, part: Message) -> Message | None:
        """The whole reply once its last part arrived, else None."""
        assert part.re is not None
        buffer = self._parts.setdefault(part.re, bytearray())
        buffer += part.body["data"]
        if len(buffer) > protocol.MAX_REPLY_BYTES:
            del self._parts[part.re]
            raise ProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"reply exceeds the {protocol.MAX_REPLY_BYTES}-byte limit.",
            )
        if part.body["more"]:
            return None
        del self._parts[part.re]
        return protocol.decode(bytes(buffer), protocol.MAX_REPLY_BYTES)

    def drop(self, re: int) -> None:
        self._parts.pop(re, None)
