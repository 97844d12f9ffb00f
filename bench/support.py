"""Helpers for bench/run.py: processes it owns, timing, daemon polling.

Every process is started in its own session and recorded in ``Owned``;
``Owned.close`` kills each whole group (SIGTERM, then SIGKILL) and removes
the temporary GDOS_HOMEs, and run.py calls it whatever happens (failure,
Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for tests/
from tests.waiting import free_port, short_home, wait_for

__all__ = ["free_port", "short_home", "wait_for"]


def log(text: str) -> None:
    """Progress for the person waiting: stderr, so stdout holds only figures."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def gdos_argv() -> list[str]:
    """The console script an operator runs, from this interpreter's environment."""
    script = Path(sys.executable).with_name("gdos")
    return [str(script)] if script.exists() else [sys.executable, "-P", "-m", "gdos.cli.main"]


def timed(argv: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> float:
    """Wall time of one command, end to end; raises if it fails."""
    began = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, timeout=timeout)
    elapsed = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])}... exited {result.returncode}: "
            f"{result.stderr.decode(errors='replace')[-500:]}"
        )
    return elapsed


def median_time(
    argv: list[str], env: dict[str, str] | None = None, runs: int = 7, warmups: int = 2
) -> tuple[float, list[float]]:
    for _ in range(warmups):
        timed(argv, env)
    times = [timed(argv, env) for _ in range(runs)]
    return statistics.median(times), times


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 1e6


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    home: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Owned:
    """Every process and folder this benchmark made."""

    procs: list[Proc] = field(default_factory=list)
    homes: list[Path] = field(default_factory=list)

    def home(self, prefix: str) -> Path:
        path = short_home(prefix)
        self.homes.append(path)
        return path

    def spawn(self, name: str, argv: list[str], home: Path) -> Proc:
        log_file = home / f"{name}.log"
        env = {**os.environ, "GDOS_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        with open(log_file, "ab") as out:
            popen = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        proc = Proc(name, popen, home, log_file)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after ``grace``."""
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group too
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in list(self.procs):
            with contextlib.suppress(Exception):
                self.stop(proc, grace=5.0)
        for home in self.homes:
            shutil.rmtree(home, ignore_errors=True)
        self.homes.clear()


def exit_on_signals() -> None:
    """SIGTERM becomes SystemExit and SIGINT KeyboardInterrupt, so ``finally`` cleans up.

    SIGINT is set explicitly: a shell starting us in the background may have
    left it ignored, and Python keeps an inherited SIG_IGN.
    """

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def run_owned(work: Callable[[Owned], object]) -> int:
    """Run ``work`` with a fresh ``Owned``; clean up all it started, whatever happens."""
    exit_on_signals()
    owned = Owned()
    try:
        work(owned)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        owned.close()
    return 0


# -- the daemon -------------------------------------------------------------------


def _launch(owned: Owned, home: Path, port: int, extra: tuple[str, ...]) -> Proc:
    argv = [*gdos_argv(), "daemon", "run", "--mesh", f"tcp://127.0.0.1:{port}", *extra]
    return owned.spawn("daemon", argv, home)


@dataclass
class Daemon:
    proc: Proc
    port: int
    owned: Owned
    extra: tuple[str, ...] = ()  # options of `daemon run`, kept for restart

    @property
    def home(self) -> Path:
        return self.proc.home

    @property
    def mesh(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "GDOS_HOME": str(self.home)}

    @classmethod
    def start(cls, owned: Owned, *extra: str) -> Daemon:
        home, port = owned.home("gb-"), free_port()
        daemon = cls(_launch(owned, home, port, extra), port, owned, extra)
        daemon.wait_answering()
        return daemon

    def wait_answering(self) -> None:
        wait_for(lambda: self.ping() or not self.proc.alive(), 20, "the daemon to answer")
        if not self.proc.alive():
            raise RuntimeError(f"the daemon exited:\n{self.proc.log_text()[-2000:]}")

    def halt(self, sig: int = signal.SIGTERM) -> None:
        """Stop with ``sig``: SIGTERM is ``gdos daemon stop``, SIGKILL a crash (nothing
        saved on the way out). The GDOS_HOME stays, for ``relaunch``."""
        if sig != signal.SIGTERM:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        self.owned.stop(self.proc, grace=20.0)

    def relaunch(self) -> float:
        """Start again on the same GDOS_HOME and port; the monotonic time of the
        launch. Returns once the new process answers on its control socket."""
        launched = time.monotonic()
        self.proc = _launch(self.owned, self.home, self.port, self.extra)
        self.wait_answering()
        return launched

    def restart(self, sig: int = signal.SIGTERM) -> float:
        self.halt(sig)
        return self.relaunch()

    def call(self, kind: str, **body: Any) -> dict[str, Any]:
        from gdos.client.control import Client

        async def once() -> dict[str, Any]:
            client = await Client.connect(self.home / "run" / "control.sock", timeout=5)
            try:
                reply: dict[str, Any] = await client.call(kind, **body)
                return reply
            finally:
                await client.close()

        return asyncio.run(once())

    def ping(self) -> dict[str, Any]:
        return self.call("ping")

    def online(self) -> int:
        return int(self.ping()["online"])

    def token(self, uses: int | None = None) -> str:
        reply = self.call("token.create", ttl=3600.0, uses=uses, address=self.mesh)
        return str(reply["token"])

    def gdos(self, *args: str) -> list[str]:
        return [*gdos_argv(), *args]

    def stop(self) -> None:
        self.owned.stop(self.proc, grace=20.0)


def kill_recorded(pid_file: Path) -> int:
    """SIGKILL the service in an agent's ``pid.json`` (and its descendants), if it
    is still that process (pid *and* create_time match); how many were killed.

    Services run in their own sessions and outlive their agent, so a benchmark
    that started some must find them here on the way out."""
    try:
        data = json.loads(pid_file.read_text())
        proc = psutil.Process(int(data["pid"]))
        if abs(proc.create_time() - float(data["create_time"])) > 0.05:
            return 0  # the pid now belongs to another program
        victims = [proc, *proc.children(recursive=True)]
    except (OSError, ValueError, KeyError, psutil.Error):
        return 0
    for victim in victims:
        with contextlib.suppress(psutil.Error):
            victim.send_signal(signal.SIGKILL)
    return len(victims)


class RssWatch:
    """Samples a process's RSS in the background; keeps the peak."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        import threading

        self.pid, self.every, self.peak = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, rss_mb(self.pid))
            self._stop.wait(self.every)

    def close(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak
