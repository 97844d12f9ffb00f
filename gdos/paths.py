"""Where gdos keeps its files.

Every path comes from platformdirs unless ``GDOS_HOME`` is set, in which case
everything lives under that one folder. Tests and operators running several
daemons on one machine rely on that single override.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from gdos.errors import ErrorCode, GdosError

APP = "gdos"
# sun_path is 108 bytes on Linux including the terminating NUL.
MAX_UNIX_SOCKET_PATH = 107


@dataclass(frozen=True)
class Paths:
    """The folders and files of one gdos installation (daemon and local agent)."""

    state_dir: Path
    runtime_dir: Path
    log_dir: Path

    @property
    def db(self) -> Path:
        return self.state_dir / "gdos.db"

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"

    @property
    def control_socket(self) -> Path:
        return self.runtime_dir / "control.sock"

    @property
    def pid_file(self) -> Path:
        return self.runtime_dir / "gdosd.pid"

    @property
    def daemon_log(self) -> Path:
        return self.log_dir / "gdosd.log"

    @property
    def agent_dir(self) -> Path:
        return self.state_dir / "agent"

    @property
    def sessions_dir(self) -> Path:
        """Shell session recordings (asciicast v2), one ID.cast file each."""
        return self.state_dir / "sessions"


def resolve() -> Paths:
    """Paths for this process: ``GDOS_HOME`` if set, else the platform's folders."""
    home = os.environ.get("GDOS_HOME")
    if home:
        root = Path(home).expanduser().absolute()
        return Paths(state_dir=root / "state", runtime_dir=root / "run", log_dir=root / "log")
    import platformdirs

    return Paths(
        state_dir=Path(platformdirs.user_state_dir(APP)),
        runtime_dir=Path(platformdirs.user_runtime_dir(APP)),
        log_dir=Path(platformdirs.user_log_dir(APP)),
    )


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` owner-only (0700) and refuse one that others can enter.

    The control socket and the keys live in such folders; a folder another
    user can write to would let them replace the socket or read a secret key.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise GdosError(
            ErrorCode.UNSAFE_PATH,
            f"{path} belongs to another user; set GDOS_HOME to a folder you own.",
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)


def check_socket_path(path: Path) -> None:
    """Refuse a control socket path longer than the kernel accepts."""
    if len(os.fsencode(path)) > MAX_UNIX_SOCKET_PATH:
        raise GdosError(
            ErrorCode.UNSAFE_PATH,
            f"control socket path {path} is longer than {MAX_UNIX_SOCKET_PATH} bytes; "
            "set GDOS_HOME to a shorter folder.",
        )
