"""Where gdos puts its runtime files when no GDOS_HOME is set (issue 11, "Also").

Under sudo, cron or systemd XDG_RUNTIME_DIR is often unset; platformdirs then
falls back to /tmp/runtime-<uid>, which any local user can pre-create. Every
command must still work, or say clearly what is wrong, never a traceback.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from gdos import paths
from gdos.errors import ErrorCode, GdosError

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to another user")


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GDOS_HOME", "XDG_RUNTIME_DIR")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return env | {"TMPDIR": str(tmp_path), "HOME": str(home)}


@ROOT_ONLY
def test_a_runtime_dir_planted_by_another_user_does_not_break_root(tmp_path: Path) -> None:
    planted = tmp_path / f"runtime-{os.geteuid()}"
    planted.mkdir(mode=0o777)
    os.chown(planted, pwd.getpwnam("nobody").pw_uid, -1)
    result = subprocess.run(
        [sys.executable, "-m", "gdos.cli.main", "daemon", "status"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "PermissionError" not in result.stderr
    assert "error[daemon_unavailable]" in result.stderr
    assert str(planted) not in result.stderr  # root never uses the shared temp folder


@ROOT_ONLY
def test_root_without_xdg_runtime_dir_uses_run_gdos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GDOS_HOME", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert paths.resolve().runtime_dir == Path("/run/gdos")


def test_an_unusable_folder_is_refused_with_a_code_and_a_sentence(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(GdosError) as info:
        paths.ensure_private_dir(link)
    assert info.value.code == ErrorCode.UNSAFE_PATH and "symlink" in info.value.message
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(GdosError) as info:
        paths.ensure_private_dir(blocker / "run")
    assert info.value.code == ErrorCode.UNSAFE_PATH and str(blocker) in info.value.message
