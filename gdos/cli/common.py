"""What every command module shares: running a client call, parsing, completion.

Output (text, tables, JSON, errors) goes through :mod:`gdos.cli.output`.

Heavy modules (rich, asyncio, the client) are imported inside the functions
that need them, so ``gdos --help`` and shell completion stay fast.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

from gdos.cli.output import fail
from gdos.errors import ErrorCode, GdosError
from gdos.names import natural_key
from gdos.units import human_bytes, human_duration, percent

__all__ = ["fail", "human_bytes", "human_duration", "percent"]

T = TypeVar("T")

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def run(call: Callable[[Any], Awaitable[T]]) -> T:
    """Connect to the daemon, run ``call(client)``, close; errors become exits."""
    import asyncio

    from gdos.client.control import Client

    async def main() -> T:
        client = await Client.connect()
        try:
            return await call(client)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except GdosError as error:
        fail(error)


def request(kind: str, **body: Any) -> dict[str, Any]:
    """One request, one reply."""
    return run(lambda client: client.call(kind, **body))


def parse_duration(text: str, what: str = "duration") -> float:
    """'90', '90s', '15m', '1h', '2d' -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        fail(
            GdosError(
                ErrorCode.INVALID_ARGUMENT,
                f"{what} {text!r} is not a duration; use e.g. 30s, 15m, 1h or 2d.",
            )
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_env(pairs: list[str]) -> dict[str, str]:
    """Repeated ``--env KEY=VALUE`` options as a dict; a malformed one is a usage error."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(GdosError(ErrorCode.INVALID_ARGUMENT, f"--env {pair!r} must look like KEY=VALUE."))
        env[key] = value
    return env


def ago(ts: float | None) -> str:
    return "never" if ts is None else human_duration(time.time() - ts) + " ago"


def stamp(ts: float | None, form: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A time stamp in local time, the way every list shows one; ``-`` for none."""
    return "-" if ts is None else time.strftime(form, time.localtime(ts))


def quiet_call(kind: str, **body: Any) -> dict[str, Any] | None:
    """One quick request for shell completion; ``None`` instead of any error.

    Completion runs on every TAB press, so it gives the daemon 0.3 s to accept
    and 0.5 s to answer, and never prints: a stray line would end up in the
    operator's command line.
    """
    try:
        import asyncio

        from gdos.client.control import Client

        async def ask() -> dict[str, Any]:
            client = await Client.connect(timeout=0.3)
            try:
                return await client.call(kind, timeout=0.5, **body)
            finally:
                await client.close()

        return asyncio.run(ask())
    except Exception:
        return None


def complete_node_names(incomplete: str) -> list[str]:
    """Live completion of node names; silent and quick when the daemon is down."""
    reply = quiet_call("node.names", prefix=incomplete)
    return [str(name) for name in reply.get("names", [])] if reply else []


def complete_service_targets(incomplete: str) -> list[str]:
    """Systems, SYSTEM/MODULE and SYSTEM/MODULE@NODE known to the daemon; silent when down."""
    reply = quiet_call("svc.status")
    names: set[str] = set()
    for row in reply.get("instances", []) if reply else []:
        module = f"{row['system']}/{row['module']}"
        names |= {row["system"], module, f"{module}@{row['node']}"}
    return sorted((n for n in names if n.startswith(incomplete)), key=natural_key)


def complete_log_targets(incomplete: str) -> list[str]:
    """``gdos logs`` reads instances (SYSTEM/MODULE@NODE, ...) or, with --path, nodes."""
    return complete_service_targets(incomplete) + complete_node_names(incomplete)
