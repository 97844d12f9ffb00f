"""``gdos daemon start | stop``: only gdosd is ever signalled, errors are one line."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness import free_port, short_home


@pytest.fixture
def home() -> Iterator[Path]:
    path = short_home("gd-life-")
    try:
        yield path
    finally:
        subprocess.run(
            [sys.executable, "-m", "gdos.cli.main", "daemon", "stop"],
            env=_env(path),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(path, ignore_errors=True)


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "GDOS_HOME": str(home)}


def gdos(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gdos.cli.main", *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stale_pid_file_naming_another_process_is_never_signalled(home: Path) -> None:
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        run_dir = home / "run"
        run_dir.mkdir(mode=0o700)
        (run_dir / "gdosd.pid").write_text(str(stranger.pid))  # a reused pid
        stopped = gdos(home, "daemon", "stop")
        assert stopped.returncode == 3, stopped.stdout + stopped.stderr
        assert "stale pid file" in stopped.stderr and str(stranger.pid) in stopped.stderr
        assert "gdosd stopped" not in stopped.stdout
        assert stranger.poll() is None  # left alone
        assert not (run_dir / "gdosd.pid").exists()
        (run_dir / "gdosd.pid").write_text(str(stranger.pid))
        started = gdos(home, "daemon", "start", "--mesh", f"tcp://127.0.0.1:{free_port()}")
        assert started.returncode == 0, started.stderr
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_stop_returns_once_the_daemon_has_exited(home: Path) -> None:
    started = gdos(home, "daemon", "start", "--mesh", f"tcp://127.0.0.1:{free_port()}")
    assert started.returncode == 0, started.stderr
    pid = int(gdos(home, "daemon", "status", "--json").stdout.split('"pid": ')[1].split(",")[0])
    stopped = gdos(home, "daemon", "stop")
    assert stopped.returncode == 0 and f"gdosd stopped (pid {pid})" in stopped.stdout
    assert _gone(pid)
    again = gdos(home, "daemon", "stop")
    assert again.returncode == 3 and "nothing to stop" in again.stderr


@pytest.mark.parametrize("command", ["start", "run"])
def test_bad_mesh_address_is_a_usage_error(home: Path, command: str) -> None:
    for bogus in ("bogus", "tcp://127.0.0.1", "udp://1.2.3.4:5", "tcp://127.0.0.1:99999"):
        result = gdos(home, "daemon", command, "--mesh", bogus)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error[invalid_argument]: --mesh")
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["start", "run"])
def test_busy_mesh_port_is_one_line_address_in_use(home: Path, command: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = gdos(home, "daemon", command, "--mesh", f"tcp://127.0.0.1:{port}")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error[address_in_use]: port ")
    assert str(port) in lines[0]


def test_an_unlocked_gdosd_named_by_the_pid_file_is_left_to_the_operator(home: Path) -> None:
    # Looks like 'gdos daemon run' (an older gdos, say) but does not hold the lock.
    lookalike = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", "gdos", "daemon", "run"],
        env=_env(home),
    )
    try:
        run_dir = home / "run"
        run_dir.mkdir(mode=0o700)
        (run_dir / "gdosd.pid").write_text(str(lookalike.pid))
        for command in ("stop", "start"):
            refused = gdos(home, "daemon", command)
            assert refused.returncode == 1, refused.stderr
            assert refused.stderr.startswith("error[daemon_running]: pid ")
            assert f"kill {lookalike.pid}" in refused.stderr
            assert lookalike.poll() is None
    finally:
        lookalike.kill()
        lookalike.wait()
