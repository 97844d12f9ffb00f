"""Operator requests are checked on the daemon side too (issue 11, "Also").

The CLI refuses a NaN timeout, but anything that can open the control socket
can send one: the daemon itself must refuse 0, negative, non-finite and
absurd limits with a clear error, never read them as "the default".
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack

from gdos.wire import protocol
from gdos.wire.transport import frame_bytes, read_message
from tests.harness import Fleet


async def _raw_call(socket_path: str, kind: str, body: dict[str, Any]) -> protocol.Message:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    try:
        frame = {"v": protocol.VERSION, "k": kind, "id": 1, "b": body}
        writer.write(frame_bytes(msgpack.packb(frame, use_bin_type=True)))
        await writer.drain()
        reply = await asyncio.wait_for(read_message(reader), 30)
        assert reply is not None
        return reply
    finally:
        writer.close()


def test_exec_timeouts_that_mean_nothing_are_refused(fleet: Fleet) -> None:
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    socket_path = str(fleet.daemon_home / "run" / "control.sock")
    codes = {}
    for value in (0, 0.0, -5, 1e12, float("nan"), float("inf"), "300"):
        body = {"argv": ["true"], "targets": ["n1"], "timeout": value}
        reply = asyncio.run(_raw_call(socket_path, "exec.start", body))
        assert reply.kind == "error", (value, reply)
        codes[repr(value)] = reply.body["code"]
        assert "timeout" in reply.body["message"], reply.body
    assert codes == {
        "0": "invalid_argument",
        "0.0": "invalid_argument",
        "-5": "invalid_argument",
        "1000000000000.0": "invalid_argument",
        "nan": "bad_message",
        "inf": "bad_message",
        "'300'": "bad_message",
    }
    result = fleet.gdos("exec", "n1", "--timeout", "0", "--", "true")
    assert result.returncode != 0
    assert "error[invalid_argument]" in result.stderr and "leave it out" in result.stderr
    assert fleet.gdos_json("task", "list") == []  # nothing was started
    ok = fleet.gdos("exec", "n1", "--timeout", "30s", "--", "true")
    assert ok.returncode == 0, ok.stderr
