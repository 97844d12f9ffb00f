"""Control requests of the packages and services concern.

Kept beside ``api.py`` (same handler shape) so each file reads as one
concern. Operations run as daemon tasks: a client that asked to ``wait``
gets a stream of progress events, and a client that goes away does not
cancel an operation half-way through a system.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gdos.daemon.audit import AuditTrail
from gdos.daemon.catalog import Catalog
from gdos.daemon.control import EVENT_BUDGET_BYTES, ControlConnection, Stream, packed_size, slices
from gdos.daemon.handlers import Handlers
from gdos.daemon.packages import Packages
from gdos.daemon.services import Services
from gdos.daemon.watch import NodeDiff, watch, watch_interval
from gdos.errors import ErrorCode, GdosError
from gdos.names import check_name
from gdos.wire import protocol
from gdos.wire.control_kinds import (
    Interval,
    Named,
    PackageChunk,
    PackageCommit,
    PackageList,
    PackageRm,
    PackageShow,
    PackageUpload,
    SvcEvents,
    SvcStatus,
    SystemRm,
)
from gdos.wire.protocol import Message

log = logging.getLogger("gdosd.services")
Body = dict[str, Any]


class ServiceApi:
    def __init__(
        self,
        handlers: Handlers,
        packages: Packages,
        services: Services,
        catalog: Catalog,
        audit: AuditTrail,
    ) -> None:
        self.packages, self.services, self.catalog, self.audit = packages, services, catalog, audit
        self.operations: set[asyncio.Task[Any]] = set()
        handlers.register(
            {
                "package.upload": self.package_upload,
                "package.chunk": self.package_chunk,
                "package.commit": self.package_commit,
                "package.list": self.package_list,
                "package.show": self.package_show,
                "package.rm": self.package_rm,
                "system.create": self.system_create,
                "system.add": self.system_add,
                "system.show": self.system_show,
                "system.list": self.system_list,
                "system.rm": self.system_rm,
                "svc.run": self.svc_run,
                "svc.status": self.svc_status,
                "svc.events": self.svc_events,
                "svc.adopt.start": self.svc_adopt,
                "svc.watch": self.svc_watch,
            }
        )

    # -- packages ----------------------------------------------------------------
    async def package_upload(self, conn: ControlConnection, msg: Message[PackageUpload]) -> Body:
        filename = str(msg.body.get("filename") or "package.zip")[:200]
        upload = self.packages.begin(conn, msg.body["size"], filename)
        return {"upload": upload, "chunk": protocol.UPLOAD_CHUNK_BYTES}

    async def package_chunk(self, conn: ControlConnection, msg: Message[PackageChunk]) -> Body:
        body = msg.body
        self.packages.write(conn, body["upload"], body["offset"], body["data"])
        return {}

    async def package_commit(self, conn: ControlConnection, msg: Message[PackageCommit]) -> Body:
        return await self.packages.commit(conn, msg.body["upload"], msg.body["sha256"], conn.user)

    async def package_list(self, conn: ControlConnection, msg: Message[PackageList]) -> Body:
        return {"packages": self.packages.list(msg.body.get("name"))}

    async def package_show(self, conn: ControlConnection, msg: Message[PackageShow]) -> Body:
        return {"package": self.packages.show(msg.body["name"], msg.body.get("version"))}

    async def package_rm(self, conn: ControlConnection, msg: Message[PackageRm]) -> Body:
        return await self.packages.remove(msg.body["name"], msg.body["version"])

    # -- systems -------------------------------------------------------------------
    async def system_create(self, conn: ControlConnection, msg: Message[Named]) -> Body:
        return self.services.create_system(msg.body["name"])

    async def system_add(self, conn: ControlConnection, msg: Message) -> Body:
        return self.services.add_module(msg.body)

    async def system_show(self, conn: ControlConnection, msg: Message[Named]) -> Body:
        return self.services.show_system(msg.body["name"])

    async def system_list(self, conn: ControlConnection, msg: Message[Any]) -> Body:
        return {"systems": self.services.list_systems()}

    async def system_rm(self, conn: ControlConnection, msg: Message[SystemRm]) -> Body:
        return self.services.remove_system(msg.body["name"], msg.body.get("module"))

    # -- operations ------------------------------------------------------------------
    async def svc_run(self, conn: ControlConnection, msg: Message) -> Body:
        op = self.services.plan(msg.body)
        reply: dict[str, Any] = {"action": op.action, "instances": op.instances()}
        stream: Stream | None = None
        if msg.body.get("wait"):
            if msg.id is None:
                raise GdosError(ErrorCode.BAD_MESSAGE, "svc.run with wait needs a request id.")
            stream = conn.open_stream(msg.id, protocol.CONTROL_STREAM_CREDIT)
            reply["stream"] = msg.id
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        keys = set(reply["instances"])

        def emit(event: dict[str, Any]) -> None:
            if stream is not None and (event.get("type") != "state" or event["instance"] in keys):
                queue.put_nowait(event)

        task = asyncio.create_task(self.services.execute(op, emit))
        self.operations.add(task)
        task.add_done_callback(self.operations.discard)
        task.add_done_callback(
            lambda t: self.audit.operation_done(conn.user, op.action, op.target, t)
        )
        if stream is not None:
            conn.spawn(_forward(task, queue, stream))
        return reply

    async def svc_status(self, conn: ControlConnection, msg: Message[SvcStatus]) -> Body:
        return {"instances": self.services.status(msg.body.get("target"))}

    async def svc_events(self, conn: ControlConnection, msg: Message[SvcEvents]) -> Body:
        system = module = None
        if msg.body.get("target"):
            system, _, module = str(msg.body["target"]).partition("/")
            check_name(system, "system name")
        limit = max(1, min(int(msg.body.get("limit", 100)), 10_000))
        after = msg.body.get("after")
        return {"events": self.catalog.events(system, module or None, limit, after)}

    async def svc_watch(self, conn: ControlConnection, msg: Message[Interval]) -> Body:
        """A stream of instance changes (gdos/daemon/watch.py), for the dashboard."""
        if msg.id is None:
            raise GdosError(ErrorCode.BAD_MESSAGE, "svc.watch needs a request id.")
        interval = watch_interval(msg.body.get("interval"))
        stream = conn.open_stream(msg.id, protocol.CONTROL_STREAM_CREDIT)
        diff = NodeDiff(key="instance", kind="instances")
        conn.spawn(watch(self.services.watch_views, diff, conn, stream, interval))
        return {"stream": msg.id, "interval": interval}

    async def svc_adopt(self, conn: ControlConnection, msg: Message) -> Body:
        return await self.services.adopt(msg.body)

    async def close(self) -> None:
        for task in list(self.operations):
            task.cancel()
        for task in list(self.operations):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                log.debug("operation ended at shutdown")


async def _forward(
    task: asyncio.Task[dict[str, Any]], queue: asyncio.Queue[dict[str, Any]], stream: Stream
) -> None:
    """Send an operation's progress to a waiting client, then its outcome."""
    done = asyncio.ensure_future(asyncio.shield(task))
    while True:
        getter = asyncio.ensure_future(queue.get())
        finished, _ = await asyncio.wait({getter, done}, return_when=asyncio.FIRST_COMPLETED)
        if getter in finished:
            if not await stream.send(getter.result()):
                done.cancel()
                return
            continue
        getter.cancel()
        break
    while not queue.empty():
        await stream.send(queue.get_nowait())
    try:
        outcome = task.result()
    except GdosError as exc:
        outcome = {"ok": False, "code": str(exc.code), "message": exc.message, "results": []}
    except Exception as exc:  # a bug must still end the client's wait
        log.exception("operation failed")
        outcome = {"ok": False, "code": str(ErrorCode.INTERNAL), "message": str(exc)}
    await _end_with_outcome(stream, outcome)


async def _end_with_outcome(stream: Stream, outcome: dict[str, Any]) -> None:
    """End the wait with ``done``; results too large for one frame (thousands of
    instances with their errors) go ahead in ``results`` events, and ``done``
    carries the last of them. Clients add them up."""
    results = outcome.get("results") or []
    if packed_size(outcome) > EVENT_BUDGET_BYTES:
        *ahead, last = slices(results, EVENT_BUDGET_BYTES)
        for run in ahead:
            if not await stream.send({"type": "results", "results": run}):
                return
        outcome = {**outcome, "results": last}
    await stream.end({"type": "done", **outcome})
