"""A small, fillable file system for full-disk fault tests.

``small_tmpfs`` mounts a tmpfs on a folder for the length of a block (the
test is skipped, with the reason, where mounting is impossible: it needs
root, which CI has); ``fill`` writes until that file system has not one byte
left, so the daemon's next write fails with ENOSPC exactly as on a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Fleet
from tests.waiting import short_home


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str = "32m") -> Iterator[Path]:
    """``folder`` as a tmpfs of ``size`` until the block ends (lazily unmounted)."""
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as full:
        (folder / "probe").write_bytes(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    return filler


@contextlib.contextmanager
def small_disk_fleet(inside: str = "") -> Iterator[Fleet]:
    """A started daemon whose GDOS_HOME (or its folder ``inside``, e.g. ``state``)
    is a 32 MiB tmpfs a test can fill; closed and removed when the block ends."""
    home = short_home("gd-full-")
    small = home / inside
    small.mkdir(mode=0o700, exist_ok=True)
    try:
        with small_tmpfs(small):
            fleet = Fleet(daemon_home=home)
            try:
                fleet.start_daemon()
                yield fleet
            finally:
                fleet.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
