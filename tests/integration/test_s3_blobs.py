"""The S3 package store against a real S3 server (moto) on loopback.

moto runs in server mode as its own process, with request signing enforced
through its IAM emulation, so wrong keys are refused the way a real S3 would.
Every test gets its own bucket, created by the store (``s3_create_bucket``).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("minio")
pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")  # installed with moto; used only to create the IAM key

from gdos.daemon.blobs import S3Blobs, open_store  # noqa: E402
from gdos.errors import ErrorCode, GdosError  # noqa: E402
from tests.waiting import free_port, wait_for  # noqa: E402

ALLOW_S3 = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'
)


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto on a free loopback port, with one IAM key allowed s3:* and signing enforced."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
    )
    try:
        wait_for(
            lambda: (
                urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1).status == 200
            ),
            timeout=30,
            what="moto server",
        )
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName="gdos")
        iam.put_user_policy(UserName="gdos", PolicyName="s3", PolicyDocument=ALLOW_S3)
        key = iam.create_access_key(UserName="gdos")["AccessKey"]
        # From now on every request must be signed by a known key.
        enforce = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(enforce, timeout=10).read()
        yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _options(server: S3Server, cache: Path, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "s3",
        "root": cache,
        "s3_endpoint": server.endpoint,
        "s3_bucket": f"gdos-{uuid.uuid4().hex[:12]}",
        "s3_access_key": server.access_key,
        "s3_secret_key": server.secret_key,
        "s3_create_bucket": True,
        **extra,
    }


@pytest.fixture
def options(s3_server: S3Server, tmp_path: Path) -> dict[str, Any]:
    return _options(s3_server, tmp_path / "cache")


@pytest.fixture
def store(options: dict[str, Any]) -> S3Blobs:
    store = open_store(options)
    assert isinstance(store, S3Blobs)
    return store


def _package(tmp_path: Path, size: int) -> tuple[str, Path]:
    data = os.urandom(size)
    source = tmp_path / f"upload-{size}.tmp"
    source.write_bytes(data)
    return hashlib.sha256(data).hexdigest(), source


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(call: Any) -> GdosError:
    with pytest.raises(GdosError) as refused:
        call()
    return refused.value


def test_large_package_round_trip(store: S3Blobs, options: dict[str, Any], tmp_path: Path) -> None:
    sha, source = _package(tmp_path, 20 << 20)
    assert not store.has(sha)
    store.put(sha, source)
    assert store.has(sha) and store.size(sha) == 20 << 20
    assert store.describe() == f"s3 {options['s3_endpoint']}/{options['s3_bucket']}/packages/"
    # A multipart upload's ETag is "<md5 of part md5s>-<part count>".
    etag = store._client.stat_object(store.bucket, f"packages/{sha}.zip").etag
    assert etag and etag.endswith("-4"), etag

    cached = store.local_path(sha)
    assert cached == options["root"] / sha[:2] / f"{sha}.zip"
    assert _sha(cached) == sha
    inode = cached.stat().st_ino
    assert store.local_path(sha).stat().st_ino == inode  # reused, not downloaded again

    store.put(sha, source)  # idempotent
    assert store.size(sha) == 20 << 20

    other = open_store({**options, "root": tmp_path / "empty-cache"})
    again = other.local_path(sha)
    assert again.parent.parent == tmp_path / "empty-cache" and _sha(again) == sha


def test_delete_and_missing_key(store: S3Blobs, tmp_path: Path) -> None:
    sha, source = _package(tmp_path, 1000)
    store.put(sha, source)
    cached = store.local_path(sha)
    store.delete(sha)
    assert not store.has(sha) and not cached.exists()
    for call in (lambda: store.size(sha), lambda: store.local_path(sha)):
        error = _refused(call)
        assert error.code == ErrorCode.PACKAGE_UNKNOWN and sha[:12] in error.message
    store.delete(sha)  # deleting again is not an error
    assert not list(cached.parent.iterdir())  # no partial download left behind


def test_corrupt_cache_is_fetched_again(store: S3Blobs, tmp_path: Path) -> None:
    sha, source = _package(tmp_path, 300_000)
    store.put(sha, source)
    cached = store.local_path(sha)
    cached.write_bytes(b"truncated")
    assert _sha(store.local_path(sha)) == sha


def test_corrupt_object_is_refused(store: S3Blobs, tmp_path: Path) -> None:
    sha, _ = _package(tmp_path, 1000)
    _, wrong = _package(tmp_path, 999)
    store._client.fput_object(store.bucket, store.key(sha), str(wrong))
    error = _refused(lambda: store.local_path(sha))
    assert error.code == ErrorCode.PACKAGE_CORRUPT and "upload the package again" in error.message
    assert not (store.cache_root / sha[:2] / f"{sha}.zip").exists()


def test_credentials_from_environment(s3_server: S3Server, tmp_path: Path) -> None:
    options = _options(s3_server, tmp_path, s3_access_key=None, s3_secret_key=None)
    env = {"GDOS_S3_ACCESS_KEY": s3_server.access_key, "GDOS_S3_SECRET_KEY": s3_server.secret_key}
    store = open_store(options, env=env)
    sha, source = _package(tmp_path, 10)
    store.put(sha, source)
    assert store.has(sha)


@pytest.mark.parametrize(
    "keys",
    [
        {"s3_access_key": "AKIAWRONGWRONGWRONG0", "s3_secret_key": "nope"},
        {"s3_secret_key": "not-the-secret"},
    ],
)
def test_wrong_credentials(s3_server: S3Server, tmp_path: Path, keys: dict[str, str]) -> None:
    error = _refused(lambda: open_store(_options(s3_server, tmp_path, **keys)))
    assert error.code == ErrorCode.STORAGE_FAILED
    assert "refused the credentials" in error.message and "GDOS_S3_SECRET_KEY" in error.message


def test_missing_bucket_without_create(s3_server: S3Server, tmp_path: Path) -> None:
    error = _refused(lambda: open_store(_options(s3_server, tmp_path, s3_create_bucket=False)))
    assert error.code == ErrorCode.STORAGE_FAILED
    assert "does not exist" in error.message and "--s3-create-bucket" in error.message


def test_unreachable_endpoint(s3_server: S3Server, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    error = _refused(lambda: open_store(_options(s3_server, tmp_path, s3_endpoint=dead)))
    assert time.monotonic() - started < 10
    assert error.code == ErrorCode.STORAGE_FAILED
    assert dead in error.message and "--s3-endpoint" in error.message


def test_daemon_on_s3_push_deploy_and_restart(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole path with --package-store s3: push to the bucket, an agent fetches it,
    and a daemon restarted with an empty cache still serves it from the bucket."""
    from tests.harness import Fleet
    from tests.integration.services_kit import SLEEPER, ok, package, status

    monkeypatch.setenv("GDOS_S3_ACCESS_KEY", s3_server.access_key)
    monkeypatch.setenv("GDOS_S3_SECRET_KEY", s3_server.secret_key)
    bucket = f"gdos-{uuid.uuid4().hex[:12]}"
    fleet = Fleet()
    try:
        fleet.start_daemon(
            "--package-store", "s3", "--s3-endpoint", s3_server.endpoint,
            "--s3-bucket", bucket, "--s3-create-bucket",
        )  # fmt: skip
        assert f"packages in s3 {s3_server.endpoint}/{bucket}/" in fleet.daemon.log_text()
        fleet.start_agent("n1", join=fleet.token())
        fleet.wait_online("n1")
        zip_path = package(tmp_path, "sleeper", SLEEPER)
        ok(fleet.gdos("package", "push", str(zip_path)))
        sha = hashlib.sha256(zip_path.read_bytes()).hexdigest()
        store = S3Blobs(
            endpoint=s3_server.endpoint,
            bucket=bucket,
            access_key=s3_server.access_key,
            secret_key=s3_server.secret_key,
            cache_root=tmp_path / "probe-cache",
        )
        assert store.has(sha), "the package must be in the bucket"

        fleet.stop_daemon()
        import shutil

        shutil.rmtree(fleet.daemon_home / "state" / "packages", ignore_errors=True)  # no cache
        fleet.start_daemon()
        fleet.wait_online("n1")
        ok(fleet.gdos("system", "create", "s3sys"))
        ok(fleet.gdos("system", "add", "s3sys", "m", "--package", "sleeper"))
        ok(fleet.gdos("deploy", "s3sys", "--node", "n1", "--wait"))
        assert status(fleet, "s3sys")["s3sys/m@n1"]["state"] == "stopped"
        ok(fleet.gdos("destroy", "s3sys", "--yes"))
    finally:
        fleet.close()
