"""The asciicast v2 format: what the daemon records and ``gdos audit replay`` plays.

A recording is newline-delimited JSON: a header object, then one
``[seconds, code, text]`` array per event (``o`` output, ``i`` input, ``r``
resize as ``COLSxROWS``). asciicast is text, so bytes are decoded as UTF-8
with replacement characters, incrementally, so a character split across two
chunks survives. ``asciinema play`` reads these files unchanged.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

VERSION = 2
MAX_PAUSE = 3600.0


def header(
    width: int,
    height: int,
    timestamp: float,
    term: str,
    shell: str,
    title: str | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    head: dict[str, Any] = {
        "version": VERSION,
        "width": width,
        "height": height,
        "timestamp": int(timestamp),
        "env": {"TERM": term, "SHELL": shell},
    }
    if title:
        head["title"] = title
    if command:
        head["command"] = command
    return head


def line(value: Any) -> bytes:
    """One JSON line; non-ASCII text stays UTF-8 (valid JSON, smaller)."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": ")).encode() + b"\n"


class TextDecoder:
    """Bytes to text for one stream, keeping partial UTF-8 sequences for the next chunk."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def decode(self, data: bytes) -> str:
        return str(self._decoder.decode(data))

    def flush(self) -> str:
        return str(self._decoder.decode(b"", final=True))


class CastError(ValueError):
    """A recording that is not asciicast v2."""


def parse_header(text: str) -> dict[str, Any]:
    try:
        head = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CastError(f"the recording's header is not JSON ({exc})") from None
    if not isinstance(head, dict) or head.get("version") != VERSION:
        raise CastError("the recording is not asciicast version 2")
    return head


def parse_event(text: str) -> tuple[float, str, str] | None:
    """One event line, or None for a line that is not a well-formed event."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], int | float)
        and isinstance(value[1], str)
        and isinstance(value[2], str)
    ):
        return float(value[0]), value[1], value[2]
    return None


async def lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Split a byte stream into text lines (the recording arrives in chunks)."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            if raw.strip():
                yield raw.decode("utf-8", "replace")
    if pending.strip():
        yield pending.decode("utf-8", "replace")


async def play(
    chunks: AsyncIterator[bytes],
    write: Callable[[str], None],
    speed: float = 1.0,
    idle_limit: float | None = None,
) -> dict[str, Any]:
    """Write the output events of a recording at their pace (``speed`` times faster).

    Pauses longer than ``idle_limit`` (recording time) are shortened to it, as
    ``asciinema play -i`` does. Returns the header.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    stream = lines(chunks)
    head: dict[str, Any] | None = None
    began = loop.time()
    shift = 0.0  # recording time skipped by idle_limit
    last = 0.0
    async for text in stream:
        if head is None:
            head = parse_header(text)
            continue
        event = parse_event(text)
        if event is None:
            continue
        at, code, data = event
        if idle_limit is not None and at - shift - last > idle_limit:
            shift = at - last - idle_limit
        last = at - shift
        delay = min(MAX_PAUSE, last / speed - (loop.time() - began))
        if delay > 0:
            await asyncio.sleep(delay)
        if code == "o":
            write(data)
    if head is None:
        raise CastError("the recording is empty")
    return head
