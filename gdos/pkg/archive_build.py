"""Building package zips from memory: for tests, benchmarks and tools.

Reading a package (gdos/pkg/archive.py) must survive a hostile zip; writing one
only has to be deterministic, so the two live apart. Same input, same bytes:
entries carry a fixed date and explicit unix modes.
"""

from __future__ import annotations

import json
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gdos.pkg.manifest import MANIFEST_NAME


def _add(archive: zipfile.ZipFile, name: str, data: bytes, mode: int) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.create_system = 3  # unix: external_attr carries the mode
    info.external_attr = mode << 16 | (0x10 if stat.S_ISDIR(mode) else 0)
    info.compress_type = zipfile.ZIP_STORED if stat.S_ISLNK(mode) else zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def build_zip(
    dest: Path,
    files: Mapping[str, bytes | str],
    *,
    manifest: Mapping[str, Any] | None = None,
    symlinks: Mapping[str, str] | None = None,
) -> Path:
    """Write a package zip from in-memory files; same input, same bytes.

    ``manifest`` (not validated, so tests can build bad ones) becomes
    service.json. Names ending in '/' are directories. Files that are the
    manifest's entrypoints or start with ``#!`` get mode 0o755, others 0o644.
    """
    if manifest is not None and MANIFEST_NAME in files:
        raise ValueError("give service.json either as manifest= or in files, not both")
    programs = {manifest.get("entrypoint"), manifest.get("stop_entrypoint")} if manifest else set()
    with zipfile.ZipFile(dest, "w") as archive:
        if manifest is not None:
            _add(archive, MANIFEST_NAME, json.dumps(manifest, indent=2).encode(), 0o100644)
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            if name.endswith("/"):
                mode = stat.S_IFDIR | 0o755
            else:
                executable = name in programs or data.startswith(b"#!")
                mode = stat.S_IFREG | (0o755 if executable else 0o644)
            _add(archive, name, data, mode)
        for name, target in (symlinks or {}).items():
            _add(archive, name, target.encode(), stat.S_IFLNK | 0o777)
    return dest
