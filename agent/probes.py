"""Readiness probes: when a freshly started service counts as running.

``none``: alive after a short grace (a program that dies at once is not
"running"). ``tcp``: a connection to host:port succeeds. ``http``: a minimal
HTTP/1.0 GET (asyncio streams, no extra library) answers the expected status.

Each attempt is bounded by the probe's ``timeout``; up to ``retries``
attempts run ``interval`` apart. Probing stops as soon as the process dies,
since nothing will ever answer. ``wait_ready`` returns None when ready, else
a sentence saying what the last attempt saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

NONE_GRACE = 0.2
ALIVE_CHECK_EVERY = 0.05
PROCESS_DIED = "the process exited before it was ready"


class ProbeFailed(Exception):
    """One attempt failed; the message says how ("answered 503", "refused")."""


async def wait_ready(probe: dict[str, Any], alive: Callable[[], bool]) -> str | None:
    """Probe until ready (None), out of attempts, or the process died (a reason)."""
    kind = probe.get("type", "none")
    if kind == "none":
        return None if await _alive_for(NONE_GRACE, alive) else PROCESS_DIED
    timeout = float(probe.get("timeout", 2))
    retries = max(1, int(probe.get("retries", 30)))
    interval = float(probe.get("interval", 1))
    if kind == "tcp":
        host, port = str(probe.get("host") or "127.0.0.1"), int(probe["port"])
        target = f"{host}:{port}"

        async def attempt() -> None:
            await _tcp_once(host, port)

    elif kind == "http":
        url, status = str(probe["url"]), int(probe.get("status", 200))
        target = url

        async def attempt() -> None:
            await _http_once(url, status)

    else:
        return f"unknown probe type {kind!r}"
    last = "was not probed"
    for number in range(1, retries + 1):
        if not alive():
            return PROCESS_DIED
        try:
            async with asyncio.timeout(timeout):
                await attempt()
            return None
        except TimeoutError:
            last = f"did not answer within {timeout:g}s"
        except ProbeFailed as exc:
            last = str(exc)
        except OSError as exc:
            last = _describe_os_error(exc)
        if number < retries and not await _alive_for(interval, alive):
            return PROCESS_DIED
    return f"{target} {last} after {retries} attempt{'s' if retries != 1 else ''}"


async def _alive_for(seconds: float, alive: Callable[[], bool]) -> bool:
    """Wait ``seconds``, checking often that the process lives; False once it died."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if not alive():
            return False
        await asyncio.sleep(min(ALIVE_CHECK_EVERY, left))
    return alive()


def _describe_os_error(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused the connection"
    return f"could not be reached ({exc.strerror or exc})"


async def _tcp_once(host: str, port: int) -> None:
    _, writer = await asyncio.open_connection(host, port)
    await _close(writer)


async def _http_once(url: str, expected: int) -> None:
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    context = None
    if secure:
        # Readiness, not trust: local services often present self-signed certificates.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = (
            f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\n"
            "User-Agent: gdos-probe\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("latin-1"))
        await writer.drain()
        line = await reader.readline()
    finally:
        await _close(writer)
    fields = line.decode("latin-1", "replace").split()
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise ProbeFailed("did not answer HTTP" if not line else "answered something not HTTP")
    if int(fields[1]) != expected:
        raise ProbeFailed(f"answered {fields[1]}")


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
