"""Who may join the mesh: the key ring and the ZAP handler.

Every CURVE handshake on the mesh port asks this module. Accepted keys get
through with their key as ZMQ User-Id. Pending and rejected keys are refused
at the handshake. A key never seen before gets exactly one provisional
connection (User-Id ``pending:<key>``) on which the daemon processes a single
``hello``: it names the node, and may carry a join-token proof that accepts
the key at once; otherwise the key is recorded as pending for
``gdos key accept`` (bounded: pending_limits.py). A join proof accepts a key
once: a key the operator deleted comes back only as pending. Nothing else
from a provisional connection is processed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq
import zmq.asyncio
from zmq.utils import z85

from gdos.daemon.key_select import select
from gdos.daemon.pending_limits import AddressRate, PendingLimits
from gdos.daemon.store import Store
from gdos.errors import ErrorCode, GdosError
from gdos.identity.keys import fingerprint
from gdos.identity.tokens import check_proof

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


# A deleted key that had been accepted or rejected stays as a ``deleted`` row
# (hidden from ``gdos key list``): it may dial again, but only as pending, so
# a join proof it keeps sending cannot accept it twice.
DELETED = "deleted"
NO_TOKEN = "no join token; accept it with 'gdos key accept'"
SPENT = "this key was deleted by the operator; its join token cannot accept it again"
NAME_TAKEN = "the node name already has an accepted key"
TOO_MANY = "too many new keys from this address; try again later"


class KeyRing:
    """Accepted, pending and rejected agent keys: a cache in front of the store."""

    def __init__(self, store: Store, limits: PendingLimits | None = None) -> None:
        self.store = store
        self.limits = limits or PendingLimits()
        self.rate = AddressRate(self.limits.per_address_per_minute)
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
        if row is not None and row["status"] != DELETED:
            return False, f"key is {row['status']}"
        if len(self.provisional) >= MAX_PROVISIONAL:
            oldest = min(self.provisional, key=self.provisional.__getitem__)
            del self.provisional[oldest]
        self.provisional[key] = time.time()
        return True, PENDING_PREFIX + key

    def admit(self, key: str, name: str, address: str, join: dict | None) -> Admission:
        """Handle the one hello of a provisional connection."""
        self.provisional.pop(key, None)
        row = self.store.key(key)
        if key in self.accepted or (row is not None and row["status"] != DELETED):
            return Admission(False, "key already recorded")
        token_id = join.get("token") if isinstance(join, dict) else None
        spent = row is not None and bool(join)  # deleted by the operator: proof used
        reason = SPENT if spent else self._check_join(key, join) if row is None else NO_TOKEN
        if reason is None and self._name_taken(name, key):
            reason = NAME_TAKEN
        elif reason is None:
            self.store.record_key(key, name, "accepted", address, "token")
            self.store.use_token(str(token_id))
            self._grant(key, name)
            log.info("key %s of %s accepted by join token", fingerprint(key), name)
            self._enrolled(name, key, "ok", {"token": token_id, "address": address})
            return Admission(True, "accepted by join token")
        detail = {"token": token_id, "reason": reason, "address": address}
        if not self.rate.allow(address):
            self._enrolled(name, key, "refused", {**detail, "reason": TOO_MANY})
            return Admission(False, TOO_MANY)
        self._make_room()
        via = "token" if reason == NAME_TAKEN else "manual"
        self.store.record_key(key, name, "pending", address, via)
        log.info("key %s of %s is pending (%s)", fingerprint(key), name, reason)
        self._enrolled(name, key, "pending", detail)
        return Admission(False, reason)

    def _make_room(self) -> None:
        """Expire the oldest pending keys so one more fits under the cap."""
        excess = self.store.count_keys("pending") - self.limits.max_pending + 1
        if excess > 0:
            for row in self.store.drop_oldest_keys("pending", excess):
                log.info("pending key %s of %s expired", fingerprint(row["key"]), row["name"])

    def _enrolled(self, name: str, key: str, result: str, detail: dict) -> None:
        for hook in self.on_enroll:
            try:
                hook(name, key, result, detail)
            except Exception:
                log.exception("enrollment hook failed")

    def _check_join(self, key: str, join: dict | None) -> str | None:
        """None when the join proof is good, else why not."""
        if not join:
            return NO_TOKEN
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

    # -- operator actions (which key an argument means: key_select.py) ------
    def known(self) -> list[dict]:
        """Every key an operator can see (not the deleted ones)."""
        return [r for r in self.store.agent_keys() if r["status"] != DELETED]

    def accept(self, arg: str) -> dict:
        """Accept the one pending key ``arg`` names."""
        pending = [r for r in self.store.agent_keys() if r["status"] == "pending"]
        row = select(pending, arg, "pending")
        refusal = self._accept_refusal(row)
        if refusal:
            raise GdosError(ErrorCode.INVALID_ARGUMENT, refusal + ".")
        self.store.set_key_status(row["key"], "accepted")
        self._grant(row["key"], row["name"])
        return row

    def accept_all(self) -> tuple[list[dict], list[dict]]:
        """Accept every pending key that can be, in one transaction.

        Refused (left pending, each with a reason): a key whose name has an
        accepted key, and every key of a name several pending keys claim.
        """
        pending = [r for r in self.store.agent_keys() if r["status"] == "pending"]
        claims: dict[str, int] = {}
        for row in pending:
            claims[row["name"]] = claims.get(row["name"], 0) + 1
        accepted, refused = [], []
        for row in pending:
            refusal = self._accept_refusal(row)
            if refusal is None and claims[row["name"]] > 1:
                refusal = (
                    f"{claims[row['name']]} pending keys claim the name {row['name']!r}; "
                    "accept the right one by its fingerprint"
                )
            if refusal is None:
                accepted.append(row)
            else:
                refused.append({**row, "reason": refusal})
        self.store.set_keys_status([r["key"] for r in accepted], "accepted")
        for row in accepted:
            self._grant(row["key"], row["name"])
        return accepted, refused

    def _accept_refusal(self, row: dict) -> str | None:
        holder = self.accepted_names.get(row["name"])
        if holder is None or holder == row["key"]:
            return None
        return (
            f"node {row['name']!r} already has an accepted key ({fingerprint(holder)}); "
            f"if the node was reinstalled, run 'gdos key delete {fingerprint(holder)}' "
            "and accept again"
        )

    def reject(self, arg: str) -> dict:
        """Reject the one accepted or pending key ``arg`` names."""
        live = [r for r in self.known() if r["status"] != "rejected"]
        row = select(live, arg, "accepted or pending")
        self.store.set_key_status(row["key"], "rejected")
        self._withdraw(row["key"])
        return row

    def delete(self, arg: str) -> dict:
        row = select(self.known(), arg, "known")
        if row["status"] == "pending":
            self.store.delete_key(row["key"])
        else:
            self.store.set_key_status(row["key"], DELETED)
        self._withdraw(row["key"])
        return row


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
