"""How mesh peers dial: address form, agent socket options, reconnect backoff, fd limits.

Shared by the agent, the daemon and the mock cluster so that every peer
redials the same way and a thousand agents never reconnect in lockstep.
"""

from __future__ import annotations

import random
import resource
from typing import TYPE_CHECKING, Any

from gdos.errors import ErrorCode, GdosError

if TYPE_CHECKING:
    import zmq


def normalize_address(value: str) -> str:
    """``HOST:PORT`` or ``tcp://HOST:PORT`` -> ``tcp://HOST:PORT``."""
    if value.startswith("tcp://"):
        return value
    if ":" not in value:
        raise GdosError(ErrorCode.INVALID_ARGUMENT, f"--daemon {value!r} needs HOST:PORT.")
    return "tcp://" + value


def configure_dealer(
    sock: zmq.Socket[Any],
    name: str,
    *,
    sndhwm: int,
    curve: tuple[str, bytes, bytes] | None,
) -> None:
    """Set up an agent's DEALER (the real one's and every simulated one's) the same way.

    ``curve`` is (daemon public key, agent public key, agent secret key), or
    None for --insecure. zmq's own heartbeat notices a dead TCP peer.
    """
    import zmq

    from gdos.wire import protocol

    sock.linger = 0
    sock.routing_id = protocol.routing_id(name)
    sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES + 4096)
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.RECONNECT_IVL, 200)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 10_000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 30_000)
    if curve is not None:
        server_key, public, secret = curve
        sock.curve_serverkey = server_key.encode()
        sock.curve_publickey = public
        sock.curve_secretkey = secret


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with 'equal jitter': half fixed, half random."""
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def raise_fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one (one per connection); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return int(soft if soft != resource.RLIM_INFINITY else 1 << 20)
