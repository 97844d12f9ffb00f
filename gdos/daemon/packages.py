"""Packages: uploads from the CLI, validation, storage, and chunked fetch by agents.

An upload arrives in offset-addressed chunks into a private temporary file;
``commit`` checks the size and the client's sha256, inspects the zip
(gdos/pkg/archive.py: unsafe entries, manifest) off the event loop, and only
then stores the bytes (gdos/daemon/blobs.py) and the row. The same bytes
pushed twice are a no-op; another content under an existing name@version is
refused.

Agents fetch by sha256 from an offset (so a fetch resumes after a
reconnect) and grant credit per chunk: the daemon never has more than the
agent's window in flight, whatever the package size. A node may have
``MAX_FETCHES_PER_NODE`` fetches at once; the blob is open only while chunks
are sent, and a fetch without credit for ``FETCH_IDLE_TIMEOUT`` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gdos.daemon.blobs import BlobStore
from gdos.daemon.catalog import Catalog
from gdos.daemon.mesh import Mesh
from gdos.daemon.registry import LiveNode
from gdos.errors import ErrorCode, GdosError
from gdos.pkg.archive import Limits, inspect_zip
from gdos.wire import protocol
from gdos.wire.protocol import Message

log = logging.getLogger("gdosd.packages")

UPLOAD_IDLE_TIMEOUT = 600.0
MAX_FETCHES_PER_NODE = 8
FETCH_IDLE_TIMEOUT = 60.0
SHA256_HEX = frozenset("0123456789abcdef")


@dataclass
class Upload:
    id: int
    size: int
    filename: str
    owner: Any  # the ControlConnection; an upload dies with its client
    path: Path
    handle: IO[bytes]
    written: int = 0
    touched: float = field(default_factory=time.monotonic)


@dataclass
class Fetch:
    node: LiveNode
    id: int
    credit: int
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Packages:
    def __init__(
        self, catalog: Catalog, blobs: BlobStore, mesh: Mesh, uploads_dir: Path, limits: Limits
    ) -> None:
        self.catalog, self.blobs, self.mesh = catalog, blobs, mesh
        self.uploads_dir, self.limits = uploads_dir, limits
        self.uploads: dict[int, Upload] = {}
        self.fetches: dict[tuple[str, int], Fetch] = {}
        self._next_upload = 1
        uploads_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for leftover in uploads_dir.glob("*.part"):  # a previous run's unfinished uploads
            leftover.unlink(missing_ok=True)

    # -- uploads (control) -------------------------------------------------------
    def begin(self, owner: Any, size: int, filename: str) -> int:
        if not 0 < size <= self.limits.max_total_bytes:
            raise GdosError(
                ErrorCode.ARCHIVE_UNSAFE,
                f"{filename}: {size} bytes is outside 1 byte .. {self.limits.max_total_bytes} "
                "bytes, the package size limit.",
            )
        upload_id, self._next_upload = self._next_upload, self._next_upload + 1
        path = self.uploads_dir / f"{upload_id}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.uploads[upload_id] = Upload(
            upload_id, size, filename, owner, path, os.fdopen(fd, "wb")
        )
        return upload_id

    def write(self, owner: Any, upload_id: int, offset: int, data: bytes) -> None:
        upload = self._upload(owner, upload_id)
        if offset != upload.written or upload.written + len(data) > upload.size:
            self._abort(upload)
            raise GdosError(
                ErrorCode.FLOW_VIOLATION,
                f"upload {upload_id}: chunk at {offset} does not follow byte {upload.written} "
                f"of {upload.size}; push the file again.",
            )
        upload.handle.write(data)
        upload.written += len(data)
        upload.touched = time.monotonic()

    async def commit(self, owner: Any, upload_id: int, sha256: str, user: str) -> dict[str, Any]:
        upload = self._upload(owner, upload_id)
        self.uploads.pop(upload_id, None)
        try:
            upload.handle.close()
            return await self._store(upload, sha256.lower(), user)
        finally:
            upload.path.unlink(missing_ok=True)

    async def _store(self, upload: Upload, sha256: str, user: str) -> dict[str, Any]:
        if upload.written != upload.size:
            raise GdosError(
                ErrorCode.FLOW_VIOLATION,
                f"upload ended after {upload.written} of {upload.size} bytes; push it again.",
            )
        actual = await asyncio.to_thread(_sha256_file, upload.path)
        if actual != sha256:
            raise GdosError(
                ErrorCode.PACKAGE_CORRUPT,
                f"{upload.filename} arrived with sha256 {actual[:12]}, not {sha256[:12]}; "
                "the file changed while it was sent, push it again.",
            )
        info = await asyncio.to_thread(inspect_zip, upload.path, self.limits, upload.filename)
        manifest = info.manifest.to_dict()
        name, version = manifest["name"], manifest["version"]
        existing = self.catalog.packages(name)
        same = [p for p in existing if p["version"] == version]
        if same and same[0]["sha256"] == sha256:
            return {"package": _view(same[0]), "created": False}
        if same:
            raise GdosError(
                ErrorCode.ALREADY_EXISTS,
                f"{name}@{version} is already stored with other content "
                f"(sha256 {same[0]['sha256'][:12]}); bump the version in service.json.",
            )
        await asyncio.to_thread(self.blobs.put, sha256, upload.path)
        row = {
            "name": name,
            "version": version,
            "sha256": sha256,
            "size": upload.size,
            "manifest": manifest,
            "description": manifest.get("description", ""),
            "pushed_at": time.time(),
            "pushed_by": user,
        }
        self.catalog.add_package(row)
        log.info("package %s@%s stored (%d bytes, %s)", name, version, upload.size, sha256[:12])
        return {"package": _view(row), "created": True}

    def _upload(self, owner: Any, upload_id: int) -> Upload:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.owner is not owner:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT, f"no upload {upload_id} on this connection."
            )
        return upload

    def _abort(self, upload: Upload) -> None:
        self.uploads.pop(upload.id, None)
        with contextlib.suppress(OSError):
            upload.handle.close()
        upload.path.unlink(missing_ok=True)

    def sweep(self) -> None:
        """Drop uploads whose client went away or went quiet."""
        now = time.monotonic()
        for upload in list(self.uploads.values()):
            if upload.owner.closed or now - upload.touched > UPLOAD_IDLE_TIMEOUT:
                self._abort(upload)

    # -- catalog (control) ----------------------------------------------------------
    def list(self, name: str | None) -> list[dict[str, Any]]:
        return [_view(p) for p in self.catalog.packages(name)]

    def show(self, name: str, version: str | None) -> dict[str, Any]:
        row = self.catalog.package(name, version)
        return {**_view(row), "manifest": row["manifest"]}

    async def remove(self, name: str, version: str) -> dict[str, Any]:
        row = self.catalog.package(name, version)
        users = self.catalog.instances_using(name, version)
        if users:
            where = ", ".join(f"{u['system']}/{u['module']}@{u['node']}" for u in users[:5])
            raise GdosError(
                ErrorCode.PACKAGE_IN_USE,
                f"{name}@{version} is deployed ({where}); destroy those instances "
                "or deploy another version first.",
            )
        self.catalog.delete_package(name, version)
        if not self.catalog.sha_in_use(row["sha256"]):
            await asyncio.to_thread(self.blobs.delete, row["sha256"])
        return {"removed": f"{name}@{version}"}

    # -- fetch by agents (mesh) -----------------------------------------------------
    def on_fetch(self, node: LiveNode, msg: Message) -> None:
        body = msg.body
        key = (node.name, body["fetch"])
        self._cancel(key)
        sha256 = body["sha256"]
        if (
            len(sha256) != 64
            or not SHA256_HEX.issuperset(sha256)
            or not self.catalog.sha_in_use(sha256)
        ):
            self._refuse(node, body["fetch"], ErrorCode.PACKAGE_UNKNOWN, "no such package")
            return
        if sum(1 for k in self.fetches if k[0] == node.name) >= MAX_FETCHES_PER_NODE:
            self.mesh.counters["bad_frames"] += 1
            message = f"more than {MAX_FETCHES_PER_NODE} package fetches at once from one node"
            self._refuse(node, body["fetch"], ErrorCode.LIMIT_EXCEEDED, message)
            return
        fetch = Fetch(node, body["fetch"], max(0, body["credit"]))
        self.fetches[key] = fetch
        fetch.task = asyncio.create_task(self._serve(fetch, sha256, body["offset"]))

    def on_credit(self, node: LiveNode, msg: Message) -> None:
        fetch = self.fetches.get((node.name, msg.body["fetch"]))
        if fetch is not None:
            fetch.credit += max(0, msg.body["credit"])
            fetch.wakeup.set()

    def on_cancel(self, node: LiveNode, msg: Message) -> None:
        self._cancel((node.name, msg.body["fetch"]))

    def node_gone(self, node: LiveNode) -> None:
        """A node went offline or reconnected: its fetches start over from the agent."""
        for key in [k for k in self.fetches if k[0] == node.name]:
            self._cancel(key)

    def close(self) -> None:
        for key in list(self.fetches):
            self._cancel(key)
        for upload in list(self.uploads.values()):
            self._abort(upload)

    def _cancel(self, key: tuple[str, int]) -> None:
        fetch = self.fetches.pop(key, None)
        if fetch is not None and fetch.task is not None:
            fetch.task.cancel()

    async def _serve(self, fetch: Fetch, sha256: str, offset: int) -> None:
        key = (fetch.node.name, fetch.id)
        try:
            path = await asyncio.to_thread(self.blobs.local_path, sha256)
            size = path.stat().st_size
            if not 0 <= offset <= size:
                raise GdosError(ErrorCode.INVALID_ARGUMENT, f"offset {offset} is past the end")
            while offset < size:
                await self._await_credit(fetch)
                offset = await self._send_window(fetch, path, offset, size)
                if offset < 0:
                    return  # disconnected or its queue is full: the agent asks again
        except GdosError as exc:
            self._refuse(fetch.node, fetch.id, exc.code, exc.message)
        except OSError as exc:
            self._refuse(fetch.node, fetch.id, ErrorCode.STORAGE_FAILED, str(exc))
        finally:
            if self.fetches.get(key) is fetch:
                del self.fetches[key]

    @staticmethod
    async def _await_credit(fetch: Fetch) -> None:
        """Wait for the agent's credit; a fetch idle this long holds nothing more."""
        while fetch.credit <= 0:
            fetch.wakeup.clear()
            try:
                await asyncio.wait_for(fetch.wakeup.wait(), FETCH_IDLE_TIMEOUT)
            except TimeoutError:
                raise GdosError(
                    ErrorCode.IDLE_TIMEOUT,
                    f"no credit for {FETCH_IDLE_TIMEOUT:g}s; fetch again from the offset reached",
                ) from None

    async def _send_window(self, fetch: Fetch, path: Path, offset: int, size: int) -> int:
        """Send chunks while credit lasts, with the blob open only meanwhile.

        Returns the next offset, or -1 when the node cannot take more now."""
        with path.open("rb") as source:
            source.seek(offset)
            while offset < size and fetch.credit > 0:
                data = source.read(protocol.PACKAGE_CHUNK_BYTES)
                if not data:
                    raise GdosError(ErrorCode.STORAGE_FAILED, "the stored package shrank")
                body = {"fetch": fetch.id, "offset": offset, "data": data}
                if not self.mesh.send(fetch.node, "pkg.chunk", body):
                    return -1
                fetch.credit -= 1
                offset += len(data)
                await asyncio.sleep(0)  # let other fetches and the mesh run
        return offset

    def _refuse(self, node: LiveNode, fetch_id: int, code: str, message: str) -> None:
        self.mesh.send(
            node, "pkg.error", {"fetch": fetch_id, "code": str(code), "message": message}
        )


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ("name", "version", "sha256", "size", "description")} | {
        "pushed_at": row.get("pushed_at"),
        "pushed_by": row.get("pushed_by"),
    }


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
