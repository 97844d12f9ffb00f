"""Alert hooks: run a command or POST a webhook when an alert fires or recovers.

Hooks run off the event loop's critical path: ``HookRunner.submit`` only puts
a job on a bounded queue (a full queue drops the job with a warning), and a
few worker tasks take jobs from it. A command gets 10 s, then its process
group is killed; a webhook gets 3 tries of 5 s each, 1 s then 2 s apart, in a
small thread pool of its own (urllib). A failing or hanging hook therefore
never blocks the daemon, and at most ``WORKERS`` hooks run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import signal
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gdos import __version__

log = logging.getLogger("gdosd.hooks")

QUEUE_SIZE = 256
WORKERS = 4
COMMAND_TIMEOUT = 10.0
WEBHOOK_TIMEOUT = 5.0
WEBHOOK_BACKOFF = (1.0, 2.0)  # pauses between the 3 tries


@dataclass(frozen=True)
class Job:
    kind: str  # "command" or "webhook"
    target: str  # the command line or the URL
    payload: dict[str, Any]


def command_env(payload: dict[str, Any]) -> dict[str, str]:
    """GDOS_ALERT_* variables describing the event, for a hook command."""
    env = {}
    for key in ("rule", "target", "state", "value", "severity", "message", "started", "ended"):
        value = payload.get(key)
        env[f"GDOS_ALERT_{key.upper()}"] = "" if value is None else str(value)
    return env


class HookRunner:
    def __init__(self, workers: int = WORKERS, queue_size: int = QUEUE_SIZE) -> None:
        self.queue: asyncio.Queue[Job] = asyncio.Queue(queue_size)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gdos-hook")
        self.workers_count = workers
        self.tasks: list[asyncio.Task[None]] = []
        self.counters = {"sent": 0, "failed": 0, "dropped": 0}

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self._work(), name=f"hook-{i}") for i in range(self.workers_count)
        ]

    def submit(self, command: str | None, webhook: str | None, payload: dict[str, Any]) -> None:
        """Queue the hooks of one event; never waits."""
        for kind, target in (("command", command), ("webhook", webhook)):
            if not target:
                continue
            try:
                self.queue.put_nowait(Job(kind, target, payload))
            except asyncio.QueueFull:
                self.counters["dropped"] += 1
                log.warning("hook queue full: dropped %s for %s", kind, payload.get("rule"))

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                if job.kind == "command":
                    ok = await run_command(job.target, job.payload)
                else:
                    loop = asyncio.get_running_loop()
                    ok = await loop.run_in_executor(
                        self.pool, post_webhook, job.target, job.payload
                    )
                self.counters["sent" if ok else "failed"] += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                self.counters["failed"] += 1
                log.exception("alert hook %s failed", job.kind)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.pool.shutdown(wait=False, cancel_futures=True)


async def run_command(command: str, payload: dict[str, Any]) -> bool:
    """Run one hook command (argv from shlex, no shell) with GDOS_ALERT_* set."""
    try:
        argv = shlex.split(command)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env={**os.environ, **command_env(payload)},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except (OSError, ValueError) as exc:
        log.warning("alert command %r could not start: %s", command, exc)
        return False
    try:
        _out, err = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)
        log.warning("alert command %r killed after %gs", command, COMMAND_TIMEOUT)
        return False
    if proc.returncode != 0:
        first = (err or b"").decode(errors="replace").strip().splitlines()[:1]
        log.warning("alert command %r exited %s %s", command, proc.returncode, first)
        return False
    return True


def post_webhook(url: str, payload: dict[str, Any], sleep: Any = None) -> bool:
    """POST the event as JSON; 3 tries, 1 s then 2 s apart (runs in a thread)."""
    import time

    pause = sleep or time.sleep
    data = json.dumps(payload, default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": f"gdosd/{__version__}"}
    for attempt in range(len(WEBHOOK_BACKOFF) + 1):
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as reply:
                if 200 <= reply.status < 300:
                    return True
                why = f"HTTP {reply.status}"
        except urllib.error.HTTPError as exc:
            why = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            why = str(exc)
        log.warning("alert webhook %s try %d failed: %s", url, attempt + 1, why)
        if attempt < len(WEBHOOK_BACKOFF):
            pause(WEBHOOK_BACKOFF[attempt])
    return False
