"""Package zips: every unsafe archive refused by name, safe ones extracted atomically."""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gdos.errors import ErrorCode, GdosError
from gdos.pkg.archive import Limits, PackageInfo, build_zip, extract_zip, inspect_zip
from gdos.pkg.manifest import ManifestError

MANIFEST: dict[str, Any] = {"name": "web", "version": "1.0.0", "entrypoint": "bin/run.sh"}
RUN = b"#!/bin/sh\necho hello\n"
REG = stat.S_IFREG


def write_zip(
    path: Path,
    entries: Sequence[tuple[str, bytes | str, int]],
    *,
    manifest: dict[str, Any] | None = MANIFEST,
    with_entrypoint: bool = True,
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """A zip written entry by entry with any name and any unix mode (type bits included)."""
    base: list[tuple[str, bytes | str, int]] = []
    if manifest is not None:
        base.append(("service.json", json.dumps(manifest), REG | 0o644))
    if with_entrypoint:
        base.append(("bin/run.sh", RUN, REG | 0o755))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicates we write on purpose
        with zipfile.ZipFile(path, "w") as archive:
            for name, data, mode in [*base, *entries]:
                info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                info.create_system = 3
                info.external_attr = mode << 16
                info.compress_type = compression
                archive.writestr(info, data)
    return path


def patch_header(
    path: Path, name: str, *, flags: int | None = None, size: int | None = None
) -> None:
    """Rewrite the general-purpose flags or the uncompressed size of one entry, in both
    its local header and its central directory record."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo(name).header_offset
    central = data.find(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len(name)] != name.encode():
        central = data.find(b"PK\x01\x02", central + 4)
    assert data[local : local + 4] == b"PK\x03\x04" and central > 0
    if flags is not None:
        struct.pack_into("<H", data, local + 6, flags)
        struct.pack_into("<H", data, central + 8, flags)
    if size is not None:
        struct.pack_into("<I", data, local + 22, size)
        struct.pack_into("<I", data, central + 24, size)
    path.write_bytes(bytes(data))


def refused(path: Path, code: ErrorCode, limits: Limits | None = None) -> GdosError:
    with pytest.raises(GdosError) as caught:
        inspect_zip(path, limits or Limits())
    assert caught.value.code == code, caught.value.message
    return caught.value


def good_package(tmp_path: Path, **manifest: Any) -> Path:
    return build_zip(
        tmp_path / "web.zip",
        {"bin/run.sh": RUN, "README": "hello", "conf/": b"", "conf/app.ini": "[app]\n"},
        manifest={**MANIFEST, **manifest},
        symlinks={"current": "bin", "conf/readme": "../README"},
    )


# -- good packages ----------------------------------------------------------------------


def test_good_package_is_accepted(tmp_path: Path) -> None:
    info = inspect_zip(good_package(tmp_path))
    assert isinstance(info, PackageInfo)
    assert info.manifest.name == "web" and info.manifest.entrypoint == "bin/run.sh"
    assert info.entry_count == 7
    service_json = len(json.dumps(MANIFEST, indent=2))
    assert info.total_bytes == service_json + len(RUN) + 5 + 6 + len("bin") + len("../README")


def test_build_zip_is_reproducible_and_sets_modes(tmp_path: Path) -> None:
    first = good_package(tmp_path).read_bytes()
    again = good_package(tmp_path).read_bytes()
    assert first == again
    with zipfile.ZipFile(tmp_path / "web.zip") as archive:
        modes = {i.filename: i.external_attr >> 16 for i in archive.infolist()}
    assert modes["bin/run.sh"] == REG | 0o755
    assert modes["README"] == REG | 0o644
    assert stat.S_ISDIR(modes["conf/"])
    assert stat.S_ISLNK(modes["current"])


def test_build_zip_refuses_two_manifests(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build_zip(tmp_path / "x.zip", {"service.json": "{}"}, manifest=MANIFEST)


def test_root_dir_entry_is_tolerated(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "p.zip", [("./", b"", stat.S_IFDIR | 0o755)])
    assert inspect_zip(path).manifest.name == "web"


def test_dot_slash_names_are_accepted(tmp_path: Path) -> None:
    manifest = {**MANIFEST, "entrypoint": "./app/run"}
    path = write_zip(
        tmp_path / "p.zip",
        [("./app/run", RUN, REG | 0o755)],
        manifest=manifest,
        with_entrypoint=False,
    )
    assert inspect_zip(path).manifest.entrypoint == "./app/run"


def test_windows_made_zip_without_unix_modes(tmp_path: Path) -> None:
    path = tmp_path / "win.zip"
    with zipfile.ZipFile(path, "w") as archive:
        files: dict[str, str | bytes] = {"service.json": json.dumps(MANIFEST), "bin/run.sh": RUN}
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 0
            info.external_attr = 0x20  # DOS "archive" attribute, no unix mode
            archive.writestr(info, data)
    assert inspect_zip(path).entry_count == 2
    dest = tmp_path / "out"
    extract_zip(path, dest)
    assert stat.S_IMODE((dest / "service.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "bin/run.sh").stat().st_mode) == 0o755


def test_tiny_highly_compressible_file_passes(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "p.zip", [("zeros.bin", bytes(1000 * 1024), REG | 0o644)])
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("zeros.bin")
    assert info.file_size / info.compress_size > 200
    assert inspect_zip(path).total_bytes > 1000 * 1024


# -- unsafe names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "/etc/passwd",
        "/",
        "../evil.sh",
        "a/../../evil.sh",
        "bin/../../../evil",
        "a/..",
        "..",
        "../",
        "..\\evil.sh",
        "\\evil.sh",
        "\\\\server\\share\\x",
        "bin\\run.sh",
        "C:/Windows/evil.exe",
        "c:evil.exe",
        "D:\\evil.exe",
    ],
)
def test_unsafe_entry_name_is_refused(tmp_path: Path, name: str) -> None:
    path = write_zip(tmp_path / "p.zip", [(name, b"x", REG | 0o644)])
    error = refused(path, ErrorCode.ARCHIVE_UNSAFE)
    assert repr(name) in error.message
    assert "rebuild the zip" in error.message


def test_nul_in_entry_name_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "p.zip", [("evil_name.sh", b"x", REG | 0o644)])
    raw = path.read_bytes()
    assert raw.count(b"evil_name.sh") == 2  # local header and central directory
    path.write_bytes(raw.replace(b"evil_name.sh", b"evil\x00name.sh"))
    error = refused(path, ErrorCode.ARCHIVE_UNSAFE)
    assert "NUL" in error.message and "evil\\x00name.sh" in error.message


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("a.txt", "a.txt"),
        ("a/b", "a//b"),
        ("./a", "a"),
        ("a/./b", "a/b"),
        ("bin/run.sh", "./bin/run.sh"),
        ("data/", "data"),
        ("data/", "data//"),
    ],
)
def test_duplicate_names_are_refused(tmp_path: Path, first: str, second: str) -> None:
    mode = {True: stat.S_IFDIR | 0o755, False: REG | 0o644}
    entries = [
        (n, b"" if n.endswith("/") else b"x", mode[n.endswith("/")]) for n in (first, second)
    ]
    path = write_zip(tmp_path / "p.zip", entries, with_entrypoint=first != "bin/run.sh")
    error = refused(path, ErrorCode.ARCHIVE_UNSAFE)
    assert "duplicate" in error.message and repr(second) in error.message


def test_entry_below_a_file_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "p.zip", [("a", b"x", REG | 0o644), ("a/b", b"y", REG | 0o644)])
    error = refused(path, ErrorCode.ARCHIVE_INVALID)
    assert "'a/b'" in error.message and "which is a file" in error.message


# -- symlinks ----------------------------------------------------------------------------

LINK = stat.S_IFLNK | 0o777


@pytest.mark.parametrize(
    ("name", "target", "words"),
    [
        ("etc", "/etc", "absolute"),
        ("passwd", "/etc/passwd", "absolute"),
        ("win", "C:/Windows", "absolute"),
        ("win2", "..\\..\\x", "absolute"),
        ("up", "..", "outside"),
        ("escape", "../../etc", "outside"),
        ("deep/escape", "../../etc/passwd", "outside"),
        ("sneaky", "bin/../../x", "outside"),
    ],
)
def test_escaping_symlink_is_refused(tmp_path: Path, name: str, target: str, words: str) -> None:
    path = write_zip(tmp_path / "p.zip", [(name, target, LINK)])
    error = refused(path, ErrorCode.ARCHIVE_UNSAFE)
    assert repr(name) in error.message and words in error.message


def test_symlink_escaping_through_another_symlink_is_refused(tmp_path: Path) -> None:
    # a/up -> .. is the package root (fine); a/s -> up/.. looks like "a" to a naive
    # normpath but the kernel resolves it to the parent of the root.
    entries = [("a/up", "..", LINK), ("a/s", "up/..", LINK)]
    error = refused(write_zip(tmp_path / "p.zip", entries), ErrorCode.ARCHIVE_UNSAFE)
    assert "'a/s'" in error.message and "outside" in error.message


def test_symlink_escaping_through_an_absolute_symlink_chain(tmp_path: Path) -> None:
    entries = [("a", "b", LINK), ("b", "/etc", LINK)]
    error = refused(write_zip(tmp_path / "p.zip", entries), ErrorCode.ARCHIVE_UNSAFE)
    assert "'b'" in error.message


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    entries = [("l1", "l2/x", LINK), ("l2", "l1/y", LINK)]
    error = refused(write_zip(tmp_path / "p.zip", entries), ErrorCode.ARCHIVE_UNSAFE)
    assert "loop" in error.message


@pytest.mark.parametrize(("target"), ["", "a\x00b", "x" * 5000, b"\xff\xfe"])
def test_symlink_with_bad_target_is_refused(tmp_path: Path, target: str | bytes) -> None:
    path = write_zip(tmp_path / "p.zip", [("link", target, LINK)])
    assert "'link'" in refused(path, ErrorCode.ARCHIVE_UNSAFE).message


def test_entry_written_through_a_symlink_is_refused(tmp_path: Path) -> None:
    entries: list[tuple[str, bytes | str, int]] = [
        ("lib", "/usr/lib", LINK),
        ("lib/evil.so", b"x", REG | 0o644),
    ]
    error = refused(write_zip(tmp_path / "p.zip", entries), ErrorCode.ARCHIVE_UNSAFE)
    assert "'lib/evil.so'" in error.message and "below the symlink 'lib'" in error.message


def test_safe_internal_symlinks_are_allowed_and_extracted(tmp_path: Path) -> None:
    entries: list[tuple[str, bytes | str, int]] = [
        ("current", "bin", LINK),
        ("bin/start", "run.sh", LINK),
        ("a/b/readme", "../../bin/./run.sh", LINK),
        ("a/up", "..", LINK),
        ("a/via", "up/bin", LINK),
        ("dangling", "not-there-yet", LINK),
    ]
    path = write_zip(tmp_path / "p.zip", entries)
    inspect_zip(path)
    dest = tmp_path / "out"
    extract_zip(path, dest)
    assert os.readlink(dest / "current") == "bin"
    assert (dest / "bin/start").read_bytes() == RUN
    assert (dest / "a/b/readme").read_bytes() == RUN
    assert (dest / "a/via/run.sh").read_bytes() == RUN
    assert os.readlink(dest / "dangling") == "not-there-yet"


@pytest.mark.parametrize(
    ("file_type", "words"),
    [
        (stat.S_IFIFO, "fifo"),
        (stat.S_IFCHR, "character device"),
        (stat.S_IFBLK, "block device"),
        (stat.S_IFSOCK, "socket"),
    ],
)
def test_special_files_are_refused(tmp_path: Path, file_type: int, words: str) -> None:
    path = write_zip(tmp_path / "p.zip", [("dev/thing", b"", file_type | 0o644)])
    error = refused(path, ErrorCode.ARCHIVE_UNSAFE)
    assert "'dev/thing'" in error.message and words in error.message


def test_directory_name_with_symlink_mode_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "p.zip", [("dir/", "/etc", LINK)])
    assert "'dir/'" in refused(path, ErrorCode.ARCHIVE_UNSAFE).message


# -- sizes -----------------------------------------------------------------------------------


def test_total_size_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "p.zip", [("big.bin", os.urandom(20_000), REG | 0o644)])
    error = refused(path, ErrorCode.ARCHIVE_UNSAFE, Limits(max_total_bytes=10_000))
    assert "over the limit of 10000 bytes" in error.message


def test_too_many_entries_are_refused(tmp_path: Path) -> None:
    entries = [(f"f{i}", b"x", REG | 0o644) for i in range(5)]
    error = refused(
        write_zip(tmp_path / "p.zip", entries), ErrorCode.ARCHIVE_UNSAFE, Limits(max_entries=5)
    )
    assert "7 entries" in error.message and "limit of 5" in error.message


def test_zip_bomb_entry_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "p.zip", [("bomb.bin", bytes(50 * 1024 * 1024), REG | 0o644)])
    assert path.stat().st_size < 1024 * 1024
    error = refused(path, ErrorCode.ARCHIVE_UNSAFE)
    assert "'bomb.bin'" in error.message and "zip bomb" in error.message
    dest = tmp_path / "out"
    with pytest.raises(GdosError):
        extract_zip(path, dest)
    assert not dest.exists()


def test_zip_bomb_made_of_many_small_entries_is_refused(tmp_path: Path) -> None:
    entries = [(f"z{i}", bytes(90_000), REG | 0o644) for i in range(20)]
    limits = Limits(ratio_min_bytes=100_000)
    error = refused(write_zip(tmp_path / "p.zip", entries), ErrorCode.ARCHIVE_UNSAFE, limits)
    assert "the zip as a whole" in error.message


def test_ratio_limit_is_adjustable(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "p.zip", [("zeros", bytes(2 * 1024 * 1024), REG | 0o644)])
    refused(path, ErrorCode.ARCHIVE_UNSAFE)
    assert inspect_zip(path, Limits(max_ratio=5000)).total_bytes > 2 * 1024 * 1024


@pytest.mark.parametrize("lie", [-100, +100])
def test_lying_declared_size_stops_extraction(tmp_path: Path, lie: int) -> None:
    content = os.urandom(1000)
    path = write_zip(
        tmp_path / "p.zip", [("data.bin", content, REG | 0o644)], compression=zipfile.ZIP_STORED
    )
    patch_header(path, "data.bin", size=len(content) + lie)
    assert "'data.bin'" in refused(path, ErrorCode.ARCHIVE_UNSAFE).message  # at push already
    parent = tmp_path / "pkgs"
    parent.mkdir()
    with pytest.raises(GdosError) as caught:
        extract_zip(path, parent / "web")
    assert caught.value.code == ErrorCode.ARCHIVE_UNSAFE
    assert "'data.bin'" in caught.value.message and "declared" in caught.value.message
    assert list(parent.iterdir()) == []


def test_an_entry_much_larger_than_declared_is_refused_at_push(tmp_path: Path) -> None:
    """Issue 11: 1,000 bytes declared for a big entry was stored, refused only later."""
    path = write_zip(tmp_path / "p.zip", [("big.bin", bytes(48 * 1024 * 1024), REG | 0o644)])
    patch_header(path, "big.bin", size=1000)
    # the declared sizes alone pass every limit (1,000 bytes is under the ratio floor)
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("big.bin").file_size == 1000
    error = refused(path, ErrorCode.ARCHIVE_UNSAFE)
    assert "'big.bin'" in error.message and "declared" in error.message


def test_lying_size_of_deflated_entry(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "p.zip", [("data.txt", "abc" * 10_000, REG | 0o644)])
    patch_header(path, "data.txt", size=100)
    with pytest.raises(GdosError) as caught:
        extract_zip(path, tmp_path / "out")
    assert caught.value.code == ErrorCode.ARCHIVE_UNSAFE
    assert not (tmp_path / "out").exists()


# -- not a package -----------------------------------------------------------------------------


def test_missing_service_json_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "p.zip", [("README", b"x", REG | 0o644)], manifest=None)
    error = refused(path, ErrorCode.ARCHIVE_INVALID)
    assert "no service.json at the root" in error.message


def test_service_json_only_in_a_subfolder_is_refused(tmp_path: Path) -> None:
    entries = [("web/service.json", json.dumps(MANIFEST), REG | 0o644)]
    path = write_zip(tmp_path / "p.zip", entries, manifest=None)
    error = refused(path, ErrorCode.ARCHIVE_INVALID)
    assert "'web/service.json'" in error.message and "not the folder" in error.message


@pytest.mark.parametrize("mode", [stat.S_IFDIR | 0o755, LINK])
def test_service_json_must_be_a_regular_file(tmp_path: Path, mode: int) -> None:
    path = write_zip(tmp_path / "p.zip", [("service.json", "bin/run.sh", mode)], manifest=None)
    assert "regular file" in refused(path, ErrorCode.ARCHIVE_INVALID).message


@pytest.mark.parametrize(
    "content", [b"", b"this is not a zip file at all", b"PK\x03\x04" + bytes(100)]
)
def test_not_a_zip_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "p.zip"
    path.write_bytes(content)
    assert "not a readable zip" in refused(path, ErrorCode.ARCHIVE_INVALID).message


def test_truncated_zip_is_refused(tmp_path: Path) -> None:
    path = good_package(tmp_path)
    path.write_bytes(path.read_bytes()[:-30])
    refused(path, ErrorCode.ARCHIVE_INVALID)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert "no such file" in refused(tmp_path / "nope.zip", ErrorCode.ARCHIVE_INVALID).message


def test_encrypted_entry_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "p.zip", [("secret.txt", b"x", REG | 0o644)])
    patch_header(path, "secret.txt", flags=0x1)
    error = refused(path, ErrorCode.ARCHIVE_INVALID)
    assert "'secret.txt'" in error.message and "encrypted" in error.message


def test_corrupt_manifest_entry_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "p.zip", [], compression=zipfile.ZIP_STORED)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b'"name": "web"', b'"name": "wEb"', 1))
    assert "corrupt" in refused(path, ErrorCode.ARCHIVE_INVALID).message


# -- manifest inside the zip -------------------------------------------------------------------


def test_missing_entrypoint_is_a_manifest_problem(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "p.zip", [("run.sh", RUN, REG | 0o755)], with_entrypoint=False)
    error = refused(path, ErrorCode.MANIFEST_INVALID)
    assert isinstance(error, ManifestError)
    assert [p.field for p in error.problems] == ["entrypoint"]
    assert "service.json: entrypoint: is not in the package (got 'bin/run.sh')" in error.message


def test_missing_stop_entrypoint_is_a_manifest_problem(tmp_path: Path) -> None:
    manifest = {**MANIFEST, "stop_entrypoint": "bin/stop.sh"}
    error = refused(
        write_zip(tmp_path / "p.zip", [], manifest=manifest), ErrorCode.MANIFEST_INVALID
    )
    assert isinstance(error, ManifestError)
    assert [p.field for p in error.problems] == ["stop_entrypoint"]


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (("bin/run.sh/", b"", stat.S_IFDIR | 0o755), "a dir"),
        (("bin/run.sh", "x", LINK), "a symlink"),
    ],
)
def test_entrypoint_must_be_a_regular_file(
    tmp_path: Path, entry: tuple[str, bytes | str, int], words: str
) -> None:
    path = write_zip(
        tmp_path / "p.zip", [entry, ("bin/x", b"", REG | 0o644)], with_entrypoint=False
    )
    error = refused(path, ErrorCode.MANIFEST_INVALID)
    assert "entrypoint" in error.message and words in error.message


def test_invalid_manifest_in_zip_lists_problems(tmp_path: Path) -> None:
    manifest = {"name": "-x", "version": "1", "entrypoint": "/abs"}
    error = refused(
        write_zip(tmp_path / "p.zip", [], manifest=manifest), ErrorCode.MANIFEST_INVALID
    )
    assert isinstance(error, ManifestError)
    assert {p.field for p in error.problems} == {"name", "entrypoint"}


def test_manifest_that_is_not_json_in_zip(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "p.zip", [("service.json", b"{nope", REG | 0o644)], manifest=None)
    assert "line 1, column 2" in refused(path, ErrorCode.MANIFEST_INVALID).message


def test_oversize_manifest_in_zip(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "p.zip", [])
    error = refused(path, ErrorCode.MANIFEST_INVALID, Limits(max_manifest_bytes=20))
    assert "too large" in error.message
    manifest = {
        **MANIFEST,
        "description": "x" * 1000,
        "env": {f"K{i}": "v" * 900 for i in range(80)},
    }
    error = refused(
        write_zip(tmp_path / "q.zip", [], manifest=manifest), ErrorCode.MANIFEST_INVALID
    )
    assert "too large" in error.message


# -- extraction ------------------------------------------------------------------------------


def test_extract_writes_every_file(tmp_path: Path) -> None:
    dest = tmp_path / "pkgs" / "web-1.0.0"
    info = extract_zip(good_package(tmp_path), dest)
    assert info.manifest.version == "1.0.0"
    assert (dest / "bin/run.sh").read_bytes() == RUN
    assert (dest / "README").read_text() == "hello"
    assert (dest / "conf/app.ini").read_text() == "[app]\n"
    assert json.loads((dest / "service.json").read_text()) == MANIFEST
    assert os.readlink(dest / "current") == "bin"
    assert (dest / "conf/readme").read_text() == "hello"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert sorted(p.name for p in dest.parent.iterdir()) == ["web-1.0.0"]


def test_extract_streams_a_large_entry(tmp_path: Path) -> None:
    content = os.urandom(3 * 1024 * 1024)
    path = write_zip(tmp_path / "p.zip", [("blob", content, REG | 0o644)])
    extract_zip(path, tmp_path / "out")
    assert (tmp_path / "out/blob").read_bytes() == content


@pytest.mark.parametrize(
    ("stored", "extracted"),
    [
        (0o755, 0o755),
        (0o644, 0o644),
        (0o600, 0o644),
        (0o700, 0o755),
        (0o777, 0o755),
        (0o4755, 0o755),  # setuid dropped
        (0o2755, 0o755),  # setgid dropped
        (0o1644, 0o644),  # sticky dropped
        (0o000, 0o644),
    ],
)
def test_extract_permissions(tmp_path: Path, stored: int, extracted: int) -> None:
    path = write_zip(tmp_path / "p.zip", [("tool", b"x", REG | stored)])
    extract_zip(path, tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out/tool").stat().st_mode) == extracted


def test_entrypoints_become_executable(tmp_path: Path) -> None:
    manifest = {**MANIFEST, "stop_entrypoint": "bin/stop.sh"}
    entries: list[tuple[str, bytes | str, int]] = [("bin/stop.sh", b"kill", REG | 0o600)]
    path = write_zip(tmp_path / "p.zip", entries, manifest=manifest, with_entrypoint=False)
    with zipfile.ZipFile(path, "a") as archive:
        info = zipfile.ZipInfo("bin/run.sh")
        info.external_attr = (REG | 0o644) << 16
        archive.writestr(info, RUN)
    dest = tmp_path / "out"
    extract_zip(path, dest)
    assert stat.S_IMODE((dest / "bin/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "bin/stop.sh").stat().st_mode) == 0o755
    assert os.access(dest / "bin/run.sh", os.X_OK)


def test_extract_refuses_an_existing_dest(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep").write_text("mine")
    with pytest.raises(GdosError) as caught:
        extract_zip(good_package(tmp_path), dest)
    assert caught.value.code == ErrorCode.ALREADY_EXISTS
    assert (dest / "keep").read_text() == "mine"


def test_extract_refuses_a_dangling_symlink_dest(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(GdosError):
        extract_zip(good_package(tmp_path), dest)
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize(
    "entries",
    [
        [("../evil", b"x", REG | 0o644)],
        [("link", "/etc", LINK)],
        [("fifo", b"", stat.S_IFIFO | 0o644)],
    ],
)
def test_unsafe_zip_leaves_nothing_behind(tmp_path: Path, entries: list[Any]) -> None:
    parent = tmp_path / "pkgs"
    parent.mkdir()
    with pytest.raises(GdosError) as caught:
        extract_zip(write_zip(tmp_path / "p.zip", entries), parent / "web")
    assert caught.value.code == ErrorCode.ARCHIVE_UNSAFE
    assert list(parent.iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_failure_midway_removes_the_temporary_directory(tmp_path: Path) -> None:
    # the first entries are written before the lying one is reached
    entries: list[tuple[str, bytes | str, int]] = [
        ("a.txt", b"first", REG | 0o644),
        ("z.bin", os.urandom(500), REG | 0o644),
    ]
    path = write_zip(tmp_path / "p.zip", entries, compression=zipfile.ZIP_STORED)
    patch_header(path, "z.bin", size=400)
    parent = tmp_path / "pkgs"
    parent.mkdir()
    with pytest.raises(GdosError):
        extract_zip(path, parent / "web")
    assert list(parent.iterdir()) == []


def test_extract_failure_on_disk_is_storage_failed(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(GdosError) as caught:
        extract_zip(good_package(tmp_path), blocker / "web")
    assert caught.value.code == ErrorCode.STORAGE_FAILED
    assert "check free space and permissions" in caught.value.message


def test_real_bytes_are_counted_even_if_the_reader_trusts_the_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: zipfile stops at the declared size, but the extractor does not
    rely on it; a reader that yields more than declared is stopped too."""
    path = write_zip(tmp_path / "p.zip", [("data.bin", b"x" * 100, REG | 0o644)])
    real_open = zipfile.ZipFile.open

    def generous_open(self: zipfile.ZipFile, name: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(name, "filename", name) == "data.bin":
            return io.BytesIO(b"x" * 10_000)
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", generous_open)
    parent = tmp_path / "pkgs"
    parent.mkdir()
    with pytest.raises(GdosError) as caught:
        extract_zip(path, parent / "web")
    assert caught.value.code == ErrorCode.ARCHIVE_UNSAFE
    assert "'data.bin' is larger than declared" in caught.value.message
    assert list(parent.iterdir()) == []
