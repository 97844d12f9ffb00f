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
ROOT_RUNTIME_DIR = Path("/run/gdos")


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

    state_dir = Path(platformdirs.user_state_dir(APP))
    return Paths(
        state_dir=state_dir,
        runtime_dir=runtime_dir(state_dir),
        log_dir=Path(platformdirs.user_log_dir(APP)),
    )


def runtime_dir(state_dir: Path) -> Path:
    """Where the control socket and pid file go, never a folder others can plant.

    ``$XDG_RUNTIME_DIR/gdos`` when that is a real folder of ours, mode 0700;
    else ``/run/gdos`` for root (sudo, cron and systemd often leave the
    variable unset) and ``/run/user/UID/gdos`` or ``STATE_DIR/run`` for others.
    Never platformdirs' ``/tmp/runtime-UID`` fallback: any local user can
    create that first and break (or hijack) every root command.
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and _owned_private(Path(xdg)):
        return Path(xdg) / APP
    uid = os.geteuid()
    if uid == 0:
        return ROOT_RUNTIME_DIR
    per_user = Path(f"/run/user/{uid}")
    return per_user / APP if _owned_private(per_user) else state_dir / "run"


def _owned_private(path: Path) -> bool:
    """A real folder (not a symlink) of this user that nobody else may enter."""
    try:
        info = path.lstat()
    except OSError:
        return False
    mode = stat.S_IMODE(info.st_mode)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not mode & 0o077


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` owner-only (0700) and refuse one that others can enter.

    The control socket and the keys live in such folders; a folder another
    user can write to would let them replace the socket or read a secret key.
    A folder that cannot be used raises GdosError(unsafe_path) saying why.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = path.lstat()
    except OSError as exc:
        raise GdosError(
            ErrorCode.UNSAFE_PATH,
            f"cannot use folder {path}: {exc.strerror or exc} ({exc.filename or path}); "
            "set GDOS_HOME to a folder you own.",
        ) from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise GdosError(
            ErrorCode.UNSAFE_PATH,
            f"{path} is a symlink or not a folder; remove it, or set GDOS_HOME to a folder "
            "you own.",
        )
    if info.st_uid != os.geteuid():
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
