"""Enrollment and who may talk on the mesh, with real daemon and agent processes."""

from __future__ import annotations

import time

import msgpack
import zmq
from zmq.utils.monitor import recv_monitor_message

from gdos.wire import protocol
from tests.harness import START_WAIT, Fleet, wait_for


def test_enroll_by_token_brings_node_online_with_facts(fleet: Fleet) -> None:
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    keys = fleet.gdos_json("key", "list")
    assert [(k["name"], k["status"], k["via"]) for k in keys] == [("n1", "accepted", "token")]
    node = fleet.gdos_json("node", "show", "n1")
    facts = node["facts"]
    assert facts["cpu_threads"] >= 1 and facts["memory_total"] > 0
    assert facts["os"] == "linux" and facts["kernel"] and facts["arch"]
    assert any(d["mount"] == "/" for d in facts["disks"])
    assert any(n["name"] == "lo" for n in facts["nics"])
    assert facts["gpus"] == []
    # live metrics arrive on the pushed (short) interval
    metrics = wait_for(lambda: fleet.gdos_json("node", "show", "n1")["metrics"], what="metrics")
    assert 0 <= metrics["cpu_percent"] <= 100 and metrics["mem_total"] > 0
    listed = fleet.nodes()["n1"]
    assert listed["state"] == "normal" and listed["agent_version"]


def test_token_uses_are_counted_and_exhausted_token_leaves_key_pending(fleet: Fleet) -> None:
    token = fleet.token("--uses", "1")
    fleet.start_agent("n1", join=token)
    fleet.wait_online("n1")
    fleet.start_agent("n2", join=token)
    wait_for(
        lambda: any(
            k["name"] == "n2" and k["status"] == "pending" for k in fleet.gdos_json("key", "list")
        ),
        what="n2 pending",
    )
    assert "n2" not in fleet.nodes()
    assert fleet.gdos_json("token", "list")[0]["uses_left"] == 0


def test_expired_token_is_refused_by_the_agent_at_once(fleet: Fleet) -> None:
    token = fleet.token("--ttl", "1")
    time.sleep(1.1)  # the token's own expiry is what is tested
    proc = fleet.start_agent("n1", join=token)
    proc.popen.wait(START_WAIT)
    assert proc.popen.returncode != 0
    assert "error[token_expired]" in proc.log_text()
    assert "Traceback" not in proc.log_text()


def test_enroll_by_key_accept(fleet: Fleet) -> None:
    fleet.start_agent("n1")  # --daemon + --daemon-key, no token
    wait_for(
        lambda: [k for k in fleet.gdos_json("key", "list") if k["status"] == "pending"],
        START_WAIT,  # the agent starts first
        "pending key",
    )
    assert "n1" not in fleet.nodes()
    unreachable = fleet.gdos("exec", "n1", "--", "true")
    assert unreachable.returncode == 6 and "unknown node" in unreachable.stderr
    accepted = fleet.gdos("key", "accept", "n1")
    assert accepted.returncode == 0 and "accepted key" in accepted.stdout
    fleet.wait_online("n1")
    assert fleet.gdos("exec", "n1", "--", "true").returncode == 0


def test_rejected_and_deleted_keys(fleet: Fleet) -> None:
    # a single-use token: once used, a deleted key can only come back as pending
    fleet.start_agent("n1", join=fleet.token("--uses", "1"))
    fleet.wait_online("n1")
    assert fleet.gdos("key", "reject", "n1").returncode == 0
    fleet.wait_offline("n1")
    result = fleet.gdos("exec", "n1", "--", "true")
    assert result.returncode == 6
    # the rejected agent keeps dialling and stays refused
    assert "refused this agent's key" in wait_for(
        lambda: (
            "refused this agent's key" in fleet.agents["n1"].log_text()
            and fleet.agents["n1"].log_text()
        ),
        what="agent told of refusal",
    )
    assert fleet.gdos("key", "delete", "n1").returncode == 0
    # deleted: it dials again and shows up as pending, like a new node
    wait_for(
        lambda: [k for k in fleet.gdos_json("key", "list") if k["status"] == "pending"],
        what="pending again",
    )
    missing = fleet.gdos("key", "accept", "nope")
    assert missing.returncode == 4 and "error[key_unknown]" in missing.stderr


def _raw_dealer(
    fleet: Fleet, name: bytes, server_key: str | None
) -> tuple[zmq.Context[zmq.Socket[bytes]], zmq.Socket[bytes]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.routing_id = name
    if server_key:
        public, secret = zmq.curve_keypair()
        sock.curve_serverkey = server_key.encode()
        sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.connect(fleet.mesh)
    return ctx, sock


def _recv(sock: zmq.Socket[bytes], timeout_ms: int = 3000) -> protocol.Message | None:
    if sock.poll(timeout_ms):
        return protocol.decode(sock.recv())
    return None


def test_unaccepted_key_cannot_get_anything_processed(fleet: Fleet) -> None:
    fleet.start_agent("real", join=fleet.token())
    fleet.wait_online("real")
    ctx, sock = _raw_dealer(fleet, b"intruder", fleet.daemon_key())
    try:
        sock.send(protocol.encode("heartbeat", {}))  # before any hello: dropped, unanswered
        sock.send(protocol.encode("hello", {"name": "intruder", "version": "x", "facts": {}}))
        reply = _recv(sock)
        assert reply is not None and reply.kind == "error"
        assert reply.body["code"] == "key_not_accepted"
        # spoofed results and metrics on that connection change nothing
        sock.send(
            protocol.encode(
                "exec.result", {"task": 1, "status": "succeeded", "started": 0.0, "ended": 0.0}
            )
        )
        sock.send(protocol.encode("metrics", {"sample": {"cpu_percent": 99.0}}))
        assert _recv(sock, 500) is None
    finally:
        ctx.destroy(linger=0)
    # the key is pending now: a second connection with it is refused at the handshake
    assert "intruder" not in fleet.nodes()
    assert [k["status"] for k in fleet.gdos_json("key", "list") if k["name"] == "intruder"] == [
        "pending"
    ]
    assert fleet.gdos_json("task", "list") == []


def test_pending_key_is_refused_at_the_handshake(fleet: Fleet) -> None:
    public, secret = zmq.curve_keypair()
    server = fleet.daemon_key().encode()
    for attempt in range(2):
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.routing_id = b"lurker"
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server, public, secret
        monitor = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED
        )
        sock.connect(fleet.mesh)
        try:
            assert monitor.poll(5000)
            event = recv_monitor_message(monitor)["event"]
            if attempt == 0:  # first contact: one provisional connection to say hello
                assert event == zmq.EVENT_HANDSHAKE_SUCCEEDED
                sock.send(protocol.encode("hello", {"name": "lurker", "version": "x", "facts": {}}))
                reply = _recv(sock)
                assert reply is not None and reply.body["code"] == "key_not_accepted"
            else:  # from then on the key is pending and the handshake is refused
                assert event == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        finally:
            sock.disable_monitor()
            ctx.destroy(linger=0)


def test_garbage_and_oversized_frames_leave_the_daemon_serving(fleet: Fleet) -> None:
    import socket

    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    # raw TCP garbage on the mesh port
    for payload in (b"\x00" * 64, b"GET / HTTP/1.1\r\n\r\n", bytes(range(256)) * 64):
        with socket.create_connection(("127.0.0.1", fleet.port), timeout=5) as raw:
            raw.sendall(payload)
    # an insecure peer against the CURVE daemon is refused at the handshake
    ctx, plain = _raw_dealer(fleet, b"plain", None)
    plain.send(b"not msgpack")
    ctx.destroy(linger=0)
    # an accepted peer sending bad frames gets error replies with stable codes
    ctx, sock = _raw_dealer(fleet, b"n1#intruder", fleet.daemon_key())
    try:
        sock.send(b"\xc1 not msgpack")  # unknown key: provisional; must still not crash
        sock.send(msgpack.packb({"v": 99, "k": "hello", "b": {}}))
        sock.send(msgpack.packb({"v": 1, "k": "launch.missiles", "b": {}}))
        sock.send(msgpack.packb([1, 2, 3]))
        sock.send_multipart([b"a", b"b"])
        codes = set()
        while (reply := _recv(sock, 1500)) is not None:
            codes.add(reply.body.get("code"))
        assert {"bad_frame", "bad_version", "unknown_kind"} <= codes
        # larger than the frame limit: libzmq drops the connection, daemon unaffected
        sock.send(b"x" * (protocol.MAX_FRAME_BYTES + 10_000))
    finally:
        ctx.destroy(linger=0)
    assert fleet.daemon is not None and fleet.daemon.alive()
    result = fleet.gdos("exec", "n1", "--", "echo", "still here")
    assert result.returncode == 0 and "still here" in result.stdout
    assert "Traceback" not in fleet.daemon.log_text()


def test_insecure_needs_both_sides() -> None:
    fleet = Fleet()
    try:
        fleet.start_daemon("--insecure")
        assert "--insecure" in fleet.daemon.log_text() or "insecure" in fleet.daemon.log_text()
        fleet.start_agent("open", "--insecure")
        fleet.wait_online("open")
        assert fleet.gdos("exec", "open", "--", "true").returncode == 0
        token = fleet.gdos("token", "create")
        assert token.returncode != 0 and "insecure" in token.stderr
    finally:
        fleet.close()
