"""Pure rules behind keys and enrollment: which key an argument means, bounds, names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zmq
from gdos.agent.enrollment import choose_name

from gdos.daemon.audit_digest import FailureDigest
from gdos.daemon.key_select import select
from gdos.daemon.pending_limits import AddressRate
from gdos.errors import GdosError
from gdos.identity import insecure, join_input
from gdos.identity.keys import fingerprint


def _row(name: str, status: str) -> dict:
    return {"key": zmq.curve_keypair()[0].decode(), "name": name, "status": status}


def test_a_name_picks_a_key_only_when_exactly_one_answers() -> None:
    real, fake, other = _row("n1", "accepted"), _row("n1", "pending"), _row("n2", "pending")
    rows = [real, fake, other]
    assert select(rows, "n2", "known") is other
    with pytest.raises(GdosError) as ambiguous:
        select(rows, "n1", "known")
    assert ambiguous.value.code == "key_ambiguous"
    assert fingerprint(real["key"]) in ambiguous.value.message
    assert fingerprint(fake["key"]) in ambiguous.value.message
    assert select(rows, fingerprint(fake["key"]), "known") is fake
    assert select(rows, fingerprint(real["key"])[:11].upper(), "known") is real
    assert select(rows, real["key"], "known") is real
    with pytest.raises(GdosError) as short:
        select(rows, fingerprint(real["key"])[:5], "known")
    assert short.value.code == "invalid_argument"
    with pytest.raises(GdosError) as unknown:
        select(rows, "n3", "known")
    assert unknown.value.code == "key_unknown"


def test_address_rate_allows_a_burst_per_address() -> None:
    rate = AddressRate(per_minute=3)
    assert [rate.allow("10.0.0.1") for _ in range(5)] == [True, True, True, False, False]
    assert rate.allow("10.0.0.2")  # another address has its own bucket


def test_failure_digest_writes_the_first_and_then_one_count() -> None:
    rows: list[tuple] = []
    digest = FailureDigest(lambda *row: rows.append(row), interval=60)
    for i in range(50):
        digest.add("agent", "enroll", f"n{i}", "pending", "10.0.0.1", "no token", {"i": i})
    digest.add("agent", "enroll", "x", "refused", "10.0.0.1", "too many", None)
    assert len(rows) == 2 and rows[0][4]["count"] == 1 and rows[0][2] == "n0"
    digest.close()
    assert len(rows) == 3
    _user, action, target, result, detail = rows[2]
    assert (action, result, detail["count"], detail["source"]) == (
        "enroll",
        "pending",
        49,
        "10.0.0.1",
    )
    assert target == "n1" and len(detail["targets"]) == 10


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("tcp://127.0.0.1:7420", True),
        ("tcp://127.3.4.5:1", True),
        ("tcp://localhost:7420", True),
        ("tcp://[::1]:7420", True),
        ("tcp://0.0.0.0:7420", False),
        ("tcp://*:7420", False),
        ("tcp://10.1.2.3:7420", False),
        ("tcp://example.org:7420", False),
    ],
)
def test_insecure_only_on_loopback(address: str, local: bool) -> None:
    assert insecure.is_loopback(address) is local
    insecure.check(address, trusted=True)
    if not local:
        with pytest.raises(GdosError, match="--i-trust-this-network"):
            insecure.check(address, trusted=False)


def test_enrolled_name_is_remembered_and_defended() -> None:
    saved = {"agent_key": "fp", "key": "K", "name": "web-7", "welcomed": True}
    assert choose_name(None, saved, "tcp://d:1", "K", "fp") == ("web-7", True)
    assert choose_name("web-7", saved, "tcp://d:1", "K", "fp") == ("web-7", True)
    with pytest.raises(GdosError, match="enrolled as 'web-7'"):
        choose_name("other", saved, "tcp://d:1", "K", "fp")
    # another daemon or another agent key: the record does not apply
    assert choose_name("other", saved, "tcp://d:1", "K2", "fp") == ("other", False)
    assert choose_name("other", saved, "tcp://d:1", "K", "fp2") == ("other", False)
    # introduced but never welcomed: a new name is allowed (with a warning)
    assert choose_name("other", {**saved, "welcomed": False}, "tcp://d:1", "K", "fp") == (
        "other",
        False,
    )


def test_join_token_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "t"
    token_file.write_text("gdos1.abc\n")
    assert join_input.take(None, token_file, None) == "gdos1.abc"
    assert join_input.take(None, None, join_input.hand_over("gdos1.fd")) == "gdos1.fd"
    monkeypatch.setenv(join_input.ENV, "gdos1.env")
    assert join_input.take(None, None, None) == "gdos1.env"
    assert join_input.ENV not in os.environ  # removed once read
    monkeypatch.setenv(join_input.ENV, "gdos1.env")
    with pytest.raises(GdosError, match="one way only"):
        join_input.take("gdos1.argv", None, None)
    with pytest.raises(GdosError, match="cannot read the join token file"):
        join_input.take(None, tmp_path / "missing", None)
    assert join_input.take(None, None, None) is None
