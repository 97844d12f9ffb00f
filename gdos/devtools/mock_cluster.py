"""The mock cluster: thousands of simulated agents for scale tests of the daemon.

The agents themselves are ``gdos.devtools.sim_agent.SimAgent``; this module
runs them: configuration, keypairs, one ``Cluster`` per process on one loop
and one zmq context, and worker processes for larger clusters (``python -m
gdos.devtools.mock_cluster --worker``, configured through stdin, reporting
progress as JSON lines on stdout); a worker stops when its stdin closes, so
it never outlives the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import zmq

from gdos.agent.session import HELLO_TIMEOUT
from gdos.devtools.sim_agent import SimAgent
from gdos.errors import ErrorCode, GdosError
from gdos.identity.keys import is_z85_key
from gdos.identity.tokens import JoinToken
from gdos.identity.tokens import decode as decode_token
from gdos.names import NAME_PATTERN
from gdos.wire.dialing import normalize_address, raise_fd_limit

log = logging.getLogger("gdos.mock")

FDS_PER_AGENT = 2  # the socket's mailbox and its TCP connection
FD_RESERVE = 128
AGENTS_PER_PROC = 4000  # what --procs 0 (auto) aims for
CONNECT_BURST = 200  # connects between yields to the loop

Body = dict[str, Any]


@dataclass
class ClusterConfig:
    """Everything a cluster (or one worker's share of it) needs."""

    agents: int
    address: str
    server_key: str | None  # None: --insecure
    token: str | None = None  # the join token as given
    prefix: str = "sim"
    start_index: int = 0
    keys_dir: str | None = None
    rate: float = 0.0  # connects per second; 0: as fast as the loop goes
    backoff_max: float = 5.0
    hello_timeout: float = HELLO_TIMEOUT  # --hello-timeout: to study enrollment storms
    width: int = 5  # digits in the node number

    def name(self, index: int) -> str:
        return f"{self.prefix}-{index:0{self.width}d}"

    def share(self, start: int, count: int, rate: float) -> ClusterConfig:
        return ClusterConfig(
            **{**asdict(self), "start_index": start, "agents": count, "rate": rate}
        )


def make_config(
    agents: int,
    join: str | None = None,
    daemon: str | None = None,
    daemon_key: str | None = None,
    insecure: bool = False,
    prefix: str = "sim",
    start_index: int = 0,
    keys_dir: Path | None = None,
    rate: float = 0.0,
    backoff_max: float = 5.0,
    hello_timeout: float = HELLO_TIMEOUT,
) -> ClusterConfig:
    """Check the options the way the real agent does; raises GdosError."""
    if agents < 1 or start_index < 0:
        raise GdosError(ErrorCode.INVALID_ARGUMENT, "--agents must be >= 1, --start-index >= 0.")
    token: JoinToken | None = None
    if join:
        token = decode_token(join)
        if token.expired():
            raise GdosError(
                ErrorCode.TOKEN_EXPIRED,
                "the join token has expired; make a new one with 'gdos token create'.",
            )
        if insecure:
            raise GdosError(ErrorCode.INVALID_ARGUMENT, "--join needs CURVE; drop --insecure.")
    address = normalize_address(daemon) if daemon else (token.address if token else None)
    if address is None:
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            "give --join TOKEN, or --daemon HOST:PORT with --daemon-key KEY (or --insecure).",
        )
    key = None if insecure else (daemon_key or (token.server_key if token else None))
    if not insecure and (not key or not is_z85_key(key)):
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            "--daemon-key must be the daemon's 40-character public key "
            "(see 'gdos daemon status'), or pass --insecure on both sides.",
        )
    width = max(5, len(str(start_index + agents - 1)))
    config = ClusterConfig(
        agents=agents,
        address=address,
        server_key=key,
        token=join,
        prefix=prefix,
        start_index=start_index,
        keys_dir=str(keys_dir) if keys_dir else None,
        rate=max(0.0, rate),
        backoff_max=max(0.1, backoff_max),
        hello_timeout=max(0.1, hello_timeout),
        width=width,
    )
    for index in (start_index, start_index + agents - 1):
        if not NAME_PATTERN.match(config.name(index)):
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT,
                f"--prefix {prefix!r} gives invalid node names like {config.name(index)!r}.",
            )
    return config


def agents_per_proc_limit() -> int:
    """How many agents one process can hold under the hard descriptor limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    return max(1, (int(hard) - FD_RESERVE) // FDS_PER_AGENT)


def plan_procs(agents: int, procs: int) -> int:
    """Worker processes to use: ``procs``, or enough for ``agents`` when 0."""
    limit = agents_per_proc_limit()
    if procs <= 0:
        procs = max(1, math.ceil(agents / min(AGENTS_PER_PROC, limit)))
    if math.ceil(agents / procs) > limit:
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"{math.ceil(agents / procs)} agents per process need more than the "
            f"descriptor limit allows (about {limit} per process); use --procs "
            f"{math.ceil(agents / limit)} or more.",
        )
    return min(procs, agents)


# -- keys --------------------------------------------------------------------


def load_keys(config: ClusterConfig) -> list[tuple[bytes, bytes]]:
    """One (public, secret) pair per agent: fresh, or kept in --keys-dir."""
    indices = range(config.start_index, config.start_index + config.agents)
    if config.server_key is None:
        return [(b"", b"") for _ in indices]
    if not config.keys_dir:
        return [zmq.curve_keypair() for _ in indices]
    from gdos.paths import ensure_private_dir

    folder = Path(config.keys_dir)
    ensure_private_dir(folder)
    pairs = []
    for index in indices:
        path = folder / f"{config.name(index)}.keypair"
        pair = _read_pair(path)
        if pair is None:
            pair = zmq.curve_keypair()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pair[0] + b"\n" + pair[1] + b"\n")
        pairs.append(pair)
    return pairs


def _read_pair(path: Path) -> tuple[bytes, bytes] | None:
    try:
        public, secret = path.read_bytes().split()
    except (FileNotFoundError, ValueError):
        return None
    return (public, secret) if is_z85_key(public) and is_z85_key(secret) else None


# -- a cluster in this process ------------------------------------------------------


class Cluster:
    """Every simulated agent of this process, on one loop and one zmq context."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.token = decode_token(config.token) if config.token else None
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.loop = asyncio.get_running_loop()
        self.agents: list[SimAgent] = []
        self.welcomed = self.online = 0
        self.frames_in = self.frames_out = 0
        self.notes: dict[str, int] = {}

    def note(self, text: str) -> None:
        """Log a condition once, then only count it (thousands of agents share it)."""
        seen = self.notes.get(text, 0)
        self.notes[text] = seen + 1
        if seen == 0:
            log.warning("%s (further occurrences counted, not logged)", text)

    async def start(self) -> None:
        """Make the agents and dial, paced by ``rate`` when given."""
        fd_limit = raise_fd_limit()
        needed = self.config.agents * FDS_PER_AGENT + FD_RESERVE
        if needed > fd_limit:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT,
                f"{self.config.agents} agents need about {needed} descriptors, above "
                f"this process's limit of {fd_limit}; use more --procs.",
            )
        limit = int(self.ctx.get(zmq.SOCKET_LIMIT))
        self.ctx.set(zmq.MAX_SOCKETS, min(limit, self.config.agents + 64))
        pairs = load_keys(self.config)
        self.agents = [
            SimAgent(self, self.config.start_index + i, public, secret)
            for i, (public, secret) in enumerate(pairs)
        ]
        began = time.monotonic()
        for n, agent in enumerate(self.agents, 1):
            agent.connect()
            if self.config.rate > 0:
                delay = began + n / self.config.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif n % CONNECT_BURST == 0:
                await asyncio.sleep(0)

    def close(self) -> None:
        """Every agent says goodbye, as the real one does on SIGTERM; term waits for them."""
        for agent in self.agents:
            agent.close(bye=True)
        self.ctx.term()

    def status(self) -> Body:
        return {"welcomed": self.welcomed, "online": self.online}


async def _run_cluster(
    config: ClusterConfig, stop: asyncio.Event, report: Callable[[Body], None]
) -> None:
    """Run one process's agents until ``stop``, calling ``report`` on changes."""
    cluster = Cluster(config)
    last: Body = {}
    try:
        starting = asyncio.ensure_future(cluster.start())
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
            if starting.done() and starting.exception() is not None:
                raise starting.exception()  # type: ignore[misc]
            now = cluster.status()
            if now != last:
                report(now)
                last = now
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    finally:
        cluster.close()
        if cluster.notes:
            counted = ", ".join(f"{text}: {n}" for text, n in cluster.notes.items())
            log.info("%s: %s", config.name(config.start_index), counted)


# -- parent and workers --------------------------------------------------------------


class Progress:
    """Totals over every worker; prints the online line once, progress to stderr."""

    def __init__(self, total: int, began: float, out: Any = None) -> None:
        self.total, self.began = total, began
        self.out = out or sys.stdout
        self.parts: dict[int, Body] = {}
        self.announced = False
        self.last_print = began

    def update(self, part: int, status: Body) -> None:
        self.parts[part] = status
        welcomed = sum(p.get("welcomed", 0) for p in self.parts.values())
        now = time.monotonic()
        if welcomed >= self.total and not self.announced:
            self.announced = True
            self.out.write(f"{self.total} simulated agents online in {now - self.began:.2f}s\n")
            self.out.flush()
        elif not self.announced and now - self.last_print >= 5:
            self.last_print = now
            online = sum(p.get("online", 0) for p in self.parts.values())
            sys.stderr.write(
                f"... {welcomed}/{self.total} welcomed, {online} online "
                f"after {now - self.began:.0f}s\n"
            )


def run(config: ClusterConfig, procs: int = 0, log_level: str = "WARNING") -> int:
    """Run the mock cluster until SIGINT or SIGTERM; returns an exit code."""
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    began = time.monotonic()
    count = plan_procs(config.agents, procs)
    if count == 1:
        return asyncio.run(_single(config, began))
    return asyncio.run(_parent(config, count, began, log_level))


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _single(config: ClusterConfig, began: float) -> int:
    stop = asyncio.Event()
    _stop_on_signals(stop)
    progress = Progress(config.agents, began)
    await _run_cluster(config, stop, lambda status: progress.update(0, status))
    return 0


async def _parent(config: ClusterConfig, count: int, began: float, log_level: str) -> int:
    stop = asyncio.Event()
    _stop_on_signals(stop)
    progress = Progress(config.agents, began)
    size = math.ceil(config.agents / count)
    workers: list[asyncio.subprocess.Process] = []
    readers: list[asyncio.Future[None]] = []
    failed: list[str] = []

    async def follow(part: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            with contextlib.suppress(ValueError):
                progress.update(part, json.loads(line))
        code = await proc.wait()
        if not stop.is_set():
            failed.append(f"worker {part} exited with code {code}")
            stop.set()

    try:
        for part in range(count):
            start = part * size
            share = config.share(
                config.start_index + start,
                min(size, config.agents - start),
                config.rate / count,
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",
                "-m",
                "gdos.devtools.mock_cluster",
                "--worker",
                "--log-level",
                log_level,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(asdict(share)).encode() + b"\n")
            workers.append(proc)
            readers.append(asyncio.ensure_future(follow(part, proc)))
        await stop.wait()
    finally:
        for proc in workers:  # a closed stdin tells a worker to stop
            if proc.stdin is not None:
                proc.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 10)
        for proc in workers:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    for text in failed:
        sys.stderr.write(f"error[internal]: mock cluster {text}\n")
    return 1 if failed else 0


async def _worker(log_level: str) -> int:
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    config = ClusterConfig(**json.loads(await reader.readline()))
    stop = asyncio.Event()
    # The parent stops us by closing stdin; signals only from a terminal's Ctrl-C.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def watch_stdin() -> None:
        await reader.read()
        stop.set()

    watcher = asyncio.ensure_future(watch_stdin())

    def report(status: Body) -> None:
        sys.stdout.write(json.dumps(status) + "\n")
        sys.stdout.flush()

    try:
        await _run_cluster(config, stop, report)
    except GdosError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    finally:
        watcher.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m gdos.devtools.mock_cluster --worker``: one worker process."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gdos.devtools.mock_cluster")
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    return asyncio.run(_worker(args.log_level))


if __name__ == "__main__":
    raise SystemExit(main())
