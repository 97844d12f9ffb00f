"""Limits that keep a hostile or buggy peer from exhausting the daemon.

The mesh (gdos/daemon/mesh.py) asks this module before it spends anything on
a frame or a connection:

- ``Quotas``: a token bucket of bytes and one of frames per identity (an
  accepted key, a pending key, or a routing name when insecure). A frame over
  quota is dropped undecoded and counted; it never blocks anyone else.
- ``ConnectionGuard``: watches the mesh socket's monitor events and shuts
  down a new TCP connection when too many are in their handshake (each may
  make libzmq buffer up to one maximum-size frame) or open in all (file
  descriptors). libzmq offers no such cap itself; its ``EVENT_ACCEPTED``
  carries the descriptor, and every handshake ends in exactly one
  ``HANDSHAKE_SUCCEEDED`` or ``HANDSHAKE_FAILED_*`` event.
- ``Throttle``: one log line per key and interval, with the count of the
  lines it held back, so a flood of bad frames cannot fill the disk.
- ``check_report_size`` / ``check_instance_room``: how many instances one
  report and one node may carry, refused as a counted protocol error.
- ``return_freed_memory``: makes glibc give large freed buffers back to the
  system instead of keeping them in the heap after an attack ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from gdos.errors import ErrorCode
from gdos.wire import protocol
from gdos.wire.protocol import ProtocolError

log = logging.getLogger("gdosd.guard")

LOG_INTERVAL = 60.0  # seconds between two lines about the same thing
MAX_TRACKED = 10_000  # identities / log keys remembered; the least recent go first


@dataclass(frozen=True)
class QuotaLimits:
    """Sustained rate and burst of one identity's frames and bytes."""

    frames_per_s: float
    frame_burst: float
    bytes_per_s: float
    byte_burst: float


def accepted_quota(mib_per_s: float) -> QuotaLimits:
    """An accepted agent's budget: ``--peer-quota-mb`` MiB/s (bursts of 8 s of it)
    and 2,000 frames/s (bursts of 20,000): above what exec output, logs and
    metrics need. Over it, frames are dropped, which stalls that node's
    flow-controlled streams (exec output) rather than anyone else."""
    rate = mib_per_s * 1024**2
    return QuotaLimits(2_000, 20_000, rate, 8 * rate)


# A pending key may say a small hello, a few times.
PENDING_QUOTA = QuotaLimits(1, 8, 64 * 1024, 256 * 1024)


class TokenBucket:
    """``take(n)`` succeeds while the bucket holds ``n`` tokens; it refills at ``rate``/s."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens = rate, burst, burst
        self.stamp = time.monotonic()

    def take(self, amount: float, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True


@dataclass
class _Allowance:
    frames: TokenBucket
    bytes: TokenBucket


class Quotas:
    """Per-identity byte and frame budgets; ``allow`` is O(1) and never blocks."""

    def __init__(self) -> None:
        self._peers: OrderedDict[str, _Allowance] = OrderedDict()
        self.dropped = 0

    def allow(self, identity: str, size: int, limits: QuotaLimits) -> bool:
        now = time.monotonic()
        peer = self._peers.get(identity)
        if peer is None:
            peer = _Allowance(
                TokenBucket(limits.frames_per_s, limits.frame_burst),
                TokenBucket(limits.bytes_per_s, limits.byte_burst),
            )
            self._peers[identity] = peer
            if len(self._peers) > MAX_TRACKED:
                self._peers.popitem(last=False)
        else:
            self._peers.move_to_end(identity)
        if peer.frames.take(1, now) and peer.bytes.take(size, now):
            return True
        self.dropped += 1
        return False


class Throttle:
    """Decides which repeated log lines to write: the first per key and interval."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._seen: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def check(self, key: Hashable) -> int | None:
        """None to stay quiet; else how many lines were held back since the last one."""
        now = time.monotonic()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.interval:
            self._seen[key] = (last[0], last[1] + 1)
            return None
        self._seen[key] = (now, 0)
        self._seen.move_to_end(key)
        if len(self._seen) > MAX_TRACKED:
            self._seen.popitem(last=False)
        return 0 if last is None else last[1]


# Loggers whose lines a remote peer can trigger at will: their repeated INFO
# lines (a pending key redialling, a node flapping) are held back too.
PEER_LOGGERS = frozenset({"gdosd.auth", "gdosd.mesh", "gdosd.guard"})


class RepeatFilter(logging.Filter):
    """Lets one record per logger, text and interval through; counts the rest.

    Installed on the daemon's log handler, so a line repeated by any code path
    (asyncio's "accept() out of system resource" with its traceback, a handler
    bug hit by every frame) is written once per interval with a count.
    """

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        super().__init__()
        self.throttle = Throttle(interval)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and record.name not in PEER_LOGGERS:
            return True
        held = self.throttle.check((record.name, record.getMessage()))
        if held is None:
            return False
        if held:
            record.msg = f"{record.msg} [{held} similar lines held back]"
        return True


@dataclass
class ConnectionCounts:
    """Mesh connections as the monitor reported them.

    ``handshaking`` is accepted minus ended handshakes, never more than the
    connections accepted within the handshake timeout that are still open
    (none older can be in its handshake), so a missed event cannot drift
    into refusing everyone.
    """

    window: float
    accepted: int = 0
    handshakes_done: int = 0  # succeeded or failed
    refused: int = 0
    open_fds: dict[int, float] = field(default_factory=dict)  # fd -> accepted at
    recent: deque[tuple[float, int]] = field(default_factory=deque)  # within the window
    young: int = 0  # open connections among ``recent``
    horizon: float = 0.0  # connections accepted before this left ``recent``

    @property
    def handshaking(self) -> int:
        self._age()
        return max(0, min(self.accepted - self.handshakes_done, self.young))

    def opened(self, fd: int) -> None:
        if fd in self.open_fds:  # its disconnect was missed; the fd is reused
            self.closed(fd)
        at = time.monotonic()
        self.accepted += 1
        self.open_fds[fd] = at
        self.recent.append((at, fd))
        self.young += 1

    def closed(self, fd: int) -> None:
        at = self.open_fds.pop(fd, None)
        if at is not None and at >= self.horizon:
            self.young -= 1

    def _age(self) -> None:
        self.horizon = time.monotonic() - self.window
        while self.recent and self.recent[0][0] < self.horizon:
            at, fd = self.recent.popleft()
            if self.open_fds.get(fd) == at:
                self.young -= 1


HANDSHAKE_ENDS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


class ConnectionGuard:
    """Caps connections in their handshake and in all, from the socket's monitor."""

    def __init__(
        self,
        mesh_socket: zmq.asyncio.Socket,
        max_handshakes: int,
        max_connections: int,
        handshake_timeout: float,
    ) -> None:
        self.max_handshakes, self.max_connections = max_handshakes, max_connections
        self.counts = ConnectionCounts(window=handshake_timeout + 1.0)
        self.port = 0
        self.throttle = Throttle()
        # libzmq allows one monitor per socket: others hear closed connections here.
        self.on_disconnect: list[Callable[[int], None]] = []
        self.monitor = mesh_socket.get_monitor_socket(
            zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | HANDSHAKE_ENDS
        )

    async def serve(self) -> None:
        while True:
            frames = await self.monitor.recv_multipart()
            try:
                self.on_event(parse_monitor_message(frames))
            except Exception:  # the guard must never stop watching
                log.exception("connection monitor event failed")

    def on_event(self, event: Mapping[str, Any]) -> None:
        kind, value, counts = event["event"], int(event["value"]), self.counts
        if kind == zmq.EVENT_ACCEPTED:
            counts.opened(value)
            if counts.handshaking > self.max_handshakes:
                self._refuse(value, f"more than {self.max_handshakes} connections in handshake")
            elif len(counts.open_fds) > self.max_connections:
                self._refuse(value, f"more than {self.max_connections} connections open")
        elif kind == zmq.EVENT_DISCONNECTED:
            counts.closed(value)
            for listener in self.on_disconnect:
                listener(value)
        elif kind & HANDSHAKE_ENDS:
            counts.handshakes_done += 1

    def _refuse(self, fd: int, why: str) -> None:
        """Shut the new connection down; libzmq then closes it and frees its buffers."""
        self.counts.refused += 1
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as conn:
            # the descriptor may have been closed and reused since the event
            if conn.type == socket.SOCK_STREAM and conn.getsockname()[1] == self.port:
                conn.shutdown(socket.SHUT_RDWR)
        held = self.throttle.check(why)
        if held is not None:
            log.warning(
                "refused mesh connections: %s (%d refused so far, %d lines held back)",
                why,
                self.counts.refused,
                held,
            )

    def close(self) -> None:
        self.monitor.close(linger=0)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold so large freed buffers go back to the system.

    glibc raises the threshold dynamically to the largest buffer freed, after
    which multi-MB frames come from the heap and stay resident once freed;
    a fixed threshold keeps them mmapped and unmapped on free. False where
    this is not glibc.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    libc.mallopt(_M_TRIM_THRESHOLD, 4 * MMAP_THRESHOLD)
    return bool(ok)


def trim_heap() -> None:
    """Hand free heap pages back to the system (glibc ``malloc_trim``)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def check_report_size(catalog: Any, node: str, instances: list[Any]) -> None:
    """Refuse a svc.report with more entries than any node can run, or one that
    would leave the node with more instances than that (known ones included)."""
    limit = protocol.REPORT_MAX_ENTRIES
    if len(instances) > limit:
        raise ProtocolError(
            ErrorCode.LIMIT_EXCEEDED,
            f"svc.report of {len(instances)} instances exceeds the limit of "
            f"{limit} per node; nothing of it was applied.",
        )
    named = {
        i["instance"]
        for i in instances
        if isinstance(i, dict) and isinstance(i.get("instance"), str)
    }
    known = {f"{r['system']}/{r['module']}" for r in catalog.instances(node=node)}
    if len(named | known) > limit:
        raise ProtocolError(
            ErrorCode.LIMIT_EXCEEDED,
            f"svc.report would give node {node} {len(named | known)} instances, more than "
            f"the limit of {limit}; nothing of it was applied.",
        )


def check_instance_room(catalog: Any, node: str, state: dict[str, Any]) -> None:
    """Refuse a svc.state that would give a node more instances than the limit."""
    name = state.get("instance")
    if not isinstance(name, str) or name.count("/") != 1:
        return  # malformed: the handler ignores it
    system, module = name.split("/")
    if catalog.instance(system, module, node) is not None:
        return
    count = catalog.db["instances"].count_where("node = ? AND state != 'destroyed'", [node])
    if count >= protocol.REPORT_MAX_ENTRIES:
        raise ProtocolError(
            ErrorCode.LIMIT_EXCEEDED,
            f"node {node} already has {count} instances, the limit; {name} was not recorded.",
        )
