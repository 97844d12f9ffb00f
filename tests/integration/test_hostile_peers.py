"""Hostile peers on the mesh: each attack of issue 11 at small scale, and its bound.

Attackers are raw sockets (gdos/devtools/hostile.py); the daemon and one real
agent are real processes. Every test asserts the bound (daemon RSS, open
descriptors, rows, log bytes from /proc and the CLI) and that the real
agent's exec still answers during the attack. Latency is measured by
``bench/fuzz.py``, never asserted here.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from gdos.devtools.hostile import RawPeer, fd_limits, handshake_hog, open_fds, rss_bytes
from gdos.wire import protocol
from tests.harness import Fleet, wait_for
from tests.integration.services_kit import SLEEPER, ok, package

MB = 1024 * 1024


def daemon_pid(fleet: Fleet) -> int:
    assert fleet.daemon is not None
    return fleet.daemon.popen.pid


def counters(fleet: Fleet) -> dict[str, int]:
    return dict(fleet.gdos_json("daemon", "status")["mesh_counters"])


def log_bytes(fleet: Fleet) -> int:
    assert fleet.daemon is not None
    return fleet.daemon.log.stat().st_size


def exec_answers(fleet: Fleet, node: str = "real") -> None:
    """A real exec on the real agent succeeds (with a generous deadline)."""
    result = fleet.gdos("exec", node, "--", "echo", "still-here", timeout=120)
    assert result.returncode == 0 and "still-here" in result.stdout, result.stderr


@contextlib.contextmanager
def during(attack: Callable[[threading.Event], None]) -> Iterator[threading.Event]:
    """Run ``attack(stop)`` in a thread for the block's duration."""
    stop = threading.Event()
    thread = threading.Thread(target=attack, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(60)


def enrolled_peer(fleet: Fleet, name: str) -> RawPeer:
    """A raw peer whose key is accepted by a join token: it may speak for ``name``."""
    peer = RawPeer(fleet.mesh, fleet.daemon_key(), name)
    peer.hello(join_token=fleet.token())
    assert peer.wait_for("welcome") is not None, "the raw peer was not welcomed"
    return peer


@pytest.fixture
def real(fleet: Fleet) -> Fleet:
    fleet.start_agent("real", join=fleet.token())
    fleet.wait_online("real")
    return fleet


# -- 1. anyone who can reach the port: handshake memory -------------------------
def test_handshake_hogs_are_capped_and_their_memory_returns() -> None:
    fleet = Fleet()
    try:
        fleet.start_daemon("--max-handshakes", "4")
        fleet.start_agent("real", join=fleet.token())
        fleet.wait_online("real")
        pid = daemon_pid(fleet)
        before = rss_bytes(pid)
        hogs = []
        for _ in range(40):  # 40 x 2 MiB held in libzmq without the cap
            conn = handshake_hog(fleet.port, protocol.MESH_FRAME_BYTES - 64)
            if conn is not None:
                hogs.append(conn)
        grown = rss_bytes(pid) - before
        exec_answers(fleet)
        stats = counters(fleet)
        for conn in hogs:
            conn.close()
        assert stats["connections_refused"] > 0
        # at most 4 handshakes in flight, each at most one frame, plus slack
        assert grown < 4 * protocol.MESH_FRAME_BYTES + 24 * MB, grown / MB
        wait_for(lambda: rss_bytes(pid) < before + 16 * MB, 60, "memory returned")
    finally:
        fleet.close()


# -- 2. descriptors: raised limit, capped connections, one log line per interval --
def test_idle_connections_are_capped_and_the_fd_limit_is_raised() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(1024, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    fleet = Fleet()
    idle: list[socket.socket] = []
    try:
        try:
            fleet.start_daemon("--max-connections", "64", "--max-handshakes", "32")
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        fleet.start_agent("real", join=fleet.token())
        fleet.wait_online("real")
        pid = daemon_pid(fleet)
        assert fd_limits(pid)[0] == fd_limits(pid)[1]  # soft raised to hard at start
        fds, log_before = open_fds(pid), log_bytes(fleet)
        for _ in range(300):  # half-open: connected, silent
            with contextlib.suppress(OSError):
                idle.append(socket.create_connection(("127.0.0.1", fleet.port), timeout=5))
        wait_for(lambda: counters(fleet)["connections_refused"] >= 300 - 64, 60, "refusals")
        assert open_fds(pid) <= fds + 64 + 8
        exec_answers(fleet)
        # the handshake timeout closes the silent ones that were let in
        wait_for(lambda: open_fds(pid) <= fds + 4, 60, "idle connections closed")
        assert log_bytes(fleet) - log_before < 8 * 1024
    finally:
        for conn in idle:
            conn.close()
        fleet.close()


# -- 3. anyone with the daemon's public key: unaccepted floods, quotas ------------
def test_unaccepted_key_flood_is_dropped_before_decoding(real: Fleet) -> None:
    fleet = real
    pid = daemon_pid(fleet)
    before, log_before = rss_bytes(pid), log_bytes(fleet)
    big = b"\x00" * (MB // 4)  # far over the 64 KiB an unaccepted key may send
    peak = [before]

    def flood(stop: threading.Event) -> None:
        peer = RawPeer(fleet.mesh, fleet.daemon_key(), "intruder")
        try:
            for _ in range(2_000):  # 500 MiB from a key nobody accepted
                if stop.is_set():
                    break
                while not peer.send_raw(big) and not stop.is_set():
                    stop.wait(0.01)
                peak[0] = max(peak[0], rss_bytes(pid))
        finally:
            peer.close()

    with during(flood):
        exec_answers(fleet)
        wait_for(lambda: counters(fleet)["dropped"] >= 20, 90, "frames dropped")
    assert peak[0] - before < 64 * MB, (peak[0] - before) / MB
    assert counters(fleet)["bad_frames"] == 0  # dropped undecoded, not refused
    assert "intruder" not in fleet.nodes()
    assert log_bytes(fleet) - log_before < 8 * 1024


def test_a_peer_over_its_byte_quota_is_dropped_and_others_still_served() -> None:
    with Fleet() as fleet:
        fleet.start_daemon("--peer-quota-mb", "4")  # 4 MiB/s, bursts of 32 MiB
        fleet.start_agent("real", join=fleet.token())
        fleet.wait_online("real")
        _over_quota_dropped(fleet)


def _over_quota_dropped(fleet: Fleet) -> None:
    pid = daemon_pid(fleet)
    before = rss_bytes(pid)
    peer = enrolled_peer(fleet, "noisy")
    junk = b"\xc1" * MB
    try:

        def flood(stop: threading.Event) -> None:
            for _ in range(1_000):  # 1 GiB: more than the 32 MiB burst
                while not peer.send_raw(junk):
                    if stop.wait(0.001):
                        return

        with during(flood):
            exec_answers(fleet)
            wait_for(lambda: counters(fleet)["over_quota"] > 0, 100, "frames over quota")
        exec_answers(fleet)
        assert rss_bytes(pid) - before < 64 * MB
    finally:
        peer.close()


# -- 6. reports: entries per report and per node; large replies ----------------
def test_oversized_report_is_refused_with_a_counted_error(real: Fleet) -> None:
    fleet = real
    peer = enrolled_peer(fleet, "reporter")
    try:
        entries = [
            {"instance": f"s/m{i}", "state": "running", "pid": i}
            for i in range(protocol.REPORT_MAX_ENTRIES + 1)
        ]
        peer.send("svc.report", {"instances": entries})
        reply = peer.wait_for("error")
        assert reply is not None and reply.body["code"] == "limit_exceeded"
        # one more instance than allowed, one state at a time: the last is refused
        bad = counters(fleet)["bad_frames"]
        peer.send("svc.report", {"instances": entries[:-1]})
        wait_for(lambda: len(_instances_of(fleet, "reporter")) == len(entries) - 1, 60)
        peer.send("svc.state", {"state": entries[-1]})
        reply = peer.wait_for("error")
        assert reply is not None and reply.body["code"] == "limit_exceeded"
        assert counters(fleet)["bad_frames"] >= bad + 1
        assert len(_instances_of(fleet, "reporter")) == len(entries) - 1
    finally:
        peer.close()
    exec_answers(fleet)


def _instances_of(fleet: Fleet, node: str) -> list[dict[str, Any]]:
    return [r for r in fleet.gdos_json("status") if r.get("node") == node]


def test_a_reply_larger_than_one_frame_reaches_the_client(real: Fleet) -> None:
    fleet = real
    fleet.start_agent("real2", join=fleet.token())
    fleet.start_agent("real3", join=fleet.token())
    fleet.wait_online("real2", "real3")
    script = "import sys; sys.stdout.write('o' * 1048576); sys.stderr.write('e' * 1048576)"
    argv = ["exec", "real", "real2", "real3", "--", sys.executable, "-c", script]
    result = fleet.gdos(*argv, timeout=120)
    assert result.returncode == 0, result.stderr
    task = fleet.gdos_json("task", "list")[0]["id"]
    shown = fleet.gdos("task", "show", str(task), "--json", timeout=120)
    assert shown.returncode == 0, shown.stderr  # > 6 MB: split into reply.part frames
    assert len(shown.stdout) > protocol.MAX_FRAME_BYTES


# -- 7. package fetches --------------------------------------------------------
def test_fetches_without_credit_are_capped_per_node(real: Fleet, tmp_path: Path) -> None:
    fleet = real
    ok(fleet.gdos("package", "push", str(package(tmp_path, "sleeper", SLEEPER))))
    sha = fleet.gdos_json("package", "show", "sleeper")["sha256"]
    pid = daemon_pid(fleet)
    fds = open_fds(pid)
    peer = enrolled_peer(fleet, "fetcher")
    try:
        for fetch in range(200):
            peer.send("pkg.fetch", {"fetch": fetch, "sha256": sha, "offset": 0, "credit": 0})
        refused = 0
        while (msg := peer.wait_for("pkg.error", 5)) is not None:
            assert msg.body["code"] == "limit_exceeded"
            refused += 1
        assert refused == 200 - 8
        assert open_fds(pid) <= fds + 4  # no blob is held open without credit
        exec_answers(fleet)
        assert fleet.gdos("node", "list").returncode == 0
    finally:
        peer.close()


# -- 8. log flooding -----------------------------------------------------------
def test_bad_frames_are_logged_once_per_interval(real: Fleet) -> None:
    fleet = real
    peer = enrolled_peer(fleet, "garbage")
    log_before = log_bytes(fleet)
    mistyped = msgpack.packb({"v": 1, "k": "exec.result", "b": {"task": "x" * 40}})
    try:
        for i in range(10_000):
            peer.send_raw(mistyped if i % 2 else b"\xc1" * 65)
        wait_for(lambda: counters(fleet)["bad_frames"] >= 10_000, 120, "bad frames counted")
    finally:
        peer.close()
    assert log_bytes(fleet) - log_before < 8 * 1024
    exec_answers(fleet)


def test_daemon_log_file_rotates_by_size(tmp_path: Path) -> None:
    import subprocess

    log = tmp_path / "logs" / "gdosd.log"
    code = (
        "import logging; from gdos.daemon import logfile; "
        f"logfile.setup('INFO', __import__('pathlib').Path({str(log)!r}), 64 * 1024, 2); "
        "[logging.getLogger('t').info('line %d ' + 'x' * 200, i) for i in range(2000)]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    files = sorted(p.name for p in log.parent.iterdir())
    assert files == ["gdosd.log", "gdosd.log.1", "gdosd.log.2"]
    assert all(p.stat().st_size <= 64 * 1024 for p in log.parent.iterdir())
