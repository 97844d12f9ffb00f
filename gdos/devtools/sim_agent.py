"""One simulated agent of the mock cluster: the agent's protocol, without processes.

A ``SimAgent`` is a real DEALER socket with its own CURVE keypair driven by
the agent's own session core (agent/session.py), so the two cannot drift:
hello with a join proof, welcome, heartbeats and metrics on the pushed
intervals, rehello, refusal by node state, results kept until acknowledged,
goodbye on stop. Only the work is fake: commands are simulated (``true``,
``false``, ``echo ARGS``, ``sleep S``, cancellable and bounded by the
timeout; anything else succeeds with no output), remote shells are refused,
services, packages and logs are not simulated. Agents are callbacks on one
loop (``add_reader`` and ``call_later``), not tasks, so an idle one costs a
socket and a few small objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shlex
import signal
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import zmq

from gdos import __version__
from gdos.agent.session import BACKOFF_BASE, BYE_LINGER_MS, CLOSE, Session, WorkHandler
from gdos.agent.shells import refuse_shell
from gdos.errors import ErrorCode
from gdos.model import HostStatus, NodeState
from gdos.wire import protocol
from gdos.wire.dialing import backoff_delay, configure_dealer

if TYPE_CHECKING:
    from gdos.devtools.mock_cluster import Cluster

TERM = -int(signal.SIGTERM)  # exit code of a killed 'sleep'
GIB = 1024**3

Body = dict[str, Any]


# -- fake node data ----------------------------------------------------------


def fake_facts(name: str, index: int) -> Body:
    """Small, plausible static facts, shaped like agent/facts.py's."""
    rng = random.Random(index)
    cores = rng.choice((2, 4, 8, 16))
    ip = f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"
    mac = "02:5a:" + ":".join(f"{(index >> s) & 255:02x}" for s in (24, 16, 8, 0))
    return {
        "hostname": name,
        "os": "linux",
        "distro": "Debian GNU/Linux 12 (bookworm)",
        "distro_id": "debian",
        "distro_version": "12",
        "kernel": "6.1.0-21-amd64",
        "arch": "x86_64",
        "cpu_model": "Simulated CPU @ 2.40GHz",
        "cpu_cores": cores,
        "cpu_threads": cores * 2,
        "cpu_max_mhz": 2400.0,
        "memory_total": cores * 4 * GIB,
        "swap_total": 2 * GIB,
        "disks": [
            {"device": "/dev/vda1", "mount": "/", "fstype": "ext4", "total": 100 * GIB},
        ],
        "nics": [
            {
                "name": "eth0",
                "mac": mac,
                "ipv4": [ip],
                "ipv6": [],
                "speed_mbps": 10000,
                "up": True,
            },
        ],
        "boot_time": time.time() - rng.uniform(3600, 90 * 86400),
        "agent_version": __version__,
        "python": "3.11.2",
        "gpus": [],
        "simulated": True,
    }


def fake_sample(uptime: float, cores: int) -> Body:
    """One metrics sample, shaped like agent/metrics.py's."""
    cpu = random.uniform(1, 35)
    used = random.uniform(0.2, 0.7)
    disk_used = random.uniform(0.1, 0.8)
    return {
        "ts": time.time(),
        "cpu_percent": round(cpu, 1),
        "cpu_per_core": [round(random.uniform(0, 2 * cpu), 1) for _ in range(cores)],
        "load1": round(cpu * cores / 100, 2),
        "load5": round(cpu * cores / 110, 2),
        "load15": round(cpu * cores / 120, 2),
        "mem_total": cores * 4 * GIB,
        "mem_used": int(cores * 4 * GIB * used),
        "mem_percent": round(used * 100, 1),
        "swap_total": 2 * GIB,
        "swap_used": 0,
        "swap_percent": 0.0,
        "disks": [
            {
                "mount": "/",
                "total": 100 * GIB,
                "used": int(100 * GIB * disk_used),
                "percent": round(disk_used * 100, 1),
            }
        ],
        "disk_read_bps": round(random.uniform(0, 2e6)),
        "disk_write_bps": round(random.uniform(0, 4e6)),
        "net_rx_bps": round(random.uniform(0, 1e6)),
        "net_tx_bps": round(random.uniform(0, 1e6)),
        "procs": random.randint(90, 240),
        "uptime": uptime,
        "gpus": [],
    }


# -- one simulated command -----------------------------------------------------


class SimRun:
    """A simulated command: output chunks sent as credit allows, then a result."""

    __slots__ = (
        "agent",
        "chunks",
        "credit",
        "exit_code",
        "finished",
        "initial_credit",
        "reason",
        "seq",
        "started",
        "status",
        "stdout",
        "task",
        "timers",
    )

    def __init__(self, agent: SimAgent, task: int, credit: int) -> None:
        self.agent, self.task = agent, task
        self.initial_credit = self.credit = max(1, credit)
        self.chunks: list[bytes] = []
        self.stdout = b""
        self.seq = 0
        self.started = time.time()
        self.status: str | None = None  # set once the command is over
        self.exit_code: int | None = None
        self.reason: str | None = None
        self.finished = False
        self.timers: list[asyncio.TimerHandle] = []

    def output(self, data: bytes) -> None:
        self.stdout += data[: protocol.OUTPUT_CAP_BYTES]
        step = protocol.CHUNK_BYTES
        self.chunks += [data[i : i + step] for i in range(0, len(data), step)]

    def end(self, status: str, exit_code: int | None, reason: str | None) -> None:
        """The command is over; the result goes once every chunk went out."""
        if self.status is not None:
            return
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        self.status, self.exit_code, self.reason = status, exit_code, reason
        if status in (HostStatus.TIMED_OUT, HostStatus.CANCELED):
            self.chunks.clear()  # the real agent closes the window on a kill
        self.pump()

    def grant(self, credit: int) -> None:
        if credit > 0:
            self.credit += credit
            self.pump()

    def reset_credit(self) -> None:
        """After a reconnect the daemon counts afresh."""
        self.credit = self.initial_credit
        self.pump()

    def pump(self) -> None:
        while self.chunks and self.credit > 0:
            self.credit -= 1
            self.seq += 1
            self.agent.send(
                "exec.output",
                {
                    "task": self.task,
                    "stream": "stdout",
                    "seq": self.seq,
                    "data": self.chunks.pop(0),
                },
            )
        if self.status is not None and not self.chunks and not self.finished:
            self.finished = True
            result: Body = {
                "task": self.task,
                "status": self.status,
                "started": self.started,
                "ended": time.time(),
                "exit_code": self.exit_code,
                "stdout": self.stdout,
                "stderr": b"",
                "stdout_truncated": False,
                "stderr_truncated": False,
            }
            if self.reason:
                result["reason"] = self.reason
            self.agent.finish(self.task, result)


# -- one simulated agent --------------------------------------------------------


class SimAgent:
    """One node: a DEALER socket driven by loop callbacks, the agent's session core inside."""

    __slots__ = (
        "attempt",
        "cluster",
        "cores",
        "counted",
        "draining",
        "fd",
        "hello_wait",
        "index",
        "last_rx",
        "name",
        "pid",
        "public",
        "runs",
        "secret",
        "session",
        "socket",
        "timers",
        "welcomed_once",
    )

    def __init__(self, cluster: Cluster, index: int, public: bytes, secret: bytes) -> None:
        self.cluster, self.index = cluster, index
        self.name = cluster.config.name(index)
        self.public, self.secret = public, secret
        self.cores = (2, 4, 8, 16)[index % 4]
        self.socket: zmq.Socket[bytes] | None = None
        self.fd = -1
        self.counted = self.welcomed_once = self.draining = False  # counted: in cluster.online
        self.last_rx = 0.0
        self.attempt = 0
        self.pid = 1000 + index % 30000
        self.runs: dict[int, SimRun] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.session = Session(
            self.name,
            lambda: fake_facts(self.name, self.index),
            self.send,
            self,
            token=cluster.token,
            public_key=public or None,
            note=cluster.note,
        )

    # -- connection -----------------------------------------------------------
    def connect(self) -> None:
        """Open a socket, say hello, wait for the welcome."""
        c = self.cluster
        s: zmq.Socket[bytes] = c.ctx.socket(zmq.DEALER)
        key = c.config.server_key
        curve = None if key is None else (key, self.public, self.secret)
        configure_dealer(s, self.name, sndhwm=1000, curve=curve)
        s.connect(c.config.address)
        self.socket, self.fd = s, int(s.getsockopt(zmq.FD))  # type: ignore[arg-type]
        c.loop.add_reader(self.fd, self.drain)
        self.session.hello()
        self.hello_wait = c.config.hello_timeout
        self._timer("hello", self.hello_wait, self._hello_timeout)

    def close(self, *, bye: bool = False) -> None:
        """Drop the connection; ``bye`` (the cluster stops) says goodbye first, as the agent."""
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        linger = BYE_LINGER_MS if bye and self.session.online else 0
        if bye:
            self.session.bye()
        if self.socket is not None:
            self.cluster.loop.remove_reader(self.fd)
            self.socket.close(linger=linger)
            self.socket = None
        self.session.lost()
        if self.counted:
            self.counted = False
            self.cluster.online -= 1

    def _end_session(self) -> None:
        """Drop this connection and dial again after a backoff, like the agent."""
        welcomed = self.session.online
        self.close()
        self.attempt = 0 if welcomed else self.attempt + 1
        delay = backoff_delay(self.attempt, BACKOFF_BASE, self.cluster.config.backoff_max)
        self._timer("redial", delay, self.connect)

    def _hello_timeout(self) -> None:
        """As the agent: a busy daemon is asked again on the same connection."""
        self.hello_wait = self.session.next_hello_wait(self.hello_wait)
        self.cluster.note("no welcome yet; asking again")
        self.session.hello()
        self._timer("hello", self.hello_wait, self._hello_timeout)

    def _timer(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        old = self.timers.pop(name, None)
        if old is not None:
            old.cancel()
        self.timers[name] = self.cluster.loop.call_later(delay, callback)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if self.session.silent_too_long(now, self.last_rx):
            self.cluster.note("daemon silent; reconnecting")
            self._end_session()
            return
        self.session.heartbeat(now)
        self._timer("heartbeat", self.session.heartbeat_interval, self._heartbeat)

    def _metrics(self) -> None:
        uptime = time.time() - self.session.started
        self.send("metrics", {"sample": fake_sample(uptime, self.cores)})
        self._timer("metrics", self.session.metrics_interval, self._metrics)

    # -- wire ---------------------------------------------------------------
    def send(self, kind: str, body: Body) -> None:
        s = self.socket
        if s is None:
            return
        try:
            s.send(protocol.encode(kind, body), zmq.DONTWAIT)
        except zmq.ZMQError:
            self.cluster.note(f"could not send {kind} now")
            return
        self.cluster.frames_out += 1
        # A send may consume the descriptor's edge: look for input now.
        if not self.draining and int(s.getsockopt(zmq.EVENTS)) & zmq.POLLIN:  # type: ignore[arg-type]
            self.cluster.loop.call_soon(self.drain)

    def drain(self) -> None:
        self.draining = True
        try:
            while (s := self.socket) is not None:
                try:
                    data = s.recv(zmq.DONTWAIT)
                except zmq.Again:
                    return
                self.last_rx = time.monotonic()
                self.cluster.frames_in += 1
                if self.session.receive(data) == CLOSE:  # revoked, or the key refused
                    self._end_session()
        finally:
            self.draining = False

    # -- session events (the Work protocol of agent/session.py) ------------------
    def welcomed(self) -> None:
        hello = self.timers.pop("hello", None)
        if hello is not None:
            hello.cancel()
        if not self.counted:
            self.counted = True
            self.cluster.online += 1
        if not self.welcomed_once:
            self.welcomed_once = True
            self.cluster.welcomed += 1
        # First sends jittered over one interval so agents do not fire in lockstep.
        session = self.session
        self._timer("heartbeat", random.uniform(0, session.heartbeat_interval), self._heartbeat)
        self._timer("metrics", random.uniform(0, session.metrics_interval), self._metrics)
        for run in self.runs.values():
            run.reset_credit()

    def set_node_state(self, state: NodeState) -> None:
        """Nothing runs here for a disabled node to stop."""

    def start_exec(self, body: Body) -> None:
        """A command the session admitted: simulated by its program name."""
        task = body["task"]
        argv = [str(a) for a in body["argv"]]
        if body.get("shell"):
            with contextlib.suppress(ValueError):
                argv = shlex.split(" ".join(argv))
        run = SimRun(self, task, int(body.get("credit", protocol.INITIAL_CREDIT)))
        self.runs[task] = run
        self.pid += 1
        self.send("exec.started", {"task": task, "pid": self.pid})
        program, args = (argv[0], argv[1:]) if argv else ("", [])
        if program == "false":
            run.end(HostStatus.FAILED, 1, "exited with code 1")
        elif program == "echo":
            run.output((" ".join(args) + "\n").encode())
            run.end(HostStatus.SUCCEEDED, 0, None)
        elif program == "sleep":
            self._sleep(run, args, float(body["timeout"]))
        else:  # 'true' and anything else
            run.end(HostStatus.SUCCEEDED, 0, None)

    def _sleep(self, run: SimRun, args: list[str], timeout: float) -> None:
        try:
            seconds = float(args[0]) if args else 0.0
        except ValueError:
            run.end(HostStatus.FAILED, 1, "exited with code 1")
            return
        loop = self.cluster.loop
        succeed = (HostStatus.SUCCEEDED, 0, None)
        run.timers.append(loop.call_later(max(0.0, seconds), run.end, *succeed))
        reason = f"timed out after {timeout:g}s; process group killed"
        run.timers.append(loop.call_later(timeout, run.end, HostStatus.TIMED_OUT, TERM, reason))

    def finish(self, task: int, result: Body) -> None:
        self.runs.pop(task, None)
        self.session.finish(task, result)

    # -- the work's handlers -----------------------------------------------------
    def on_exec_cancel(self, body: Body) -> None:
        run = self.runs.get(body["task"])
        if run is not None:
            run.end(HostStatus.CANCELED, TERM, "canceled by the operator")

    def on_exec_credit(self, body: Body) -> None:
        run = self.runs.get(body["task"])
        if run is not None:
            run.grant(body["credit"])

    def on_pty_open(self, body: Body) -> None:
        """Remote shells are refused, so 'gdos shell sim-...' ends at once."""
        if not refuse_shell(self.send, body["session"], self.session.state):
            reason = "simulated agent (gdos dev mock-cluster): no shell"
            code = str(ErrorCode.SPAWN_FAILED)
            self.send("pty.exit", {"session": body["session"], "code": code, "reason": reason})

    def ignore(self, body: Body) -> None:
        """Frames for a shell session that never opened."""

    # The simulator's part of the agent's dispatch table (agent/session.py adds the
    # session's own kinds). Services, packages and logs are not simulated.
    HANDLERS: ClassVar[Mapping[str, WorkHandler]] = {
        "exec.cancel": on_exec_cancel,
        "exec.credit": on_exec_credit,
        "pty.open": on_pty_open,
        **dict.fromkeys(("pty.input", "pty.eof", "pty.resize", "pty.credit", "pty.close"), ignore),
    }
