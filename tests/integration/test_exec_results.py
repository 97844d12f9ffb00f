"""Exec results: one bad result fails its own host only; results are stored before acked."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import zmq

from gdos.wire import protocol
from tests.harness import Fleet, wait_for

TOO_BIG = 2**63 + 5  # fits msgpack's uint64, not SQLite's INTEGER


class RawAgent:
    """A plaintext mesh peer that answers every exec.run with a crafted result."""

    def __init__(self, fleet: Fleet, name: str, result: dict[str, Any]) -> None:
        self.name, self.result = name, result
        self.ctx = zmq.Context()
        self.socket = self.ctx.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.routing_id = protocol.routing_id(name)
        self.socket.connect(fleet.mesh)
        self.acks: list[int] = []
        self.welcomed = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        hello = {"name": self.name, "version": "0", "facts": {}}
        self.socket.send(protocol.encode("hello", hello))
        next_beat = 0.0
        while not self._stop.is_set():
            if self.welcomed.is_set() and time.monotonic() > next_beat:
                self.socket.send(protocol.encode("heartbeat", {}))  # stay online
                next_beat = time.monotonic() + 0.3
            if not self.socket.poll(100):
                continue
            msg = protocol.decode(self.socket.recv())
            if msg.kind == "welcome":
                self.welcomed.set()
            elif msg.kind == "exec.run":
                now = time.time()
                body = {"task": msg.body["task"], "started": now, "ended": now, **self.result}
                # packed by hand: protocol.encode refuses the values this peer is here to send
                frame = {"v": protocol.VERSION, "k": "exec.result", "b": body}
                self.socket.send(msgpack.packb(frame, use_bin_type=True))
            elif msg.kind == "exec.result.ack":
                self.acks.append(msg.body["task"])

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.socket.close()
        self.ctx.term()


@pytest.fixture
def plain() -> Iterator[Fleet]:
    with Fleet() as fleet:
        fleet.start_daemon("--insecure")
        yield fleet


def test_out_of_range_exit_code_fails_that_host_alone(plain: Fleet) -> None:
    plain.start_agent("good", "--insecure")
    bad = RawAgent(plain, "bad", {"status": "succeeded", "exit_code": TOO_BIG, "stdout": b"x"})
    try:
        assert bad.welcomed.wait(20)
        plain.wait_online("good", "bad")
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "gdos.cli.main",
                "exec",
                "good",
                "bad",
                "--json",
                "--",
                "echo",
                "fine",
            ],
            env=plain.env(plain.daemon_home),
            capture_output=True,
            text=True,
            timeout=60,
        )
        hosts = {h["node"]: h for h in json.loads(run.stdout)["hosts"]}
        assert hosts["good"]["status"] == "succeeded" and hosts["good"]["stdout"] == "fine\n"
        assert hosts["bad"]["status"] == "failed" and hosts["bad"]["exit_code"] is None
        assert "protocol error" in hosts["bad"]["reason"]
        task = plain.gdos_json("task", "list")[0]
        assert task["status"] == "failed"
        wait_for(lambda: task["id"] in bad.acks, what="the bad result acknowledged")
        assert plain.gdos("daemon", "status").returncode == 0  # still serving
    finally:
        bad.close()
