"""The daemon's one table of what answers each kind it receives, mesh and control.

Every concern registers its handlers the same way, ``handlers.register({kind:
handler})``. The kind's declaration (gdos/wire/mesh_kinds.py, gdos/wire/control_kinds.py)
says its link and direction, so the handler lands in the mesh or the control
table by itself, and a kind that is unknown, that the daemon does not
receive, or that is already taken fails at start-up, as does a received kind
nobody handles (``check_complete``). A control handler passes through the
audit policy as it is registered (gdos/daemon/audit.py), so every request
that changes something is audited, whatever order the concerns register in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from gdos.wire import protocol
from gdos.wire.protocol import Message

if TYPE_CHECKING:
    from gdos.daemon.control import ControlConnection
    from gdos.daemon.registry import LiveNode

MeshHandler = Callable[["LiveNode", Message[Any]], None]
ControlHandler = Callable[["ControlConnection", Message[Any]], Awaitable[dict[str, Any] | None]]
# Kinds the links answer themselves: the mesh's session start (hello) and the
# agents' error frames; the control socket's stream credit and cancel, which
# must act at once, never behind a request.
LINK_KINDS = frozenset({"hello", "error", "stream.credit", "stream.cancel"})


class RegistrationError(ValueError):
    """A handler registered for a kind it cannot answer: a bug, refused at start-up."""


class Handlers:
    """Mesh and control handlers by kind; control ones pass the audit policy."""

    def __init__(self, audit: Callable[[str, ControlHandler], ControlHandler]) -> None:
        self._audit = audit
        self.mesh: dict[str, MeshHandler] = {}
        self.control: dict[str, ControlHandler] = {}

    def register(self, table: Mapping[str, Callable[..., Any]]) -> None:
        """Register ``{kind: handler}``; refuses what the daemon cannot receive."""
        for kind, handler in table.items():
            self._check(kind)
            if kind in protocol.AGENT_SENDS:
                self.mesh[kind] = handler
            else:
                self.control[kind] = self._audit(kind, handler)

    def _check(self, kind: str) -> None:
        if kind not in protocol.KINDS:
            raise RegistrationError(f"no message kind {kind!r} is declared (gdos/wire/*_kinds.py)")
        if kind in LINK_KINDS:
            raise RegistrationError(f"{kind!r} is answered by its link itself")
        if kind not in protocol.AGENT_SENDS | protocol.CLIENT_SENDS:
            raise RegistrationError(f"{kind!r} is sent by the daemon, never received")
        if kind in self.mesh or kind in self.control:
            raise RegistrationError(f"{kind!r} has a handler already")

    def missing(self) -> set[str]:
        """Kinds the daemon receives that no handler answers."""
        received = (protocol.AGENT_SENDS | protocol.CLIENT_SENDS) - LINK_KINDS
        return set(received - self.mesh.keys() - self.control.keys())

    def check_complete(self) -> None:
        """Refuse to start with a received kind nobody answers."""
        missing = self.missing()
        if missing:
            raise RegistrationError(f"no handler for {', '.join(sorted(missing))}")
