"""gdosd: wires the store, key ring, registry, mesh, tasks and control socket.

``Daemon.run`` owns the event loop's long-lived tasks (mesh receive loop,
ZAP handler, control server, periodic sweeps) and shuts them down in order
on SIGTERM/SIGINT, flushing batched writes before the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Any, cast

import zmq
import zmq.asyncio

from gdos import __version__
from gdos.daemon.alerts import Snapshot, snapshot
from gdos.daemon.api import KeyApi, NodeApi, TaskApi
from gdos.daemon.audit import AuditTrail
from gdos.daemon.auth import KeyRing, ZapHandler
from gdos.daemon.backups import apply_pending
from gdos.daemon.blobs import open_store
from gdos.daemon.catalog import Catalog
from gdos.daemon.config import DaemonConfig
from gdos.daemon.control import ControlServer
from gdos.daemon.departures import Departures
from gdos.daemon.guard import return_freed_memory, trim_heap
from gdos.daemon.handlers import Handlers
from gdos.daemon.logs import LogRelay
from gdos.daemon.mesh import Mesh
from gdos.daemon.metrics import MetricRings
from gdos.daemon.metrics_api import MetricsApi
from gdos.daemon.observe_api import Observe
from gdos.daemon.opids import FILE_NAME as OP_IDS_FILE
from gdos.daemon.opids import OpIds
from gdos.daemon.packages import Packages
from gdos.daemon.pending_limits import PendingLimits
from gdos.daemon.registry import LiveNode, NodeRegistry
from gdos.daemon.service_api import ServiceApi
from gdos.daemon.services import Services
from gdos.daemon.shells import Shells
from gdos.daemon.store import Store
from gdos.daemon.tasks import ExecTasks
from gdos.identity import insecure, keys
from gdos.metric_catalog import MetricSample
from gdos.paths import Paths, ensure_private_dir
from gdos.wire.dialing import raise_fd_limit
from gdos.wire.mesh_kinds import Heartbeat, Metrics
from gdos.wire.protocol import Message

log = logging.getLogger("gdosd")

SWEEP_INTERVAL = 0.5
# descriptors kept for everything but mesh connections: the store, package
# blobs, control clients, log and recording files
FD_RESERVE = 256


class Daemon:
    def __init__(self, config: DaemonConfig, paths: Paths) -> None:
        self.config, self.paths = config, paths
        self.started = time.time()
        ensure_private_dir(paths.state_dir)
        restored = apply_pending(paths)  # a restore staged before a re-exec (backups.py)
        self.store = Store(paths.db)
        self.audit = AuditTrail(self.store)
        # every mesh and control handler, control ones audited as registered
        self.handlers = Handlers(self.audit.policy)
        self.keypair = None if config.insecure else keys.load_or_create(paths.keys_dir, "daemon")
        self.public_key = self.keypair.public.decode() if self.keypair else None
        self.ctx = zmq.asyncio.Context()
        self.ctx.setsockopt(zmq.MAX_SOCKETS, 65536)
        self.ring = KeyRing(
            self.store, PendingLimits(config.max_pending_keys, config.pending_keys_per_minute)
        )
        self.registry = NodeRegistry(self.store, config.offline_after)
        self.metrics = MetricRings()  # in-memory history, gdos/daemon/metrics.py
        self.prometheus: Any = None  # the /metrics endpoint when --prometheus is given
        self.zap = None if config.insecure else ZapHandler(self.ctx, self.ring)
        self.mesh = Mesh(self.ctx, config, self.keypair, self.ring, self.registry, self.handlers)
        self.handlers.register({"heartbeat": self._on_heartbeat, "metrics": self._on_metrics})
        self.departures = Departures(self.mesh, self.registry)  # goodbye, closed connections
        self.tasks = ExecTasks(config, self.store, self.registry, self.mesh)
        self.shells = Shells(config, self.store, self.registry, self.mesh, paths.sessions_dir)
        self.catalog = Catalog(self.store)
        self.blobs = open_store(config.package_store_options(paths.state_dir / "packages"))
        self.packages = Packages(
            self.catalog,
            self.blobs,
            self.mesh,
            paths.state_dir / "uploads",
            config.package_limits(),
        )
        op_ids = OpIds(paths.state_dir / OP_IDS_FILE)  # never reused, restores included
        self.services = Services(self.catalog, self.registry, self.mesh, op_ids)
        self.handlers.register(
            {
                "svc.state": self.services.on_state,
                "svc.report": self.services.on_report,
                "svc.done": self.services.on_done,
                "pkg.fetch": self.packages.on_fetch,
                "pkg.credit": self.packages.on_credit,
                "pkg.cancel": self.packages.on_cancel,
            }
        )
        self.mesh.on_hello.append(lambda node, msg: self.packages.node_gone(node))
        self.registry.on_offline.append(self.packages.node_gone)
        NodeApi(
            self.handlers, config, self.store, self.registry, self.mesh, self.metrics, self._about
        )
        KeyApi(
            self.handlers, config, self.store, self.ring, self.registry, self.mesh, self.public_key
        )
        TaskApi(self.handlers, self.store, self.tasks, self.shells)
        self.service_api = ServiceApi(
            self.handlers, self.packages, self.services, self.catalog, self.audit
        )
        self.logs = LogRelay(self.catalog, self.registry, self.mesh)
        self.handlers.register(self.logs.handlers())
        MetricsApi(self.handlers, self.metrics, self.registry)
        self.observe = Observe(  # audit, alerts, backups
            self.handlers,
            config,
            paths,
            self.store,
            self.audit,
            self.ring,
            self._alert_snapshot,
            self.stop,
            self.started,
            restored,
        )
        self.handlers.check_complete()  # a received kind nobody answers: refuse to start
        self.control = ControlServer(paths.control_socket, self.handlers, paths.db)
        self.mesh_endpoint = ""
        self._stop = asyncio.Event()

    def _about(self) -> dict[str, Any]:
        """The daemon's own figures, for ``ping`` (``gdos daemon status``)."""
        nodes = self.registry.nodes
        problem = self.tasks.storage_problem
        return {
            "version": __version__,
            "pid": os.getpid(),
            "started": self.started,
            "mesh": self.mesh_endpoint,
            "public_key": self.public_key,
            "insecure": self.config.insecure,
            "nodes": len(nodes),
            "online": sum(1 for n in nodes.values() if n.online),
            "mesh_counters": self.mesh.stats(),
            # a write the disk refused, until one works again (gdos/daemon/storage.py)
            "storage_error": str(problem) if problem else None,
            "unsaved_rows": self.tasks.unsaved,
        }

    def _alert_snapshot(self, now: float) -> Snapshot:
        """What the alert rules read now (gdos/daemon/alerts.py)."""
        return snapshot(
            self.registry.nodes,
            self.services.reported_nodes,
            self.catalog.instances(),
            settled=now - self.started > 2 * self.config.offline_after,
        )

    def _on_heartbeat(self, node: LiveNode, msg: Message[Heartbeat]) -> None:
        self.mesh.send(
            node, "heartbeat.ack", {"config": self.config.agent_config(), "state": node.state}
        )

    def _on_metrics(self, node: LiveNode, msg: Message[Metrics]) -> None:
        # the mesh edge checked it against node_data.METRICS_SAMPLE, MetricSample's schema
        sample = cast(MetricSample, msg.body["sample"])
        node.metrics = sample
        self.metrics.record(node.name, sample)

    async def run(self) -> None:
        fd_limit = raise_fd_limit()
        return_freed_memory()
        asyncio.get_running_loop().set_exception_handler(_quiet_exceptions)
        try:
            if self.config.insecure:  # also when not started through the CLI
                insecure.check(self.config.mesh_bind, self.config.trust_network)
            self.mesh_endpoint = self.mesh.bind(
                self.config.max_connections or max(64, fd_limit - FD_RESERVE)
            )
        except Exception:
            self._release()  # nothing started yet: let go of sockets and the store
            raise
        if self.config.prometheus:
            from gdos.daemon.prometheus import start_exporter

            self.prometheus = await start_exporter(
                self.config.prometheus, self.registry, self.metrics, self.mesh, self.store
            )
        self.observe.start()  # alerts, hooks, scheduled backups
        await self.control.start()
        resumed = self.tasks.resume()
        self.shells.recordings.convert_leftovers()
        if self.config.insecure:
            log.warning("running with --insecure: %s", insecure.exposure(self.mesh_endpoint))
        log.info(
            "gdosd %s: mesh %s, control %s, %d nodes known, %d tasks resumed, packages in %s",
            os.getpid(),
            self.mesh_endpoint,
            self.paths.control_socket,
            len(self.registry.nodes),
            resumed,
            self.blobs.describe(),
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        workers = [
            asyncio.create_task(self.mesh.serve(), name="mesh"),
            asyncio.create_task(self._sweeper(), name="sweeper"),
            asyncio.create_task(self.mesh.guard.serve(), name="mesh-guard"),
        ]
        if self.zap is not None:
            workers.append(asyncio.create_task(self.zap.serve(), name="zap"))
        stop = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([stop, *workers], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stop and task.exception():
                log.error("worker %s died", task.get_name(), exc_info=task.exception())
        await self.shutdown(workers)

    def stop(self) -> None:
        self._stop.set()

    def _release(self) -> None:
        self.mesh.close()
        if self.zap is not None:
            self.zap.close()
        self.ctx.term()
        self.store.close()

    async def _sweeper(self) -> None:
        last_flush = time.monotonic()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                for node in self.registry.sweep():
                    log.info(
                        "node %s offline (no message for %.0fs)",
                        node.name,
                        self.config.offline_after,
                    )
                self.tasks.sweep()
                self.shells.sweep()
                self.packages.sweep()
                if time.monotonic() - last_flush >= self.config.flush_interval:
                    self.registry.flush()
                    last_flush = time.monotonic()
                    trim_heap()
            except Exception:
                log.exception("periodic sweep failed")

    async def shutdown(self, workers: list[asyncio.Task[Any]]) -> None:
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.departures.close()
        self.shells.close_all()
        await self.service_api.close()
        await self.observe.close()
        self.packages.close()
        await self.control.close()
        if self.prometheus is not None:
            await self.prometheus.close()
        self.tasks.close()
        self.registry.flush()
        self._release()
        log.info("gdosd stopped")
        self.observe.after_shutdown()  # re-exec when a backup restore is staged


def _quiet_exceptions(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's errors (e.g. accept() out of descriptors, repeated many times a
    second) go through the daemon's throttled log instead of a traceback each."""
    error = context.get("exception")
    log.warning("%s", context.get("message", "event loop error"), exc_info=error)
