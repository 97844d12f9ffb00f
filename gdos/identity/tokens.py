"""Join tokens: everything a new agent needs to enroll itself.

A token carries the daemon's mesh address, the daemon's public key, a token
id, a secret and the expiry. The agent proves it holds the secret by sending
``HMAC(secret, its public key)`` in its first ``hello`` (CURVE-encrypted); the
daemon checks the proof against the key the connection authenticated with and
accepts that key, so the secret never travels and a proof cannot be replayed
with another key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import msgpack

from gdos.errors import ErrorCode, GdosError
from gdos.identity.keys import is_z85_key

PREFIX = "gdos1."


@dataclass(frozen=True)
class JoinToken:
    address: str
    server_key: str
    token_id: str
    secret: bytes
    expires_at: float

    def encode(self) -> str:
        payload = msgpack.packb(
            {
                "a": self.address,
                "k": self.server_key,
                "i": self.token_id,
                "s": self.secret,
                "e": self.expires_at,
            },
            use_bin_type=True,
        )
        return PREFIX + base64.urlsafe_b64encode(payload).decode().rstrip("=")

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at


def decode(text: str) -> JoinToken:
    """Parse a token string; raises GdosError(token_invalid) with what to do."""
    bad = GdosError(
        ErrorCode.TOKEN_INVALID,
        "the join token is malformed; copy it again from 'gdos token create'.",
    )
    if not text.startswith(PREFIX):
        raise bad
    raw = text[len(PREFIX) :]
    try:
        data = msgpack.unpackb(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)), raw=False)
        token = JoinToken(
            address=str(data["a"]),
            server_key=str(data["k"]),
            token_id=str(data["i"]),
            secret=_secret(data["s"]),
            expires_at=float(data["e"]),
        )
    except Exception:
        raise bad from None
    if not is_z85_key(token.server_key) or not token.address.startswith("tcp://"):
        raise bad
    return token


def _secret(value: object) -> bytes:
    if not isinstance(value, bytes) or not 16 <= len(value) <= 64:
        raise ValueError("token secret must be 16-64 bytes")
    return value


def proof(secret: bytes, client_key: bytes) -> str:
    """What the agent sends to show it holds the token's secret."""
    mac = hmac.new(secret, client_key, hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(mac).decode()


def check_proof(secret: bytes, client_key: bytes, given: str) -> bool:
    return hmac.compare_digest(proof(secret, client_key), given)
