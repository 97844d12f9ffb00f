"""The supervisor's monitor: one task that watches every instance.

Each tick reaps launcher processes left to finish, notices a running
instance whose process ended (unless an operation holds its lock: that
operation settles it) and rotates the instances' logs, copytruncate style.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from gdos.agent import logfiles
from gdos.agent.instances import LOG_NAMES, Instance
from gdos.agent.strategies import alive

from gdos.model import InstanceState

log = logging.getLogger("gdos.agent.supervisor")


class Monitor:
    def __init__(
        self,
        instances: dict[str, Instance],
        exited: Callable[[Instance], None],
        *,
        poll_interval: float,
        log_max_bytes: int,
        log_backups: int,
    ) -> None:
        self.instances, self.exited = instances, exited
        self.poll_interval = poll_interval
        self.log_max_bytes, self.log_backups = log_max_bytes, log_backups
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._watch())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _watch(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("supervisor monitor tick failed")
            await asyncio.sleep(self.poll_interval)

    async def tick(self) -> None:
        for inst in list(self.instances.values()):
            inst.strays = [p for p in inst.strays if p.poll() is None]
            if inst.state == InstanceState.RUNNING and not inst.lock.locked() and not alive(inst):
                self.exited(inst)
            await self._rotate(inst)

    async def _rotate(self, inst: Instance) -> None:
        for name in LOG_NAMES:
            path = inst.logs / name
            if logfiles.needs_rotation(path, self.log_max_bytes):
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(logfiles.rotate, path, self.log_backups)
