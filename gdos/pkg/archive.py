"""Zip safety for packages: inspect before storing, extract before running.

A package is a zip with ``service.json`` at its root. Whoever pushes it may
be careless or hostile, so before a byte lands on disk every entry name must
stay inside the package, every entry must be a directory, a regular file or
a symlink that resolves inside the package, and the sizes must stay within
``Limits`` (including compression ratios that look like a zip bomb).

Hard links cannot be represented in a zip (there is no link-to-entry field),
so there is nothing to refuse; fifos, devices and sockets can be (unix mode
bits in ``external_attr``) and are refused.

Declared sizes in a zip can lie, so inspection (at push) decompresses every
entry once, in constant memory, checking its size and CRC-32; extraction
counts the bytes it really writes as well and stops when an entry's content
does not match its header.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdos.errors import ErrorCode, GdosError
from gdos.pkg.archive_build import build_zip  # noqa: F401  (re-exported)
from gdos.pkg.manifest import (
    DRIVE_PATTERN,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    FieldProblem,
    Manifest,
    ManifestError,
    check_relative_path,
    normalize_relative_path,
    parse_manifest,
)

COPY_BUFFER = 64 * 1024
MAX_SYMLINK_TARGET = 4096
MAX_SYMLINK_DEPTH = 40
_ENCRYPTED = 0x1
_SPECIAL_KINDS = {
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket",
}


@dataclass(frozen=True)
class Limits:
    """What a package may unpack to. Ratios are judged only for entries (and
    totals) above ``ratio_min_bytes``, so tiny, very compressible files pass."""

    max_total_bytes: int = 2 * 1024**3
    max_entries: int = 100_000
    max_ratio: float = 200
    max_manifest_bytes: int = MAX_MANIFEST_BYTES
    ratio_min_bytes: int = 1024 * 1024


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class PackageInfo:
    manifest: Manifest
    entry_count: int
    total_bytes: int  # uncompressed, as declared (extraction enforces it)


@dataclass(frozen=True)
class _Entry:
    info: zipfile.ZipInfo
    name: str  # normalised: no empty or '.' components, no trailing '/'
    kind: str  # "file", "dir" or "symlink"
    target: str | None = None  # symlinks only

    @property
    def raw(self) -> str:
        return self.info.orig_filename


def _unsafe(message: str) -> GdosError:
    return GdosError(ErrorCode.ARCHIVE_UNSAFE, message)


def _invalid(message: str) -> GdosError:
    return GdosError(ErrorCode.ARCHIVE_INVALID, message)


# -- reading the zip ---------------------------------------------------------------------


@contextlib.contextmanager
def _open_zip(path: Path, shown_as: str | None = None) -> Iterator[zipfile.ZipFile]:
    """Open ``path``; a refusal names ``shown_as`` (the operator's file name) if given."""
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise _invalid(f"{path}: no such file; check the path of the package.") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise _invalid(
            f"{shown_as or Path(path).name} is not a readable zip file ({exc}); "
            "build the package as a zip with service.json at its root."
        ) from None
    with archive:
        yield archive


def _read_member(archive: zipfile.ZipFile, entry: _Entry, limit: int) -> bytes:
    """At most ``limit`` bytes of a small entry (manifest, symlink target)."""
    try:
        with archive.open(entry.info) as handle:
            return handle.read(limit)
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        raise _invalid(
            f"zip entry {entry.raw!r} cannot be read ({exc}); the zip is corrupt, build it again."
        ) from None


# -- inspection -----------------------------------------------------------------------


def _classify(info: zipfile.ZipInfo) -> _Entry | None:
    """One entry, its name checked; None for a harmless entry naming the root (``./``)."""
    raw = info.orig_filename
    if info.flag_bits & _ENCRYPTED:
        raise _invalid(f"zip entry {raw!r} is encrypted; rebuild the zip without encryption.")
    is_dir_name = raw.endswith("/")
    if is_dir_name and not raw.startswith("/") and set(raw.split("/")) <= {"", "."}:
        return None
    problem = check_relative_path(raw)
    if problem:
        raise _unsafe(
            f"zip entry {raw!r}: its name {problem}; rebuild the zip without it, "
            "using only relative paths inside the package."
        )
    file_type = stat.S_IFMT(info.external_attr >> 16)
    kind = {0: "file", stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}.get(
        file_type, _SPECIAL_KINDS.get(file_type, f"file of type {file_type:#o}")
    )
    if is_dir_name and kind not in ("file", "dir"):
        raise _unsafe(
            f"zip entry {raw!r} is named like a directory but is a {kind}; rebuild the zip."
        )
    if kind not in ("file", "dir", "symlink"):
        raise _unsafe(
            f"zip entry {raw!r} is a {kind}; a package holds only regular files, directories "
            "and symlinks, so rebuild the zip without it."
        )
    return _Entry(info, normalize_relative_path(raw), "dir" if is_dir_name else kind)


def _collect(infos: list[zipfile.ZipInfo]) -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    for info in infos:
        entry = _classify(info)
        if entry is None:
            continue
        if entry.name in entries:
            raise _unsafe(
                f"zip entries {entries[entry.name].raw!r} and {entry.raw!r} both name "
                f"{entry.name!r}; rebuild the zip without duplicate entries."
            )
        entries[entry.name] = entry
    return entries


def _check_parents(entries: Mapping[str, _Entry]) -> None:
    """No entry may lie below a symlink (it would be written through it) or a file."""
    for entry in entries.values():
        parts = entry.name.split("/")
        for depth in range(1, len(parts)):
            parent = entries.get("/".join(parts[:depth]))
            if parent is None or parent.kind == "dir":
                continue
            if parent.kind == "symlink":
                raise _unsafe(
                    f"zip entry {entry.raw!r} lies below the symlink {parent.raw!r}; "
                    "rebuild the zip without writing through symlinks."
                )
            raise _invalid(
                f"zip entry {entry.raw!r} lies below {parent.raw!r}, which is a file; "
                "rebuild the zip."
            )


def _check_sizes(infos: list[zipfile.ZipInfo], limits: Limits) -> int:
    if len(infos) > limits.max_entries:
        raise _unsafe(
            f"the zip has {len(infos)} entries, over the limit of {limits.max_entries}; "
            "rebuild it with fewer files (archive them inside the package if needed)."
        )
    total = sum(info.file_size for info in infos)
    if total > limits.max_total_bytes:
        raise _unsafe(
            f"the package unpacks to {total} bytes, over the limit of {limits.max_total_bytes} "
            "bytes; rebuild it smaller."
        )
    for info in infos:
        _check_ratio(
            f"zip entry {info.orig_filename!r}", info.file_size, info.compress_size, limits
        )
    packed = sum(info.compress_size for info in infos)
    _check_ratio("the zip as a whole", total, packed, limits)
    return total


def _check_ratio(what: str, size: int, packed: int, limits: Limits) -> None:
    if size <= limits.ratio_min_bytes:
        return
    ratio = size / max(packed, 1)
    if ratio > limits.max_ratio:
        raise _unsafe(
            f"{what} expands {ratio:.0f}x ({packed} -> {size} bytes), which looks like a zip "
            f"bomb (limit {limits.max_ratio:g}x); rebuild the zip without it."
        )


def _read_symlinks(archive: zipfile.ZipFile, entries: dict[str, _Entry]) -> None:
    for name, entry in list(entries.items()):
        if entry.kind != "symlink":
            continue
        data = _read_member(archive, entry, MAX_SYMLINK_TARGET + 1)
        try:
            target = data.decode("utf-8")
        except UnicodeDecodeError:
            target = ""
        if not target or len(data) > MAX_SYMLINK_TARGET or "\x00" in target:
            raise _unsafe(
                f"symlink {entry.raw!r} has an empty, overlong or non-UTF-8 target; "
                "rebuild the zip without it."
            )
        entries[name] = _Entry(entry.info, entry.name, "symlink", target)
    links = {e.name: e.target for e in entries.values() if e.target is not None}
    for entry in entries.values():
        if entry.target is not None:
            _check_symlink(entry, links)


def _check_symlink(entry: _Entry, links: Mapping[str, str]) -> None:
    target = entry.target or ""
    if target.startswith("/") or "\\" in target or DRIVE_PATTERN.match(target):
        raise _unsafe(
            f"symlink {entry.raw!r} points to {target!r}, an absolute path; "
            "rebuild the zip without it or make the link relative."
        )
    if _resolve(entry.name.split("/")[:-1], target, links, 0) is None:
        raise _unsafe(
            f"symlink {entry.raw!r} points to {target!r}, outside the package "
            "(or around a loop of links); rebuild the zip without it."
        )


def _resolve(
    base: list[str], target: str, links: Mapping[str, str], depth: int
) -> list[str] | None:
    """Resolve ``target`` from directory ``base`` as the kernel would, following the
    package's own symlinks; None if it leaves the package root or loops."""
    parts = list(base)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(part)
        link = links.get("/".join(parts))
        if link is not None:
            if depth >= MAX_SYMLINK_DEPTH or link.startswith("/"):
                return None
            resolved = _resolve(parts[:-1], link, links, depth + 1)
            if resolved is None:
                return None
            parts = resolved
    return parts


def _load_manifest(
    archive: zipfile.ZipFile, entries: Mapping[str, _Entry], limits: Limits
) -> Manifest:
    entry = entries.get(MANIFEST_NAME)
    if entry is None:
        nested = [e.raw for e in entries.values() if e.name.endswith("/" + MANIFEST_NAME)]
        hint = (
            f" (found {nested[0]!r}: zip the contents of that folder, not the folder)"
            if nested
            else ""
        )
        raise _invalid(f"no service.json at the root of the package{hint}; add one.")
    if entry.kind != "file":
        raise _invalid(f"service.json is a {entry.kind}; it must be a regular file.")
    raw = _read_member(archive, entry, limits.max_manifest_bytes + 1)
    manifest = parse_manifest(raw, max_bytes=limits.max_manifest_bytes)
    problems: list[FieldProblem] = []
    for field in ("entrypoint", "stop_entrypoint"):
        value = getattr(manifest, field)
        found = None if value is None else entries.get(normalize_relative_path(value))
        if value is None or (found is not None and found.kind == "file"):
            continue
        what = "not in the package" if found is None else f"a {found.kind}, not a regular file"
        problems.append(FieldProblem(field, f"is {what} (got {value!r})", "a file in the zip"))
    if problems:
        raise ManifestError(problems)
    return manifest


def _inspect(archive: zipfile.ZipFile, limits: Limits) -> tuple[dict[str, _Entry], PackageInfo]:
    infos = archive.infolist()
    total = _check_sizes(infos, limits)
    entries = _collect(infos)
    _check_parents(entries)
    _read_symlinks(archive, entries)
    manifest = _load_manifest(archive, entries, limits)
    for entry in entries.values():
        if entry.kind == "file":
            _check_content(archive, entry)
    return entries, PackageInfo(manifest, len(infos), total)


def _check_content(archive: zipfile.ZipFile, entry: _Entry) -> None:
    """Decompress one entry, discarding the bytes, to prove its declared size and CRC.

    Declared sizes can lie (1,000 bytes declared for 300 MiB). zipfile reads
    at most the declared size and then checks the CRC-32, so a lie is caught
    after at most that many bytes, in COPY_BUFFER steps: constant memory, and
    the package is refused at push instead of being stored.
    """
    declared, count = entry.info.file_size, 0
    try:
        with archive.open(entry.info) as source:
            while chunk := source.read(COPY_BUFFER):
                count += len(chunk)
                if count > declared:  # zipfile stops at the declared size; never trust it
                    raise _mismatch(entry, "is larger than declared")
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        raise _mismatch(entry, f"cannot be read ({exc})") from None
    if count != declared:
        raise _mismatch(entry, f"has {count} bytes, not the declared {declared}")


def inspect_zip(
    path: Path, limits: Limits = DEFAULT_LIMITS, shown_as: str | None = None
) -> PackageInfo:
    """Check a package zip without extracting it; return its manifest and sizes.

    Raises GdosError: ARCHIVE_INVALID (not a zip, corrupt, encrypted, no
    service.json at the root), ARCHIVE_UNSAFE (paths leaving the package,
    duplicates, escaping symlinks, special files, sizes over ``limits``) or
    ManifestError (MANIFEST_INVALID, including a missing entrypoint).
    ``shown_as`` is the name the operator knows the file by (an upload is
    stored under a temporary name).
    """
    with _open_zip(path, shown_as) as archive:
        return _inspect(archive, limits)[1]


# -- extraction ---------------------------------------------------------------------------


class _CountingSink:
    """A write target that refuses more than ``limit`` bytes (declared sizes can lie)."""

    def __init__(self, handle: Any, limit: int, entry: _Entry) -> None:
        self.handle, self.limit, self.entry, self.count = handle, limit, entry, 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        if self.count > self.limit:
            raise _mismatch(self.entry, "is larger than declared")
        return int(self.handle.write(data))


def _mismatch(entry: _Entry, what: str) -> GdosError:
    return _unsafe(
        f"zip entry {entry.raw!r} {what}: its content does not match the declared size or "
        "CRC-32 in the zip header (corrupt, or sizes that lie); rebuild the zip."
    )


def _write_file(archive: zipfile.ZipFile, entry: _Entry, target: Path) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    declared = entry.info.file_size
    with os.fdopen(os.open(target, flags, 0o600), "wb") as out:
        sink = _CountingSink(out, declared, entry)
        try:
            with archive.open(entry.info) as source:
                shutil.copyfileobj(source, sink, COPY_BUFFER)
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise _mismatch(entry, f"cannot be read ({exc})") from None
    if sink.count != declared:
        raise _mismatch(entry, f"has {sink.count} bytes, not the declared {declared}")
    mode = entry.info.external_attr >> 16
    os.chmod(target, 0o755 if mode & stat.S_IXUSR else 0o644)
    return sink.count


def _extract_into(
    archive: zipfile.ZipFile, entries: Mapping[str, _Entry], root: Path, manifest: Manifest
) -> None:
    for entry in entries.values():
        target = root / entry.name
        if entry.kind == "dir":
            target.mkdir(mode=0o755, parents=True, exist_ok=True)
        elif entry.kind == "file":
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_file(archive, entry, target)
    for entry in entries.values():  # after the files: nothing is ever written through one
        if entry.target is not None:
            (root / entry.name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(entry.target, root / entry.name)
    for program in (manifest.entrypoint, manifest.stop_entrypoint):
        if program is not None:
            os.chmod(root / normalize_relative_path(program), 0o755)
    os.chmod(root, 0o755)


def extract_zip(path: Path, dest: Path, limits: Limits = DEFAULT_LIMITS) -> PackageInfo:
    """Inspect, then unpack into a fresh directory ``dest`` (which must not exist).

    Entries go into a temporary directory next to ``dest`` that is renamed to
    ``dest`` at the end, so ``dest`` either holds the whole package or does
    not exist. Regular files get 0o755 or 0o644 (owner-exec kept, setuid,
    setgid and sticky dropped); the entrypoints are made executable.
    """
    dest = Path(dest)
    if dest.exists() or dest.is_symlink():
        raise GdosError(ErrorCode.ALREADY_EXISTS, f"{dest} already exists; extract elsewhere.")
    with _open_zip(path) as archive:
        entries, info = _inspect(archive, limits)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            root = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        except OSError as exc:
            raise _storage_failed(path, dest, exc) from None
        try:
            _extract_into(archive, entries, root, info.manifest)
            os.rename(root, dest)
        except OSError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise _storage_failed(path, dest, exc) from None
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
    return info


def _storage_failed(path: Path, dest: Path, exc: OSError) -> GdosError:
    return GdosError(
        ErrorCode.STORAGE_FAILED,
        f"cannot extract {Path(path).name} into {dest}: {exc.strerror or exc}; "
        "check free space and permissions.",
    )
