"""Keys that stay revoked, operator commands that hit the key meant, bounded pending keys.

Real daemon and agents on loopback; attackers are raw pyzmq CURVE peers that
hold the daemon's public key (it is in every join token) and a fresh key.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import zmq

from gdos.wire import protocol
from tests.harness import START_WAIT, Fleet, Proc, short_home, wait_for


def _impostor(
    fleet: Fleet, name: str, source: str | None = None, join: dict | None = None
) -> protocol.Message | None:
    """One fresh CURVE key says hello as ``name``; returns the daemon's answer."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.routing_id = f"{name}#evil".encode()
        public, secret = zmq.curve_keypair()
        sock.curve_serverkey = fleet.daemon_key().encode()
        sock.curve_publickey, sock.curve_secretkey = public, secret
        target = f"127.0.0.1:{fleet.port}"
        sock.connect(f"tcp://{source}:0;{target}" if source else f"tcp://{target}")
        body: dict = {"name": name, "version": "x", "facts": {}}
        if join:
            body["join"] = join
        sock.send(protocol.encode("hello", body))
        return protocol.decode(sock.recv()) if sock.poll(10_000) else None
    finally:
        ctx.destroy(linger=0)


def _keys(fleet: Fleet) -> list[dict]:
    return list(fleet.gdos_json("key", "list"))


def _pending(fleet: Fleet, name: str | None = None) -> list[dict]:
    return [k for k in _keys(fleet) if k["status"] == "pending" and name in (None, k["name"])]


# -- issue 11 item 11: a deleted key comes back only as pending ----------------------
def test_deleted_key_of_a_token_agent_comes_back_only_as_pending(fleet: Fleet) -> None:
    token = fleet.token("--uses", "5")
    agent = fleet.start_agent("n1", join=token)
    fleet.wait_online("n1")
    # deleted while connected: the agent redials at once, and is only pending
    assert fleet.gdos("key", "delete", "n1").returncode == 0
    wait_for(lambda: _pending(fleet, "n1"), what="n1 back as pending")
    assert fleet.nodes()["n1"]["online"] is False
    # deleted while stopped, then restarted with its join token: the proof is spent
    assert fleet.gdos("key", "accept", "n1").returncode == 0
    fleet.wait_online("n1")
    agent.kill(signal.SIGTERM)
    assert fleet.gdos("key", "delete", "n1").returncode == 0
    fleet.start_agent("n1", join=token, home=agent.home)
    wait_for(lambda: _pending(fleet, "n1"), what="n1 pending after a restart with its token")
    wait_for(lambda: "is not accepted" in fleet.agents["n1"].log_text(), what="agent told")
    assert [k["status"] for k in _keys(fleet)] == ["pending"]
    assert fleet.nodes()["n1"]["online"] is False
    assert fleet.gdos_json("token", "list")[0]["uses_left"] == 4  # one use: the first join
    # a rejected key, deleted, comes back as pending too
    assert fleet.gdos("key", "accept", "n1").returncode == 0
    fleet.wait_online("n1")
    assert fleet.gdos("key", "reject", "n1").returncode == 0
    assert fleet.gdos("key", "delete", "n1").returncode == 0
    wait_for(lambda: _pending(fleet, "n1"), what="n1 pending after reject and delete")
    assert fleet.gdos_json("token", "list")[0]["uses_left"] == 4


# -- issue 11 item 12: a pending key never takes an accepted node's name ---------------
def test_pending_impostor_cannot_turn_reject_by_name_against_the_real_node(fleet: Fleet) -> None:
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    reply = _impostor(fleet, "n1")
    assert reply is not None and reply.body["code"] == "key_not_accepted"
    real = next(k for k in _keys(fleet) if k["status"] == "accepted")
    fake = _pending(fleet, "n1")[0]
    assert fake["name_held"] is True and real["fingerprint"] != fake["fingerprint"]
    listed = fleet.gdos("key", "list")
    assert fake["fingerprint"] in listed.stdout and "pending!" in listed.stdout

    for verb in ("reject", "delete"):
        ambiguous = fleet.gdos("key", verb, "n1")
        assert ambiguous.returncode == 2, ambiguous.stderr
        assert "error[key_ambiguous]" in ambiguous.stderr
        assert real["fingerprint"] in ambiguous.stderr and fake["fingerprint"] in ambiguous.stderr
    accept = fleet.gdos("key", "accept", "n1")
    assert accept.returncode == 2 and "already has an accepted key" in accept.stderr
    too_short = fleet.gdos("key", "reject", fake["fingerprint"][:5])
    assert too_short.returncode == 2 and "too short a fingerprint" in too_short.stderr

    rejected = fleet.gdos("key", "reject", fake["fingerprint"])
    assert rejected.returncode == 0 and f"rejected key {fake['fingerprint']}" in rejected.stdout
    statuses = {k["fingerprint"]: k["status"] for k in _keys(fleet)}
    assert statuses == {real["fingerprint"]: "accepted", fake["fingerprint"]: "rejected"}
    assert fleet.nodes()["n1"]["online"] is True
    result = fleet.gdos("exec", "n1", "--", "echo", "still n1")
    assert result.returncode == 0 and "still n1" in result.stdout
    # the real one, by fingerprint prefix
    assert fleet.gdos("key", "reject", real["fingerprint"][:11]).returncode == 0
    fleet.wait_offline("n1")


# -- issue 11 item 13: accept --all accepts what it can and lists the rest -------------
def test_accept_all_accepts_what_it_can_and_names_each_refused_key(fleet: Fleet) -> None:
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    for name in ("n1", "dup", "dup", "solo"):
        assert _impostor(fleet, name) is not None
    result = fleet.gdos("key", "accept", "--all")
    assert result.returncode == 2, result.stderr
    assert "accepted key" in result.stdout and "of solo" in result.stdout
    refused = [line for line in result.stderr.splitlines() if line.startswith("not accepted")]
    assert len(refused) == 3
    assert sum("of dup" in line for line in refused) == 2
    assert any("of n1" in line and "already has an accepted key" in line for line in refused)
    assert "error[key_ambiguous]: 3 pending key(s) were not accepted" in result.stderr
    status = sorted((k["name"], k["status"]) for k in _keys(fleet))
    assert status == [
        ("dup", "pending"),
        ("dup", "pending"),
        ("n1", "accepted"),
        ("n1", "pending"),
        ("solo", "accepted"),
    ]
    # nothing left that can be accepted: the same answer, nothing changes
    again = fleet.gdos("key", "accept", "--all", "--json")
    assert again.returncode == 2
    assert len(json.loads(again.stdout)["refused"]) == 3
    first = fleet.gdos_json("audit", "--action", "key.accept")[0]
    assert first["result"] == "ok" and first["detail"]["keys"] == ["solo"]
    assert len(first["detail"]["refused"]) == 3


# -- issue 11 item 4: pending keys and their audit rows are bounded ----------------------
def _enroll_rows(fleet: Fleet) -> list[dict]:
    return [r for r in fleet.gdos_json("audit", "--action", "enroll", "-n", "1000")]


def test_pending_keys_are_capped_per_address_and_in_total() -> None:
    fleet = Fleet()
    try:
        fleet.start_daemon("--max-pending-keys", "8", "--pending-keys-per-minute", "5")
        began = time.monotonic()
        answers = [_impostor(fleet, f"a{i}") for i in range(15)]
        elapsed = time.monotonic() - began
        assert all(a is not None and a.body["code"] == "key_not_accepted" for a in answers)
        refused = [a for a in answers if a and "too many new keys" in a.body["message"]]
        # a burst of 5, refilled at 5 a minute while the loop ran
        allowed = 5 + math.ceil(elapsed / 60 * 5)
        assert len(_pending(fleet)) == 15 - len(refused) <= allowed
        # two more addresses: the total stays at the cap; the oldest expire
        for source in ("127.0.0.2", "127.0.0.3"):
            for i in range(5):
                assert _impostor(fleet, f"{source[-1]}x{i}", source=source) is not None
        pending = _pending(fleet)
        assert len(pending) == 8
        assert {k["name"] for k in pending} >= {f"3x{i}" for i in range(5)}
        assert all(k["name"] != "a0" for k in pending)
        # the audit trail counts repeated failures instead of one row each: the first
        # of a kind at once, then one count row per kind and minute
        fleet.stop_daemon()  # a clean stop writes the counts still open
        minutes = math.ceil((time.monotonic() - began) / 60)
        fleet.start_daemon("--max-pending-keys", "8", "--pending-keys-per-minute", "5")
        rows = _enroll_rows(fleet)
        kinds = {(r["detail"]["source"], r["result"], r["detail"]["reason"]) for r in rows}
        assert len(kinds) == 3 + bool(refused)  # pending from each address; refused
        assert len(rows) <= 2 * len(kinds) * minutes
        assert sum(r["detail"]["count"] for r in rows) == 25
        by_source = {
            s: sum(r["detail"]["count"] for r in rows if r["detail"]["source"] == s)
            for s in ("127.0.0.1", "127.0.0.2", "127.0.0.3")
        }
        assert by_source == {"127.0.0.1": 15, "127.0.0.2": 5, "127.0.0.3": 5}
    finally:
        fleet.close()


# -- issue 11 item 14: the join token never stays in a command line ----------------------
def _agent_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "gdos.cli.main", "agent", "run", "--backoff-max", "0.5", *args]


def _spawn(
    fleet: Fleet, name: str, argv: list[str], env: dict[str, str] | None = None, stdin: str = ""
) -> Proc:
    home = short_home(f"ga-{name}-")
    fleet.homes.append(home)
    log = home / f"{name}.out"
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            argv,
            env={**fleet.env(home), **(env or {})},
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    assert popen.stdin is not None
    popen.stdin.write(stdin.encode())
    popen.stdin.close()
    proc = fleet.agents[name] = Proc(name, popen, home, log)
    return proc


def test_join_token_never_stays_in_a_long_running_command_line(fleet: Fleet) -> None:
    token = fleet.token()
    token_file = fleet.daemon_home / "join.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    procs = [
        _spawn(fleet, "a1", _agent_argv("--name", "a1", "--join-file", str(token_file))),
        _spawn(fleet, "a2", _agent_argv("--name", "a2", "--join", "-"), stdin=token + "\n"),
        _spawn(fleet, "a3", _agent_argv("--name", "a3"), env={"GDOS_JOIN_TOKEN": token}),
        _spawn(fleet, "a4", _agent_argv("--name", "a4", "--join", token)),
        _spawn(
            fleet, "a5", [sys.executable, "-P", "-m", "gdos.agent", "--name", "a5", "--join", token]
        ),
    ]
    fleet.wait_online("a1", "a2", "a3", "a4", "a5", timeout=60)
    for proc in procs:
        process = psutil.Process(proc.popen.pid)  # the agent itself (exec keeps the pid)
        for each in [process, *process.children(recursive=True)]:
            assert token not in " ".join(each.cmdline()), proc.name
            assert token not in json.dumps(each.environ()), proc.name
    for proc in procs[3:]:  # --join TOKEN still works, with a warning
        assert "readable by every local user" in proc.log_text()


# -- issue 12 item 11: a plain restart dials as the enrolled name ------------------------
def test_plain_restart_dials_as_the_enrolled_name(fleet: Fleet) -> None:
    agent = fleet.start_agent("web-7", join=fleet.token("--uses", "1"))
    fleet.wait_online("web-7")
    agent.kill(signal.SIGTERM)
    fleet.wait_offline("web-7")
    again = _spawn_in(fleet, agent.home, "again", _agent_argv())
    fleet.wait_online("web-7")
    assert [(k["name"], k["status"]) for k in _keys(fleet)] == [("web-7", "accepted")]
    again.kill(signal.SIGTERM)
    renamed = _spawn_in(fleet, agent.home, "renamed", _agent_argv("--name", "other"))
    renamed.popen.wait(START_WAIT)
    assert renamed.popen.returncode == 2
    assert "enrolled as 'web-7'" in renamed.log_text() and "--state-dir" in renamed.log_text()
    assert "Traceback" not in renamed.log_text()


def _spawn_in(fleet: Fleet, home: Path, name: str, argv: list[str]) -> Proc:
    proc = fleet._spawn(name, argv, home)
    fleet.agents[name] = proc
    return proc


# -- issue 11 item 15: --insecure only on loopback unless the network is trusted ---------
def test_insecure_is_refused_beyond_loopback_unless_trusted() -> None:
    fleet = Fleet()
    try:
        wide = f"tcp://0.0.0.0:{fleet.port}"
        refused = fleet.gdos("daemon", "run", "--insecure", "--mesh", wide, timeout=60)
        assert refused.returncode == 2
        assert "error[invalid_argument]" in refused.stderr
        assert "--i-trust-this-network" in refused.stderr
        agent = fleet.gdos("agent", "run", "--insecure", "--daemon", "192.0.2.1:7420")
        assert agent.returncode == 2 and "--i-trust-this-network" in agent.stderr
        daemon = fleet.start_daemon("--insecure", "--mesh", wide, "--i-trust-this-network")
        assert "INSECURE MESH" in daemon.log_text()
        assert "environment (passwords included)" in daemon.log_text()
        fleet.start_agent("open", "--insecure")
        fleet.wait_online("open")
        assert "INSECURE MESH" in fleet.agents["open"].log_text()
    finally:
        fleet.close()
