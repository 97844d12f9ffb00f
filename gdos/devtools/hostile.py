"""Hostile mesh peers for tests and benchmarks: raw sockets that misbehave on purpose.

Shared by ``tests/integration/test_hostile_peers.py`` and ``bench/fuzz.py``.
Every attack here is a bounded loop on loopback; the figures (RSS, open
descriptors, log bytes) are read from ``/proc`` of the daemon under attack.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from pathlib import Path
from typing import Any

import zmq

from gdos.identity import tokens
from gdos.wire import protocol


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    """How many descriptors a process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_limits(pid: int) -> tuple[int, int]:
    """A process's (soft, hard) RLIMIT_NOFILE, from /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise RuntimeError(f"no open-files limit for pid {pid}")


class RawPeer:
    """A DEALER that speaks the mesh protocol exactly as told, nothing more."""

    def __init__(self, mesh: str, server_key: str, name: str) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.name = name
        self.public, secret = zmq.curve_keypair()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.sndhwm = 100_000
        self.sock.routing_id = protocol.routing_id(name)
        self.sock.curve_serverkey = server_key.encode()
        self.sock.curve_publickey, self.sock.curve_secretkey = self.public, secret
        self.sock.connect(mesh)

    def hello(self, join_token: str | None = None, facts: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"name": self.name, "version": "hostile", "facts": facts or {}}
        if join_token:
            token = tokens.decode(join_token)
            body["join"] = {
                "token": token.token_id,
                "proof": tokens.proof(token.secret, self.public),
            }
        self.send("hello", body)

    def send(self, kind: str, body: dict[str, Any]) -> None:
        self.sock.send(protocol.encode(kind, body, limit=protocol.MESH_FRAME_BYTES))

    def send_raw(self, data: bytes) -> bool:
        """Send undecoded bytes; False when the local queue is full."""
        try:
            self.sock.send(data, flags=zmq.DONTWAIT)
            return True
        except zmq.Again:
            return False

    def recv(self, timeout: float = 5.0) -> protocol.Message | None:
        if self.sock.poll(int(timeout * 1000)):
            return protocol.decode(self.sock.recv(), protocol.MESH_FRAME_BYTES)
        return None

    def wait_for(self, kind: str, timeout: float = 20.0) -> protocol.Message | None:
        """The next frame of ``kind``, skipping others, or None after ``timeout``."""
        import time

        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(left)
            if msg is not None and msg.kind == kind:
                return msg
        return None

    def close(self) -> None:
        self.ctx.destroy(linger=0)


# ZMTP 3.0 greeting of a CURVE client (RFC 23/ZMTP, RFC 26/CurveZMQ)
GREETING = (
    b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"CURVE".ljust(20, b"\x00") + b"\x00" * 32
)


def oversized_hello(size: int) -> bytes:
    """A handshake command frame announcing ``size`` bytes (long-frame header)."""
    return b"\x06" + struct.pack(">Q", size) + b"\x05HELLO"


def handshake_hog(port: int, command_bytes: int) -> socket.socket | None:
    """Open a raw TCP connection that sends all but the last byte of a huge HELLO.

    libzmq buffers the partial command in full while it waits for the rest.
    Returns the open socket (the caller closes it), or None when refused.
    """
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        conn.sendall(GREETING)
        conn.sendall(oversized_hello(command_bytes))
        block = b"\x00" * (256 * 1024)
        left = command_bytes - 6 - 1
        while left > 0:
            sent = conn.send(block[: min(left, len(block))])
            left -= sent
        return conn
    except OSError:
        with contextlib.suppress(OSError):
            conn.close()
        return None
