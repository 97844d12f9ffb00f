"""Where the daemon keeps package bytes: a local folder or an S3 bucket.

Packages are content-addressed by their sha256, so a blob never changes once
written: ``put`` is idempotent, readers need no locks, and a cached copy can be
checked against its own name. The daemon reads packages in chunks from a local
file, so every backend hands out a local path (S3 through a read-through
cache). These calls block; the daemon runs them with ``asyncio.to_thread``.

The S3 client (minio) is imported only when the S3 backend is built, so a
daemon on local storage does not pay for it at start.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar
from urllib.parse import urlsplit

from gdos.errors import ErrorCode, GdosError

if TYPE_CHECKING:
    from minio import Minio

T = TypeVar("T")

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
DEFAULT_PREFIX = "packages/"


class BlobStore(Protocol):
    def put(self, sha256: str, source: Path) -> None: ...
    def has(self, sha256: str) -> bool: ...
    def size(self, sha256: str) -> int: ...
    def local_path(self, sha256: str) -> Path: ...
    def delete(self, sha256: str) -> None: ...
    def describe(self) -> str: ...


def check_sha(sha256: str) -> str:
    """The name unchanged if it is 64 lowercase hex digits; it becomes a path and a key."""
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"{sha256!r} is not a package id: give its sha256 as 64 lowercase hex digits",
        )
    return sha256


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _blob_path(root: Path, sha256: str) -> Path:
    """root/ab/<sha>.zip: two-letter fan-out keeps directories small on big stores."""
    return root / sha256[:2] / f"{check_sha(sha256)}.zip"


@contextmanager
def _atomic_file(dest: Path) -> Iterator[Any]:
    """A temp file beside ``dest`` that replaces it only once fully written and synced.

    Readers therefore see the old state or the whole new file, never a torn
    one, even if the daemon dies mid-write. Temp names start with a dot and
    never match a blob name.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def _storage_failed(what: str, exc: OSError) -> NoReturn:
    raise GdosError(
        ErrorCode.STORAGE_FAILED,
        f"{what} failed: {exc.strerror or exc}; check free space and permissions there",
    ) from exc


def _unknown(sha256: str, where: str) -> GdosError:
    return GdosError(
        ErrorCode.PACKAGE_UNKNOWN,
        f"package {sha256[:12]} is not in {where}: upload it again",
    )


class LocalBlobs:
    """Blobs as files under one folder on the daemon's disk."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        return _blob_path(self.root, sha256)

    def put(self, sha256: str, source: Path) -> None:
        dest = self.path(sha256)
        if dest.is_file():
            return
        try:
            with _atomic_file(dest) as out, Path(source).open("rb") as src:
                shutil.copyfileobj(src, out, _CHUNK)
        except OSError as exc:
            _storage_failed(f"storing package {sha256[:12]} in {self.root}", exc)

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def size(self, sha256: str) -> int:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            raise _unknown(sha256, f"local storage {self.root}") from None

    def local_path(self, sha256: str) -> Path:
        path = self.path(sha256)
        if not path.is_file():
            raise _unknown(sha256, f"local storage {self.root}")
        return path

    def delete(self, sha256: str) -> None:
        """Remove the blob; deleting one that is not there is not an error."""
        try:
            self.path(sha256).unlink(missing_ok=True)
        except OSError as exc:
            _storage_failed(f"deleting package {sha256[:12]} from {self.root}", exc)

    def describe(self) -> str:
        return f"local {self.root}"


class S3Blobs:
    """Blobs as objects ``<prefix><sha>.zip`` in an S3 bucket, with a local read cache.

    Construction checks the bucket (creating it when ``create_bucket``), so a
    daemon with a wrong endpoint or wrong keys refuses to start instead of
    failing the first upload. Cached copies are verified against their sha256
    before first use and again whenever the file changed on disk; a bad copy
    is fetched again, and an object whose bytes do not match its name is
    refused with PACKAGE_CORRUPT.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        cache_root: Path,
        prefix: str = DEFAULT_PREFIX,
        region: str | None = None,
        create_bucket: bool = False,
    ) -> None:
        import certifi
        import urllib3
        from minio import Minio

        url = urlsplit(endpoint)
        self.endpoint = f"{url.scheme}://{url.netloc}"
        self.bucket = bucket
        self.prefix = prefix
        self.cache_root = Path(cache_root)
        self._verified: dict[str, tuple[int, int, int]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # minio's default pool waits 5 minutes to connect and retries 5 times:
        # a daemon with a dead endpoint should say so within seconds.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10, read=120),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(
                total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
        self._client: Minio = Minio(
            url.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=url.scheme == "https",
            region=region,
            http_client=http,
        )
        self._ensure_bucket(create_bucket)

    def key(self, sha256: str) -> str:
        return f"{self.prefix}{check_sha(sha256)}.zip"

    def _ensure_bucket(self, create: bool) -> None:
        if self._call(lambda: self._client.bucket_exists(self.bucket)):
            return
        if not create:
            raise GdosError(
                ErrorCode.STORAGE_FAILED,
                f"bucket {self.bucket!r} does not exist at {self.endpoint}: create it, or "
                "start the daemon with --s3-create-bucket; check --s3-endpoint and --s3-bucket",
            )
        self._call(lambda: self._client.make_bucket(self.bucket))

    def _call(self, action: Callable[[], T], sha256: str | None = None) -> T:
        """Run a client call, turning its errors into GdosErrors that say what to check."""
        from minio.error import MinioException, S3Error
        from urllib3.exceptions import HTTPError

        try:
            return action()
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject") and sha256:
                raise _unknown(sha256, self.describe()) from exc
            raise GdosError(ErrorCode.STORAGE_FAILED, self._explain(exc.code, exc)) from exc
        except HTTPError as exc:
            reason = str(getattr(exc, "reason", None) or exc).rsplit(": ", 1)[-1]
            raise GdosError(
                ErrorCode.STORAGE_FAILED,
                f"cannot reach S3 at {self.endpoint} ({reason}): "
                "check --s3-endpoint and that the server is up",
            ) from exc
        except (MinioException, ValueError) as exc:
            # ValueError: minio's refusal of an unusable bucket name or answer.
            raise GdosError(
                ErrorCode.STORAGE_FAILED,
                f"S3 at {self.endpoint} cannot be used ({exc}): "
                "check --s3-endpoint points at an S3 server and --s3-bucket is a valid name",
            ) from exc

    def _explain(self, code: str | None, exc: Exception) -> str:
        if code == "NoSuchBucket":
            return (
                f"bucket {self.bucket!r} does not exist at {self.endpoint}: create it, or start "
                "the daemon with --s3-create-bucket; check --s3-endpoint and --s3-bucket"
            )
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"):
            return (
                f"S3 at {self.endpoint} refused the credentials ({code}): check "
                "GDOS_S3_ACCESS_KEY and GDOS_S3_SECRET_KEY in the daemon's environment and that "
                f"the key may read and write bucket {self.bucket!r}"
            )
        return (
            f"S3 at {self.endpoint} refused the request on bucket {self.bucket!r} "
            f"({code}: {getattr(exc, 'message', exc)}); check --s3-endpoint and --s3-bucket"
        )

    def put(self, sha256: str, source: Path) -> None:
        """Upload ``source`` unless the object is there; minio splits big files into parts."""
        if self.has(sha256):
            return
        self._call(lambda: self._client.fput_object(self.bucket, self.key(sha256), str(source)))

    def has(self, sha256: str) -> bool:
        try:
            self.size(sha256)
        except GdosError as exc:
            if exc.code == ErrorCode.PACKAGE_UNKNOWN:
                return False
            raise
        return True

    def size(self, sha256: str) -> int:
        key = self.key(sha256)
        stat = self._call(lambda: self._client.stat_object(self.bucket, key), sha256)
        return int(stat.size or 0)

    def local_path(self, sha256: str) -> Path:
        """The cached copy, downloaded (once, even with concurrent callers) and verified."""
        path = _blob_path(self.cache_root, sha256)
        with self._lock(sha256):
            if path.is_file() and self._cached_ok(sha256, path):
                return path
            self._download(sha256, path)
            if not self._cached_ok(sha256, path):
                path.unlink(missing_ok=True)
                raise GdosError(
                    ErrorCode.PACKAGE_CORRUPT,
                    f"package {sha256[:12]} in {self.describe()} does not match its sha256: "
                    "delete it and upload the package again",
                )
            return path

    def _lock(self, sha256: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(sha256, threading.Lock())

    def _cached_ok(self, sha256: str, path: Path) -> bool:
        """True if the copy's bytes hash to its name; hashed again only when it changed."""
        st = path.stat()
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._verified.get(sha256) == stamp:
            return True
        if file_sha256(path) != sha256:
            self._verified.pop(sha256, None)
            return False
        self._verified[sha256] = stamp
        return True

    def _download(self, sha256: str, path: Path) -> None:
        key = self.key(sha256)

        def fetch() -> None:
            response = self._client.get_object(self.bucket, key)
            try:
                with _atomic_file(path) as out:
                    for chunk in response.stream(_CHUNK):
                        out.write(chunk)
            finally:
                response.close()
                response.release_conn()

        try:
            self._call(fetch, sha256)
        except OSError as exc:
            _storage_failed(f"caching package {sha256[:12]} in {self.cache_root}", exc)

    def delete(self, sha256: str) -> None:
        """Remove the object and the cached copy; S3 deletes are idempotent too."""
        key = self.key(sha256)
        self._call(lambda: self._client.remove_object(self.bucket, key))
        with self._lock(sha256):
            self._verified.pop(sha256, None)
            _blob_path(self.cache_root, sha256).unlink(missing_ok=True)

    def describe(self) -> str:
        return f"s3 {self.endpoint}/{self.bucket}/{self.prefix}"


def open_store(options: Mapping[str, Any], env: Mapping[str, str] | None = None) -> BlobStore:
    """The store the daemon's options ask for; refuses incomplete S3 settings.

    S3 keys may come from GDOS_S3_ACCESS_KEY / GDOS_S3_SECRET_KEY (read from
    ``env``, default the process environment) so they stay off the command
    line; options win over the environment.
    """
    env = os.environ if env is None else env
    backend = options.get("backend") or "local"
    root = options.get("root")
    if not root:
        raise GdosError(ErrorCode.INVALID_ARGUMENT, "package storage needs a root folder")
    if backend == "local":
        return LocalBlobs(Path(root))
    if backend != "s3":
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"unknown package storage backend {backend!r}: use 'local' or 's3'",
        )
    endpoint = str(options.get("s3_endpoint") or "")
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"S3 storage needs --s3-endpoint as http(s)://host:port, not {endpoint!r}",
        )
    bucket = options.get("s3_bucket")
    access = options.get("s3_access_key") or env.get("GDOS_S3_ACCESS_KEY")
    secret = options.get("s3_secret_key") or env.get("GDOS_S3_SECRET_KEY")
    missing = [
        name
        for name, value in (
            ("--s3-bucket", bucket),
            ("GDOS_S3_ACCESS_KEY in the environment", access),
            ("GDOS_S3_SECRET_KEY in the environment", secret),
        )
        if not value
    ]
    if missing:
        raise GdosError(ErrorCode.INVALID_ARGUMENT, f"S3 storage needs {', '.join(missing)}")
    prefix = str(options.get("s3_prefix", DEFAULT_PREFIX) or "").lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return S3Blobs(
        endpoint=endpoint,
        bucket=str(bucket),
        access_key=str(access),
        secret_key=str(secret),
        cache_root=Path(root),
        prefix=prefix,
        region=options.get("s3_region") or None,
        create_bucket=bool(options.get("s3_create_bucket")),
    )
