"""Local package storage: atomic, idempotent, content-addressed; and the option checks.

The S3 backend runs against a real S3 server in tests/integration/test_s3_blobs.py.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gdos.daemon.blobs import LocalBlobs, open_store
from gdos.errors import ErrorCode, GdosError


def _package(tmp_path: Path, data: bytes, name: str = "upload.tmp") -> tuple[str, Path]:
    source = tmp_path / name
    source.write_bytes(data)
    return hashlib.sha256(data).hexdigest(), source


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobs:
    return LocalBlobs(tmp_path / "blobs")


def test_put_then_read_back(store: LocalBlobs, tmp_path: Path) -> None:
    sha, source = _package(tmp_path, b"zip bytes" * 1000)
    store.put(sha, source)
    path = store.local_path(sha)
    assert path == store.root / sha[:2] / f"{sha}.zip"
    assert path.read_bytes() == source.read_bytes()
    assert store.has(sha) and store.size(sha) == 9000
    assert source.exists()  # copied, the caller still owns its temp file
    assert store.describe() == f"local {store.root}"


def test_put_is_atomic_and_leaves_no_temp_files(
    store: LocalBlobs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha, source = _package(tmp_path, os.urandom(3 << 20))

    def fail_sync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail_sync)
    with pytest.raises(GdosError) as failed:
        store.put(sha, source)
    assert failed.value.code == ErrorCode.STORAGE_FAILED
    assert "No space left" in failed.value.message
    assert not store.has(sha)
    assert list((store.root / sha[:2]).iterdir()) == []  # no torn blob, no temp left
    monkeypatch.undo()
    store.put(sha, source)
    assert hashlib.sha256(store.local_path(sha).read_bytes()).hexdigest() == sha
    assert [p.name for p in (store.root / sha[:2]).iterdir()] == [f"{sha}.zip"]


def test_put_is_idempotent(store: LocalBlobs, tmp_path: Path) -> None:
    sha, source = _package(tmp_path, b"same package")
    store.put(sha, source)
    first = store.local_path(sha).stat()
    store.put(sha, source)
    again = store.local_path(sha).stat()
    assert (first.st_ino, first.st_mtime_ns) == (again.st_ino, again.st_mtime_ns)


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "ab", "A" * 64, "g" * 64, "a" * 63 + "/", "a" * 65, ""]
)
def test_invalid_sha_refused(store: LocalBlobs, tmp_path: Path, bad: str) -> None:
    source = tmp_path / "x"
    source.write_bytes(b"x")
    for call in (
        lambda: store.put(bad, source),
        lambda: store.has(bad),
        lambda: store.local_path(bad),
        lambda: store.delete(bad),
    ):
        with pytest.raises(GdosError) as refused:
            call()
        assert refused.value.code == ErrorCode.INVALID_ARGUMENT
    assert not store.root.exists()


def test_delete_and_missing(store: LocalBlobs, tmp_path: Path) -> None:
    sha, source = _package(tmp_path, b"to be deleted")
    store.put(sha, source)
    store.delete(sha)
    assert not store.has(sha)
    for call in (lambda: store.size(sha), lambda: store.local_path(sha)):
        with pytest.raises(GdosError) as missing:
            call()
        assert missing.value.code == ErrorCode.PACKAGE_UNKNOWN
        assert sha[:12] in missing.value.message
    store.delete(sha)  # deleting again is not an error


def test_open_store_local(tmp_path: Path) -> None:
    store = open_store({"backend": "local", "root": tmp_path})
    assert isinstance(store, LocalBlobs) and store.root == tmp_path
    assert isinstance(open_store({"root": str(tmp_path)}), LocalBlobs)


S3 = {
    "backend": "s3",
    "s3_endpoint": "http://127.0.0.1:9000",
    "s3_bucket": "gdos",
    "s3_access_key": "ak",
    "s3_secret_key": "sk",
}


@pytest.mark.parametrize(
    ("options", "env", "says"),
    [
        ({"backend": "ftp"}, {}, "use 'local' or 's3'"),
        ({**S3, "s3_endpoint": None}, {}, "--s3-endpoint"),
        ({**S3, "s3_endpoint": "127.0.0.1:9000"}, {}, "--s3-endpoint"),
        ({**S3, "s3_endpoint": "http://h:9000/bucket"}, {}, "--s3-endpoint"),
        ({**S3, "s3_bucket": ""}, {}, "--s3-bucket"),
        ({**S3, "s3_access_key": None}, {}, "GDOS_S3_ACCESS_KEY in the environment"),
        ({**S3, "s3_secret_key": None}, {"GDOS_S3_ACCESS_KEY": "x"}, "GDOS_S3_SECRET_KEY"),
    ],
)
def test_open_store_refuses_incomplete_settings(
    tmp_path: Path, options: dict, env: dict, says: str
) -> None:
    with pytest.raises(GdosError) as refused:
        open_store({**options, "root": tmp_path}, env=env)
    assert refused.value.code == ErrorCode.INVALID_ARGUMENT
    assert says in refused.value.message


def test_open_store_needs_a_root() -> None:
    with pytest.raises(GdosError) as refused:
        open_store({"backend": "local"})
    assert refused.value.code == ErrorCode.INVALID_ARGUMENT
