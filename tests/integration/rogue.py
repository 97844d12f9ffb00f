"""An enrolled node that sends whatever a test tells it to: a raw mesh peer.

It enrolls with a real join token and its own CURVE key, so the daemon treats
it as an accepted node; after that every frame it sends is the test's choice,
including frames ``protocol.encode`` would refuse (packed by hand here).
"""

from __future__ import annotations

from typing import Any

import msgpack
import zmq

from gdos.identity import tokens
from gdos.wire import protocol
from tests.harness import Fleet


class RogueNode:
    """A raw DEALER speaking for ``name``; use as a context manager."""

    def __init__(self, fleet: Fleet, name: str) -> None:
        self.name = name
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.routing_id = protocol.routing_id(name)
        self.public, secret = zmq.curve_keypair()
        self.sock.curve_serverkey = fleet.daemon_key().encode()
        self.sock.curve_publickey, self.sock.curve_secretkey = self.public, secret
        self.token = tokens.decode(fleet.token())
        self.sock.connect(fleet.mesh)

    def __enter__(self) -> RogueNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.ctx.destroy(linger=0)

    def enroll(self, facts: dict[str, Any] | None = None, version: str = "rogue") -> None:
        """Say hello with a join proof and wait for the welcome."""
        join = {"token": self.token.token_id, "proof": tokens.proof(self.token.secret, self.public)}
        body = {"name": self.name, "version": version, "facts": facts or {}, "join": join}
        self.send_raw("hello", body)
        reply = self.recv()
        assert reply is not None and reply["k"] == "welcome", reply

    def send_raw(self, kind: str, body: dict[str, Any]) -> None:
        """Pack a frame without the sender-side schema check."""
        self.sock.send(msgpack.packb({"v": protocol.VERSION, "k": kind, "b": body}))

    def recv(self, timeout_ms: int = 10_000) -> dict[str, Any] | None:
        """The next frame as a raw map (or None), skipping heartbeat and config noise."""
        while self.sock.poll(timeout_ms):
            frame: dict[str, Any] = msgpack.unpackb(self.sock.recv(), raw=False)
            if frame.get("k") not in ("heartbeat.ack", "config"):
                return frame
        return None

    def expect_refusal(self, kind: str, body: dict[str, Any]) -> str:
        """Send a frame and return the message of the ``bad_message`` error it earns.

        A refused exec result is also acknowledged (so a real agent drops it
        instead of resending it forever): that ack follows the error.
        """
        self.send_raw(kind, body)
        reply = self.recv()
        assert reply is not None and reply["k"] == "error", reply
        assert reply["b"]["code"] == "bad_message", reply
        if kind == "exec.result":
            ack = self.recv()
            assert ack is not None and ack["k"] == "exec.result.ack", ack
            assert ack["b"] == {"task": body["task"]}, ack
        return str(reply["b"]["message"])
