"""The agent's package cache: fetch by sha256 over the mesh, verify, keep.

Bytes arrive in chunks within a credit window the agent grants, and go
straight to ``<sha>.part`` on disk, so memory stays flat whatever the size.
A fetch interrupted by a lost link resumes from the part file's length
after the next welcome; one that stalls (a chunk dropped by a full queue)
asks again from where it stopped. The sha256 is checked before a package
is used; a mismatch deletes the part and fails the deploy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gdos.errors import ErrorCode, GdosError
from gdos.wire import protocol
from gdos.wire.flow import CreditRelay

log = logging.getLogger("gdos.agent.packages")

STALL_TIMEOUT = 20.0
KEEP_PACKAGES = 8  # cached zips kept besides the ones in use
Send = Callable[[str, dict[str, Any]], None]
_FETCH_IDS = itertools.count(1)


@dataclass
class _Fetch:
    sha256: str
    size: int
    part: Path
    handle: IO[bytes]
    digest: Any
    offset: int
    done: asyncio.Future[Path]
    watcher: asyncio.Future[None] | None = None
    id: int = 0
    relay: CreditRelay | None = None  # the current request's credit, granted as chunks land
    progress: asyncio.Event = field(default_factory=asyncio.Event)


class PackageCache:
    def __init__(self, root: Path, send: Send) -> None:
        self.root, self.send = root, send
        self.root.mkdir(parents=True, exist_ok=True)
        self.fetches: dict[str, _Fetch] = {}
        self.by_id: dict[int, _Fetch] = {}
        self.connected = False

    def path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.zip"

    async def get(self, sha256: str, size: int) -> Path:
        """The verified package file, fetched first if it is not cached."""
        path = self.path(sha256)
        if path.exists():
            os.utime(path)  # most recently used, for pruning
            return path
        fetch = self.fetches.get(sha256) or self._begin(sha256, size)
        return await asyncio.shield(fetch.done)

    def _begin(self, sha256: str, size: int) -> _Fetch:
        part = self.root / f"{sha256}.part"
        digest = hashlib.sha256()
        offset = 0
        if part.exists():  # resume what a previous agent run or link left behind
            with part.open("rb") as f:
                while block := f.read(1024 * 1024):
                    digest.update(block)
                    offset += len(block)
            if offset > size:
                part.unlink()
                digest, offset = hashlib.sha256(), 0
            else:
                log.info("resuming the fetch of %s at byte %d of %d", sha256[:12], offset, size)
        handle = part.open("ab")
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        fetch = _Fetch(sha256, size, part, handle, digest, offset, future)
        self.fetches[sha256] = fetch
        fetch.watcher = asyncio.ensure_future(self._watch(fetch))
        if offset == size:
            self._finish(fetch)
        elif self.connected:
            self._ask(fetch)
        return fetch

    def _ask(self, fetch: _Fetch) -> None:
        self.by_id.pop(fetch.id, None)
        fetch.id = next(_FETCH_IDS)
        fetch_id = fetch.id
        fetch.relay = CreditRelay(
            protocol.PACKAGE_CREDIT,
            lambda credit: self.send("pkg.credit", {"fetch": fetch_id, "credit": credit}),
        )
        self.by_id[fetch.id] = fetch
        body = {
            "fetch": fetch.id,
            "sha256": fetch.sha256,
            "offset": fetch.offset,
            "credit": protocol.PACKAGE_CREDIT,
        }
        self.send("pkg.fetch", body)

    async def _watch(self, fetch: _Fetch) -> None:
        """Ask again when nothing arrived for a while (a dropped chunk)."""
        while not fetch.done.done():
            fetch.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fetch.progress.wait(), STALL_TIMEOUT)
                continue
            if self.connected and not fetch.done.done():
                log.info(
                    "fetch of %s stalled at %d bytes; asking again", fetch.sha256[:12], fetch.offset
                )
                self._ask(fetch)

    # -- link events --------------------------------------------------------------
    def link_up(self) -> None:
        self.connected = True
        for fetch in self.fetches.values():
            self._ask(fetch)

    def link_down(self) -> None:
        self.connected = False

    def on_chunk(self, body: dict[str, Any]) -> None:
        fetch = self.by_id.get(body["fetch"])
        if fetch is None or body["offset"] != fetch.offset:
            return  # a chunk of an older request: the current one resends it
        data = body["data"]
        if fetch.relay is None or not fetch.relay.admit():
            return  # past the granted window: dropped, the stall watch asks again
        if fetch.offset + len(data) > fetch.size:
            self._fail(
                fetch, GdosError(ErrorCode.PACKAGE_CORRUPT, "the daemon sent too many bytes")
            )
            return
        fetch.handle.write(data)
        fetch.digest.update(data)
        fetch.offset += len(data)
        fetch.progress.set()
        if fetch.offset == fetch.size:
            self._finish(fetch)
            return
        fetch.relay.passed()  # on disk: the daemon may send more

    def on_error(self, body: dict[str, Any]) -> None:
        fetch = self.by_id.get(body["fetch"])
        if fetch is not None:
            self._fail(fetch, GdosError(body["code"], f"the daemon refused: {body['message']}"))

    def _finish(self, fetch: _Fetch) -> None:
        fetch.handle.close()
        self._forget(fetch)
        if fetch.digest.hexdigest() != fetch.sha256:
            fetch.part.unlink(missing_ok=True)
            fetch.done.set_exception(
                GdosError(
                    ErrorCode.PACKAGE_CORRUPT,
                    f"package {fetch.sha256[:12]} arrived with another sha256; deploy again.",
                )
            )
            return
        os.replace(fetch.part, self.path(fetch.sha256))
        fetch.done.set_result(self.path(fetch.sha256))
        self.prune()

    def _fail(self, fetch: _Fetch, error: GdosError) -> None:
        fetch.handle.close()
        fetch.part.unlink(missing_ok=True)
        self._forget(fetch)
        if not fetch.done.done():
            fetch.done.set_exception(error)

    def _forget(self, fetch: _Fetch) -> None:
        self.fetches.pop(fetch.sha256, None)
        self.by_id.pop(fetch.id, None)
        fetch.progress.set()

    def prune(self) -> None:
        """Keep the most recently used packages only; instances keep their own unpacked copy."""
        zips = sorted(self.root.glob("*.zip"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in zips[KEEP_PACKAGES:]:
            old.unlink(missing_ok=True)
