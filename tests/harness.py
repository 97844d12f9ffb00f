"""Real processes on loopback for integration tests.

A ``Fleet`` owns one daemon and any number of agents, each a real process
with its own short temporary ``GDOS_HOME``, and drives them through the real
``gdos`` CLI. Waiting is always for a condition with a deadline, never a bare
sleep. Every process is started in its own session and killed with its
whole group at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tests.waiting import START_WAIT, free_port, short_home, unchanged_for, wait_for

__all__ = ["START_WAIT", "Fleet", "Proc", "free_port", "short_home", "unchanged_for", "wait_for"]

DEFAULT_WAIT = 20.0  # waits on a running fleet (offline after --offline-after 2, ...)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    home: Path
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: int) -> None:
        """Send ``sig`` to the process's whole group, without waiting."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the group and wait for the process to exit."""
        if self.alive():
            self.send(sig)
            self.popen.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Fleet:
    daemon_home: Path = field(default_factory=lambda: short_home("gd-"))
    port: int = field(default_factory=free_port)
    daemon: Proc | None = None
    agents: dict[str, Proc] = field(default_factory=dict)
    homes: list[Path] = field(default_factory=list)
    daemon_args: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"  # the daemon's mesh address (another one inside a namespace)
    daemon_wrap: list[str] = field(default_factory=list)  # e.g. ["ip", "netns", "exec", NS]
    # every process started, replaced daemons and agents included: close() kills them all
    started: list[Proc] = field(default_factory=list)
    background: list[subprocess.Popen[str]] = field(default_factory=list)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def mesh(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def env(self, home: Path) -> dict[str, str]:
        return {**os.environ, "GDOS_HOME": str(home), "PYTHONUNBUFFERED": "1"}

    # -- the CLI --------------------------------------------------------------
    def gdos(
        self, *args: str, home: Path | None = None, timeout: float = 60, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real CLI against this fleet's daemon."""
        return subprocess.run(
            [sys.executable, "-m", "gdos.cli.main", *args],
            env=self.env(home or self.daemon_home),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )

    def gdos_background(self, *args: str) -> subprocess.Popen[str]:
        """Start the real CLI against this fleet's daemon without waiting for it
        (a follow, a long exec to cancel); the caller reads and ends it."""
        popen = subprocess.Popen(
            [sys.executable, "-m", "gdos.cli.main", *args],
            env=self.env(self.daemon_home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.background.append(popen)
        return popen

    def gdos_json(self, *args: str) -> Any:
        result = self.gdos(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["name"]: n for n in self.gdos_json("node", "list")}

    def wait_online(self, *names: str, timeout: float = START_WAIT) -> None:
        """Wait for ``names`` online; usually right after their agents were started."""
        wait_for(
            lambda: all(self.nodes().get(n, {}).get("online") for n in names),
            timeout,
            f"nodes {names} online",
        )

    def wait_offline(self, name: str, timeout: float = DEFAULT_WAIT) -> None:
        wait_for(lambda: self.nodes()[name]["online"] is False, timeout, f"{name} offline")

    # -- processes ----------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], home: Path) -> Proc:
        log = home / f"{name}.out"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv,
                env=self.env(home),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        proc = Proc(name, popen, home, log)
        self.started.append(proc)
        return proc

    def start_daemon(self, *extra: str) -> Proc:
        args = [
            "--mesh",
            self.mesh,
            "--heartbeat",
            "0.5",
            "--offline-after",
            "2",
            "--metrics-interval",
            "0.5",
            *(extra or self.daemon_args),
        ]
        self.daemon_args = list(extra or self.daemon_args)
        daemon = self.daemon = self._spawn(
            "daemon",
            [*self.daemon_wrap, sys.executable, "-m", "gdos.cli.main", "daemon", "run", *args],
            self.daemon_home,
        )
        wait_for(
            lambda: self.gdos("daemon", "status").returncode == 0 or not daemon.alive(),
            START_WAIT,
            "daemon answering",
        )
        assert daemon.alive(), daemon.log_text()
        return daemon

    def stop_daemon(self, sig: int = signal.SIGTERM) -> None:
        assert self.daemon is not None
        self.daemon.kill(sig)

    def token(self, *extra: str) -> str:
        result = self.gdos("token", "create", "--address", self.mesh, *extra)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def daemon_key(self) -> str:
        return str(self.gdos_json("daemon", "status")["public_key"])

    def start_agent(
        self,
        name: str,
        *extra: str,
        join: str | None = None,
        home: Path | None = None,
        wrap: Sequence[str] = (),
    ) -> Proc:
        """Start a real agent process (``gdos agent run``) with its own GDOS_HOME.

        ``wrap`` prefixes the command line, e.g. ``ip netns exec NS`` to run the
        agent inside a network namespace (the wrapper must exec the command,
        so that the process and its group are the agent's).
        """
        if home is None:
            home = short_home(f"ga-{name}-")
            self.homes.append(home)
        link = (
            ["--join", join]
            if join
            else (
                ["--daemon", self.mesh, "--daemon-key", self.daemon_key()]
                if "--insecure" not in extra
                else ["--daemon", self.mesh]
            )
        )
        argv = [
            *wrap,
            sys.executable,
            "-m",
            "gdos.cli.main",
            "agent",
            "run",
            "--name",
            name,
            "--backoff-max",
            "0.5",
            *link,
            *extra,
        ]
        proc = self._spawn(name, argv, home)
        self.agents[name] = proc
        return proc

    def close(self) -> None:
        """Kill everything this fleet started, then remove its folders.

        Every step runs even if an earlier one fails (a process that will not
        die must not leave the others running); the first failure is raised.
        """
        # tests may also put a process they spawned themselves into ``agents``
        registered = [*self.agents.values(), *([self.daemon] if self.daemon else [])]
        procs = list({id(p): p for p in [*reversed(self.started), *registered]}.values())
        steps: list[Callable[[], object]] = [proc.kill for proc in procs]
        steps += [partial(_end, popen) for popen in self.background]
        steps += [partial(kill_instances, home) for home in self.homes]
        failures = []
        for step in steps:
            try:
                step()
            except Exception as exc:  # raised below, once every step ran
                failures.append(exc)
        for home in [self.daemon_home, *self.homes]:
            shutil.rmtree(home, ignore_errors=True)
        if failures:
            raise failures[0]


def _end(popen: subprocess.Popen[str]) -> None:
    """Kill a background CLI the test did not end itself."""
    if popen.poll() is None:
        popen.kill()
        popen.wait(10)


def kill_instances(home: Path) -> None:
    """Kill what agents left running under ``home`` (services outlive their agent).

    Each instance's pid.json names its pid and start time. Only a process that
    is still that very one is signalled (the agent's own ProcRef check), so a
    pid since reused by an unrelated process is left alone; its group only
    when it leads one (a service the agent started in a session of its own),
    never the group of an adopted process that merely belongs to one.
    """
    from gdos.agent.procs import ProcRef, is_alive, signal_ref

    for pid_file in home.glob("state/agent/instances/*/*/pid.json"):
        try:
            record = json.loads(pid_file.read_text())
            ref = ProcRef(int(record["pid"]), float(record["create_time"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        with contextlib.suppress(OSError):
            if is_alive(ref) and os.getpgid(ref.pid) == ref.pid:
                os.killpg(ref.pid, signal.SIGKILL)
        signal_ref(ref, signal.SIGKILL)
