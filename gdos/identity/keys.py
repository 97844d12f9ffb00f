"""CURVE keypairs of the daemon and the agents.

A keypair is stored as two files, ``<name>.key`` (public, z85) and
``<name>.key_secret`` (secret, z85, mode 0600), in an owner-only folder. It
is made on first start and kept: an agent's identity is its public key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gdos.errors import ErrorCode, GdosError
from gdos.paths import ensure_private_dir


@dataclass(frozen=True)
class KeyPair:
    public: bytes  # z85, 40 bytes
    secret: bytes  # z85, 40 bytes


def load_or_create(folder: Path, name: str) -> KeyPair:
    """The keypair ``name`` in ``folder``, made on first use."""
    ensure_private_dir(folder)
    public_file, secret_file = folder / f"{name}.key", folder / f"{name}.key_secret"
    if public_file.exists() and secret_file.exists():
        return _read(public_file, secret_file)
    import zmq

    public, secret = zmq.curve_keypair()
    _write_private(secret_file, secret)
    public_file.write_bytes(public)
    return KeyPair(public=public, secret=secret)


def _read(public_file: Path, secret_file: Path) -> KeyPair:
    public, secret = public_file.read_bytes().strip(), secret_file.read_bytes().strip()
    if not (is_z85_key(public) and is_z85_key(secret)):
        raise GdosError(
            ErrorCode.UNSAFE_PATH,
            f"{public_file} or its secret is not a CURVE key; move both aside to make a new pair.",
        )
    if secret_file.stat().st_mode & 0o077:
        os.chmod(secret_file, 0o600)
    return KeyPair(public=public, secret=secret)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


_Z85 = frozenset(
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)


def is_z85_key(value: bytes | str) -> bool:
    """True for a 40-character z85 CURVE key."""
    raw = value.encode() if isinstance(value, str) else value
    return len(raw) == 40 and all(c in _Z85 for c in raw)


def fingerprint(public: bytes | str) -> str:
    """A short, stable digest of a public key for listing and comparing by eye."""
    import hashlib

    raw = public.encode() if isinstance(public, str) else public
    digest = hashlib.sha256(raw).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, 16, 2))
