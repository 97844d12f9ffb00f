"""Exec on this node: the commands the daemon sends, run the way an operator expects.

``ExecRuns`` holds this node's running commands (the session core,
agent/session.py, admits each ``exec.run`` and stores its result until the
daemon acknowledges it); ``ExecRun`` is one of them.

A command runs in its own session (process group) with stdin from
/dev/null. Output is captured (capped) for the final result and streamed to
the daemon chunk by chunk, each chunk waiting for credit, so a slow reader
slows the command instead of filling the agent's memory. Timeout and cancel
signal the whole group (SIGTERM, then SIGKILL), grandchildren included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from gdos.agent.procs import KILL_GRACE, SpawnRefused, kill_group, login_env, resolve_account

from gdos.model import HostStatus
from gdos.wire.flow import CreditWindow
from gdos.wire.protocol import CHUNK_BYTES, OUTPUT_CAP_BYTES

log = logging.getLogger("gdos.agent")

Send = Callable[[str, dict[str, Any]], None]
Spawn = Callable[[Coroutine[Any, Any, None]], None]
Finish = Callable[[int, dict[str, Any]], None]  # Session.finish: kept until acknowledged
STOPPED_REASON = "the agent was stopped while the command ran; process group killed"


@dataclass
class Capture:
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def add(self, chunk: bytes) -> None:
        room = OUTPUT_CAP_BYTES - len(self.data)
        if len(chunk) > room:
            self.truncated = True
        self.data += chunk[: max(room, 0)]


class ExecRun:
    """One command of one task on this node."""

    def __init__(self, request: dict[str, Any], send: Send) -> None:
        self.request, self.send = request, send
        self.task_id: int = request["task"]
        self.initial_credit = max(1, int(request.get("credit", 16)))
        self.window = CreditWindow(self.initial_credit)
        self.proc: asyncio.subprocess.Process | None = None
        self.outcome: str | None = None  # set by timeout or cancel
        self.started = time.time()
        self.seq = 0

    def reset_credit(self) -> None:
        """After a reconnect the daemon starts counting afresh."""
        self.window.close()
        self.window = CreditWindow(self.initial_credit)

    async def run(self) -> dict[str, Any]:
        try:
            self.proc = await self._spawn()
        except SpawnRefused as exc:
            return self._result(HostStatus.FAILED, exit_code=exc.exit_code, reason=str(exc))
        self.send("exec.started", {"task": self.task_id, "pid": self.proc.pid})
        out, err = Capture(), Capture()
        readers = asyncio.gather(
            self._pump(self.proc.stdout, "stdout", out), self._pump(self.proc.stderr, "stderr", err)
        )
        timeout = float(self.request["timeout"])
        try:
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), timeout)
            remaining = max(0.0, timeout - (time.time() - self.started))
            await asyncio.wait_for(asyncio.shield(readers), remaining)
            pipes_note = None
        except TimeoutError:
            leader_done = self.proc.returncode is not None
            await self._kill_group()
            if not leader_done:
                self.outcome = self.outcome or HostStatus.TIMED_OUT
            pipes_note = "background processes held the output open; killed at the timeout"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(readers, KILL_GRACE)
        return self._final(out, err, pipes_note)

    def _final(self, out: Capture, err: Capture, note: str | None) -> dict[str, Any]:
        code = self.proc.returncode if self.proc else None
        extra = {
            "stdout": bytes(out.data),
            "stderr": bytes(err.data),
            "stdout_truncated": out.truncated,
            "stderr_truncated": err.truncated,
        }
        if self.outcome == HostStatus.TIMED_OUT:
            reason = f"timed out after {self.request['timeout']:g}s; process group killed"
            return self._result(HostStatus.TIMED_OUT, exit_code=code, reason=reason, **extra)
        if self.outcome == HostStatus.CANCELED:
            return self._result(
                HostStatus.CANCELED, exit_code=code, reason="canceled by the operator", **extra
            )
        if code is not None and code < 0:
            reason = f"killed by signal {signal.Signals(-code).name}"
            return self._result(HostStatus.FAILED, exit_code=code, reason=reason, **extra)
        status = HostStatus.SUCCEEDED if code == 0 else HostStatus.FAILED
        why = note or (None if code == 0 else f"exited with code {code}")
        return self._result(status, exit_code=code, reason=why, **extra)

    def _result(self, status: str, **fields: Any) -> dict[str, Any]:
        return {
            "task": self.task_id,
            "status": status,
            "started": self.started,
            "ended": time.time(),
            **fields,
        }

    async def cancel(self) -> None:
        self.outcome = self.outcome or HostStatus.CANCELED
        await self._kill_group()

    async def _kill_group(self) -> None:
        """SIGTERM the whole group, SIGKILL what is left after a grace period."""
        self.window.close()
        if self.proc is not None:
            await kill_group(self.proc.pid)

    async def _pump(self, stream: asyncio.StreamReader | None, name: str, capture: Capture) -> None:
        if stream is None:
            return
        while chunk := await stream.read(CHUNK_BYTES):
            capture.add(chunk)
            if await self.window.acquire():
                self.seq += 1
                self.send(
                    "exec.output",
                    {"task": self.task_id, "stream": name, "seq": self.seq, "data": chunk},
                )

    async def _spawn(self) -> asyncio.subprocess.Process:
        argv = [str(a) for a in self.request["argv"]]
        if self.request.get("shell"):
            argv = ["/bin/sh", "-c", " ".join(argv)]
        extra = dict(self.request.get("env") or {})
        env = {**os.environ, **extra}
        cwd = self.request.get("cwd") or None
        kwargs: dict[str, Any] = {}
        if self.request.get("user"):
            account = resolve_account(self.request["user"])
            kwargs = account.spawn_kwargs
            uid = int(kwargs.get("user", os.geteuid()))
            env = login_env(account, uid, extra)
            cwd = cwd or (account.home if os.path.isdir(account.home) else "/")
        if cwd and not os.path.isdir(cwd):
            raise SpawnRefused(f"working directory {cwd} does not exist on this node", None)
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=cwd,
                start_new_session=True,
                **kwargs,
            )
        except FileNotFoundError:
            raise SpawnRefused(f"command not found: {argv[0]}", None, 127) from None
        except PermissionError:
            raise SpawnRefused(f"permission denied: {argv[0]}", None, 126) from None
        except OSError as exc:
            raise SpawnRefused(f"could not start {argv[0]}: {exc.strerror}", None) from None


class ExecRuns:
    """This node's running commands by task: started, credited, canceled, ended."""

    def __init__(self, send: Send, spawn: Spawn, finish: Finish) -> None:
        self.send, self.spawn, self.finish = send, spawn, finish
        self.runs: dict[int, ExecRun] = {}
        self.stopping = False  # the agent is exiting: a cancel says so

    def start(self, body: dict[str, Any]) -> None:
        run = ExecRun(body, self.send)
        self.runs[run.task_id] = run
        self.spawn(self._execute(run))

    async def _execute(self, run: ExecRun) -> None:
        try:
            result = await run.run()
        except Exception as exc:  # the agent must answer whatever happens
            log.exception("exec of task %d failed", run.task_id)
            result = run._result(HostStatus.FAILED, reason=f"agent error: {exc}")
        if self.stopping and result.get("status") == HostStatus.CANCELED:
            result["reason"] = STOPPED_REASON
        self.runs.pop(run.task_id, None)
        self.finish(run.task_id, result)

    def cancel(self, body: dict[str, Any]) -> None:
        if (run := self.runs.get(body["task"])) is not None:
            self.spawn(run.cancel())

    def credit(self, body: dict[str, Any]) -> None:
        if (run := self.runs.get(body["task"])) is not None:
            run.window.grant(body["credit"])

    def reset_credit(self) -> None:
        """After a welcome the daemon counts every window afresh."""
        for run in self.runs.values():
            run.reset_credit()

    async def end(self, wait: float) -> None:
        """Cancel every command and wait (at most ``wait`` s) until their results went."""
        self.stopping = True
        for run in list(self.runs.values()):
            self.spawn(run.cancel())
        deadline = time.monotonic() + wait
        while self.runs and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def kill_all(self) -> None:
        """At exit, with no daemon to tell: kill what still runs."""
        for run in list(self.runs.values()):
            await run.cancel()
