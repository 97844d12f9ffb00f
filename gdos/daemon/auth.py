"""Who may join the mesh: the key ring and the ZAP handler.

Every CURVE handshake on the mesh port asks this module. Accepted keys get
through with their key as ZMQ User-Id. Pending and rejected keys are refused
at the handshake. A key never seen before gets exactly one provisional
connection (User-Id ``pending:<key>``) on which the daemon processes a single
``hello``: it names the node, and may carry a join-token proof that accepts
the key at once; otherwise the key is recorded as pending for
``gdos key accept``. Nothing else from a provisional connection is processed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq
import zmq.asyncio
from zmq.utils import z85

from gdos.daemon.store import Store
from gdos.errors import ErrorCode, GdosError
from gdos.keys import fingerprint
from gdos.tokens import check_proof

log = logging.getLogger("gdosd.auth")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = "gdos"
PENDING_PREFIX = "pending:"
MAX_PROVISIONAL = 256


@dataclass
class Admission:
    """What a provisional hello led to."""

    accepted: bool
    reason: str


class KeyRing:
    """Accepted, pending and rejected agent keys: a cache in front of the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.accepted: dict[str, str] = {}  # key -> node name
        self.accepted_names: dict[str, str] = {}  # node name -> key
        self.provisional: dict[str, float] = {}  # key -> when the handshake passed
        # (name, key, result, detail) on every hello that tried to enroll (audit trail)
        self.on_enroll: list[Callable[[str, str, str, dict], None]] = []
        self.reload()

    def reload(self) -> None:
        rows = [r for r in self.store.agent_keys() if r["status"] == "accepted"]
        self.accepted = {r["key"]: r["name"] for r in rows}
        self.accepted_names = {r["name"]: r["key"] for r in rows}

    def _grant(self, key: str, name: str) -> None:
        self.accepted[key] = name
        self.accepted_names[name] = key

    def _withdraw(self, key: str) -> None:
        name = self.accepted.pop(key, None)
        if name is not None and self.accepted_names.get(name) == key:
            del self.accepted_names[name]

    def decide(self, key: str) -> tuple[bool, str]:
        """ZAP decision for a key: (allowed, user id or reason)."""
        if key in self.accepted:
            return True, key
        row = self.store.key(key)
        if row is not None:
            return False, f"key is {row['status']}"
        if len(self.provisional) >= MAX_PROVISIONAL:
            oldest = min(self.provisional, key=self.provisional.__getitem__)
            del self.provisional[oldest]
        self.provisional[key] = time.time()
        return True, PENDING_PREFIX + key

    def admit(self, key: str, name: str, address: str, join: dict | None) -> Admission:
        """Handle the one hello of a provisional connection."""
        self.provisional.pop(key, None)
        if self.store.key(key) is not None or key in self.accepted:
            return Admission(False, "key already recorded")
        token_reason = self._check_join(key, join)
        if token_reason is None:
            if self._name_taken(name, key):
                self.store.record_key(key, name, "pending", address, "token")
                return Admission(False, f"node name {name!r} already has an accepted key")
            self.store.record_key(key, name, "accepted", address, "token")
            self.store.use_token(str(join["token"]))  # type: ignore[index]
            self._grant(key, name)
            log.info("key %s of %s accepted by join token", fingerprint(key), name)
            self._enrolled(name, key, "ok", {"token": join["token"]})  # type: ignore[index]
            return Admission(True, "accepted by join token")
        self.store.record_key(key, name, "pending", address, "manual")
        log.info("key %s of %s is pending (%s)", fingerprint(key), name, token_reason)
        token = join.get("token") if isinstance(join, dict) else None
        self._enrolled(name, key, "pending", {"token": token, "reason": token_reason})
        return Admission(False, token_reason)

    def _enrolled(self, name: str, key: str, result: str, detail: dict) -> None:
        for hook in self.on_enroll:
            try:
                hook(name, key, result, detail)
            except Exception:
                log.exception("enrollment hook failed")

    def _check_join(self, key: str, join: dict | None) -> str | None:
        """None when the join proof is good, else why not."""
        if not join:
            return "no join token; accept it with 'gdos key accept'"
        token_id, given = join.get("token"), join.get("proof")
        row = self.store.token(str(token_id)) if isinstance(token_id, str) else None
        if row is None or not isinstance(given, str):
            return "unknown join token"
        if row["expires_at"] <= time.time():
            return "join token expired"
        if row["uses_left"] is not None and row["uses_left"] <= 0:
            return "join token has no uses left"
        if not check_proof(row["secret"], key.encode(), given):
            return "join token proof does not match"
        return None

    def _name_taken(self, name: str, key: str) -> bool:
        holder = self.accepted_names.get(name)
        return holder is not None and holder != key

    # -- operator actions ---------------------------------------------------
    def accept(self, name: str | None, accept_all: bool) -> list[dict]:
        pending = [r for r in self.store.agent_keys() if r["status"] == "pending"]
        chosen = pending if accept_all else [r for r in pending if r["name"] == name]
        if not chosen and not accept_all:
            raise GdosError(
                ErrorCode.KEY_UNKNOWN,
                f"no pending key named {name!r}; run 'gdos key list' to see pending keys.",
            )
        for row in chosen:
            if self._name_taken(row["name"], row["key"]):
                raise GdosError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"node {row['name']!r} already has an accepted key; if the node was "
                    f"reinstalled, run 'gdos key delete {row['name']}' and accept again.",
                )
            self.store.set_key_status(row["key"], "accepted")
            self._grant(row["key"], row["name"])
        return chosen

    def reject(self, name: str) -> list[dict]:
        rows = self._named(name)
        for row in rows:
            self.store.set_key_status(row["key"], "rejected")
            self._withdraw(row["key"])
        return rows

    def delete(self, name: str) -> list[dict]:
        rows = self._named(name)
        for row in rows:
            self.store.delete_key(row["key"])
            self._withdraw(row["key"])
        return rows

    def _named(self, name: str) -> list[dict]:
        rows = self.store.keys_named(name)
        if not rows:
            raise GdosError(
                ErrorCode.KEY_UNKNOWN,
                f"no key named {name!r}; run 'gdos key list' to see known keys.",
            )
        return rows


class ZapHandler:
    """Answers libzmq's ZAP requests from the key ring (RFC 27)."""

    def __init__(self, ctx: zmq.asyncio.Context, ring: KeyRing) -> None:
        self.ring = ring
        self.socket = ctx.socket(zmq.REP)
        self.socket.linger = 0
        self.socket.bind(ZAP_ENDPOINT)

    async def serve(self) -> None:
        while True:
            request = await self.socket.recv_multipart()
            await self.socket.send_multipart(self._answer(request))

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6:
            return [
                b"1.0",
                request[1] if len(request) > 1 else b"",
                b"400",
                b"bad request",
                b"",
                b"",
            ]
        version, request_id, _domain, address, _identity, mechanism = request[:6]
        if version != b"1.0" or mechanism != b"CURVE" or len(request) != 7:
            return [b"1.0", request_id, b"400", b"CURVE required", b"", b""]
        try:
            key = z85.encode(request[6]).decode()
            allowed, detail = self.ring.decide(key)
        except Exception:  # never leave libzmq waiting for an answer
            log.exception("ZAP decision failed")
            allowed, detail = False, "internal error"
        if allowed:
            return [b"1.0", request_id, b"200", b"OK", detail.encode(), b""]
        log.info("refused a key from %s: %s", address.decode(), detail)
        return [b"1.0", request_id, b"400", detail.encode(), b"", b""]

    def close(self) -> None:
        self.socket.close(linger=0)
