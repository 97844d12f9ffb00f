"""``--insecure``: when a plaintext, unauthenticated mesh is allowed at all.

Without CURVE the daemon cannot tell one peer from another: whoever reaches
the mesh port can say hello as any node name, receive that node's next
commands (with their environment, passwords included) and forge its
results; a fake daemon can command every agent. That is tolerable on
loopback, where only local users can reach the port. On any other address
``--insecure`` is refused unless ``--i-trust-this-network`` says the network
is the operator's alone; either way the exposure is logged loudly at start.
"""

from __future__ import annotations

import ipaddress

from gdos.errors import ErrorCode, GdosError

TRUST_FLAG = "--i-trust-this-network"


def host_of(address: str) -> str:
    """The host part of ``tcp://HOST:PORT`` (brackets of IPv6 removed)."""
    rest = address.split("://", 1)[-1]
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    return host.strip("[]")


def is_loopback(address: str) -> bool:
    host = host_of(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, '*' or 0.0.0.0-like wildcard: not provably local
        return False


def check(address: str, trusted: bool) -> None:
    """Refuse ``--insecure`` on a non-loopback address unless the network is trusted."""
    if trusted or is_loopback(address):
        return
    raise GdosError(
        ErrorCode.INVALID_ARGUMENT,
        f"--insecure on {address}, which is not a loopback address, would let anyone who "
        "can reach it pose as any node (receiving its commands and their environment) or "
        f"as the daemon; drop --insecure, or add {TRUST_FLAG} if no one else can reach "
        "this network.",
    )


def exposure(address: str) -> str:
    """The loud start-up warning: what ``--insecure`` gives away."""
    return (
        f"INSECURE MESH on {address}: no encryption, no authentication. Anyone who can "
        "reach it can claim any node name, receive that node's exec commands with their "
        "environment (passwords included) and forge their output, impersonate the daemon, "
        "and read every shell, log and package in transit."
    )
