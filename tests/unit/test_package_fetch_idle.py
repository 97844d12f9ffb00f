"""A package fetch that gets no credit for FETCH_IDLE_TIMEOUT is closed (issue 11 item 7).

Socket-free: the daemon's ``Packages`` with a fake mesh that records what it
sends. An idle fetch must end with ``pkg.error`` code ``idle_timeout``, leave
``fetches`` (its slot is free again) and never have held the blob open.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gdos.daemon import packages
from gdos.daemon.packages import MAX_FETCHES_PER_NODE, Packages
from gdos.daemon.registry import LiveNode
from gdos.errors import ErrorCode
from gdos.pkg.archive import DEFAULT_LIMITS
from gdos.wire import protocol
from gdos.wire.protocol import Message

SHA = "ab" * 32


class FakeMesh:
    """Records every frame the daemon would send to a node."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.counters: Counter[str] = Counter()

    def send(self, node: LiveNode, kind: str, body: dict[str, Any]) -> bool:
        self.sent.append((node.name, kind, body))
        return True


class FakeCatalog:
    def sha_in_use(self, sha256: str) -> bool:
        return sha256 == SHA


class FakeBlobs:
    def __init__(self, path: Path) -> None:
        self.path = path

    def local_path(self, sha256: str) -> Path:
        return self.path


def setup(tmp_path: Path) -> tuple[Packages, FakeMesh, Path]:
    blob = tmp_path / "blob"
    blob.write_bytes(b"p" * (2 * protocol.PACKAGE_CHUNK_BYTES))
    mesh = FakeMesh()
    store = Packages(FakeCatalog(), FakeBlobs(blob), mesh, tmp_path / "up", DEFAULT_LIMITS)  # type: ignore[arg-type]
    return store, mesh, blob


def fetch(store: Packages, node: LiveNode, fetch_id: int, credit: int = 0) -> None:
    body = {"fetch": fetch_id, "sha256": SHA, "offset": 0, "credit": credit}
    store.on_fetch(node, Message("pkg.fetch", body))


def holds_open(path: Path) -> bool:
    """Whether this process has ``path`` open."""
    fds = Path("/proc/self/fd")
    return any(os.path.realpath(fds / fd) == str(path.resolve()) for fd in os.listdir(fds))


async def finished(store: Packages) -> None:
    tasks = [f.task for f in store.fetches.values() if f.task is not None]
    await asyncio.wait_for(asyncio.gather(*tasks), 10)


def test_a_fetch_without_credit_is_closed_and_frees_its_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packages, "FETCH_IDLE_TIMEOUT", 0.05)
    node = LiveNode(name="n1")

    async def scenario() -> None:
        store, mesh, blob = setup(tmp_path)
        for fetch_id in range(1, MAX_FETCHES_PER_NODE + 1):
            fetch(store, node, fetch_id)
        fetch(store, node, 99)  # one more than a node may have: refused at once
        assert [(b["fetch"], b["code"]) for _, _, b in mesh.sent] == [(99, "limit_exceeded")]
        await asyncio.sleep(0)  # every fetch is now waiting for credit
        assert len(store.fetches) == MAX_FETCHES_PER_NODE
        assert not holds_open(blob)

        await finished(store)

        errors = [(kind, b["fetch"], b["code"]) for _, kind, b in mesh.sent[1:]]
        expected = [
            ("pkg.error", i, str(ErrorCode.IDLE_TIMEOUT))
            for i in range(1, MAX_FETCHES_PER_NODE + 1)
        ]
        assert sorted(errors) == expected
        assert "no credit for 0.05s" in mesh.sent[-1][2]["message"]
        assert store.fetches == {}
        assert not holds_open(blob)

        mesh.sent.clear()
        fetch(store, node, 100, credit=2)  # the slots are free again: served
        await finished(store)
        assert [(kind, b["offset"]) for _, kind, b in mesh.sent] == [
            ("pkg.chunk", 0),
            ("pkg.chunk", protocol.PACKAGE_CHUNK_BYTES),
        ]

    asyncio.run(scenario())


def test_credit_that_arrives_in_time_keeps_the_fetch_going(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packages, "FETCH_IDLE_TIMEOUT", 5.0)
    node = LiveNode(name="n1")

    async def scenario() -> None:
        store, mesh, _ = setup(tmp_path)
        fetch(store, node, 1)
        await asyncio.sleep(0)
        credit = {"fetch": 1, "credit": 2}
        store.on_credit(node, Message("pkg.credit", credit))
        await finished(store)
        assert [kind for _, kind, _ in mesh.sent] == ["pkg.chunk", "pkg.chunk"]
        assert store.fetches == {}

    asyncio.run(scenario())
