"""``gdos logs``: log lines relayed from agents to a control client.

``logs.open`` resolves its targets to sources — one (node, instance, file)
each: an instance ``SYSTEM/MODULE@NODE``, every instance of a module or
system from the catalog, or a ``--path`` on nodes — sends each agent a
``log.open`` and opens one stream to the client that merges them all.

Flow control is end to end: each source has a small window of ``log.data``
frames in flight (LOG_BUDGET split over the sources, 2 to 16 each), and the
daemon grants the agent more only once it has written the frames to the
client, whose stream credit throttles that write. A slow client therefore
slows the agents' readers and the daemon holds at most one window per source.

Each source ends once, with an ``end`` event: the agent finished (history
without follow) or refused (code and sentence), its node went offline, or
its agent reconnected. The stream ends when every source has. When the
client leaves, every source still open gets a ``log.close``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from gdos.daemon.catalog import Catalog
from gdos.daemon.control import ControlConnection, Stream
from gdos.daemon.mesh import Mesh
from gdos.daemon.registry import LiveNode, NodeRegistry
from gdos.daemon.service_plans import ADOPTED
from gdos.errors import ErrorCode, GdosError
from gdos.names import check_name
from gdos.wire import protocol
from gdos.wire.flow import CreditRelay
from gdos.wire.protocol import Message

log = logging.getLogger("gdosd.logs")

LOG_BUDGET = 256  # log.data frames in flight per request, split over its sources
MAX_SOURCE_CREDIT = 16
MIN_SOURCE_CREDIT = 2
MAX_SOURCES = 1000
MAX_LINES = 1_000_000
DEFAULT_LINES = 100

Event = dict[str, Any]


@dataclass
class Source:
    """One file on one node, read for one client request."""

    id: int
    node: str
    instance: str | None
    file: str
    session: LogSession
    relay: CreditRelay
    routing_id: bytes | None = None
    ended: bool = False

    def label(self) -> Event:
        return {"node": self.node, "instance": self.instance, "file": self.file}


@dataclass
class LogSession:
    conn: ControlConnection
    stream: Stream
    sources: dict[int, Source] = field(default_factory=dict)
    outbox: asyncio.Queue[tuple[Event, Source]] = field(default_factory=asyncio.Queue)


class LogRelay:
    """Every live log source of the daemon, and the logs.open control request."""

    def __init__(self, catalog: Catalog, registry: NodeRegistry, mesh: Mesh) -> None:
        self.catalog, self.registry, self.mesh = catalog, registry, mesh
        self.sources: dict[int, Source] = {}
        self._ids = itertools.count(1)
        mesh.handlers.register({"log.data": self._on_data, "log.end": self._on_end})
        mesh.on_hello.append(self._on_hello)
        registry.on_offline.append(self._on_offline)

    def handlers(self) -> dict[str, Any]:
        return {"logs.open": self.open}

    # -- the client request ---------------------------------------------------------
    async def open(self, conn: ControlConnection, msg: Message) -> dict[str, Any]:
        if msg.id is None:
            raise GdosError(ErrorCode.BAD_MESSAGE, "logs.open needs a request id.")
        request = _validated(msg.body)
        plan = self._plan(msg.body["targets"], request.get("path"), msg.body.get("file"))
        credit = max(MIN_SOURCE_CREDIT, min(MAX_SOURCE_CREDIT, LOG_BUDGET // len(plan)))
        session = LogSession(conn, conn.open_stream(msg.id, protocol.CONTROL_STREAM_CREDIT))
        for node, instance, file in plan:
            source_id = next(self._ids)
            relay = CreditRelay(credit, functools.partial(self._grant, source_id))
            source = Source(source_id, node, instance, file, session, relay)
            session.sources[source.id] = source
            self.sources[source.id] = source
            self._start(source, request)
        conn.spawn(self._pump(session))
        return {"stream": msg.id, "sources": [s.label() for s in session.sources.values()]}

    def _start(self, source: Source, request: dict[str, Any]) -> None:
        node = self.registry.nodes.get(source.node)
        if node is None or not node.online or node.routing_id is None:
            seen = ""
            if node is not None and node.last_seen is not None:
                seen = f" (last seen {time.time() - node.last_seen:.0f}s ago)"
            self._finish(source, ErrorCode.NODE_OFFLINE, f"node {source.node} is offline{seen}.")
            return
        source.routing_id = node.routing_id
        body = {**request, "stream": source.id, "credit": source.relay.window}
        if source.instance is not None:
            body |= {"instance": source.instance, "file": source.file}
        if not self.mesh.send(node, "log.open", body):
            self._finish(source, ErrorCode.NODE_OFFLINE, f"node {source.node} is not connected.")

    def _plan(self, targets: Any, path: str | None, file: Any) -> list[tuple[str, str | None, str]]:
        """(node, instance or None, file label or path) for every source, in order."""
        if not isinstance(targets, list) or not targets:
            raise GdosError(ErrorCode.NO_TARGET, "name an instance, module, system or node.")
        if not all(isinstance(t, str) for t in targets):
            raise GdosError(ErrorCode.INVALID_ARGUMENT, "targets must be strings.")
        plan: list[tuple[str, str | None, str]] = []
        if path is not None:
            if file:
                raise GdosError(
                    ErrorCode.INVALID_ARGUMENT, "--file and --path cannot be used together."
                )
            for target in targets:
                node = self.registry.get(check_name(target, "node name"))
                plan.append((node.name, None, path))
        else:
            label = check_name(file or "stdout", "log label")
            for target in targets:
                plan += [
                    (r["node"], f"{r['system']}/{r['module']}", label) for r in self._rows(target)
                ]
        unique = list(dict.fromkeys(plan))
        if len(unique) > MAX_SOURCES:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT,
                f"{len(unique)} log sources is more than {MAX_SOURCES}; name fewer targets.",
            )
        return unique

    def _rows(self, target: str) -> list[dict[str, Any]]:
        """The catalog's instances a SYSTEM[/MODULE][@NODE] target names."""
        name, _, node = target.partition("@")
        system, _, module = name.partition("/")
        check_name(system, "system name")
        if module:
            check_name(module, "module name")
        if node:
            check_name(node, "node name")
        if system != ADOPTED and not self.catalog.has_system(system):
            if not module and not node and system in self.registry.nodes:
                raise GdosError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"{system} is a node: give --path /abs/file to read a file there, "
                    "or name SYSTEM/MODULE.",
                )
            raise GdosError(
                ErrorCode.SYSTEM_UNKNOWN,
                f"no system or node named {system!r}; 'gdos system list' shows the systems.",
            )
        rows = self.catalog.instances(system, module or None, node or None)
        if not rows:
            raise GdosError(
                ErrorCode.INSTANCE_UNKNOWN,
                f"{target} has no deployed instance; deploy it first ('gdos status' lists them).",
            )
        return rows

    async def _pump(self, session: LogSession) -> None:
        """Write the sources' events to the client; grant each agent credit as it goes."""
        remaining = len(session.sources)
        try:
            while remaining:
                event, source = await session.outbox.get()
                if not await session.stream.send(event):
                    return
                if event["type"] == "end":
                    remaining -= 1
                    continue
                source.relay.passed()
            await session.stream.end({"type": "done"})
        finally:
            for source in session.sources.values():
                if not source.ended:
                    if source.routing_id is not None:
                        self.mesh.send_rid(source.routing_id, "log.close", {"stream": source.id})
                    source.ended = True
                self.sources.pop(source.id, None)

    def _grant(self, source_id: int, credit: int) -> None:
        source = self.sources.get(source_id)
        if source is not None and source.routing_id is not None:
            self.mesh.send_rid(
                source.routing_id, "log.credit", {"stream": source_id, "credit": credit}
            )

    # -- agent messages -------------------------------------------------------------------
    def _source(self, node: LiveNode, msg: Message) -> Source | None:
        source = self.sources.get(msg.body["stream"])
        if source is None or source.node != node.name or source.ended:
            return None
        return source

    def _on_data(self, node: LiveNode, msg: Message) -> None:
        source = self._source(node, msg)
        if source is None:
            self.mesh.send(node, "log.close", {"stream": msg.body["stream"]})
            return
        if not source.relay.admit():
            log.warning("%s sent log lines past its credit; dropped", node.name)
            return
        lines = [line for line in msg.body["lines"] if isinstance(line, bytes)]
        event: Event = {"type": "lines", **source.label(), "lines": lines}
        event["ts"] = msg.body.get("ts") or time.time()
        if "stamps" in msg.body:
            event["stamps"] = msg.body["stamps"]
        source.session.outbox.put_nowait((event, source))

    def _on_end(self, node: LiveNode, msg: Message) -> None:
        source = self._source(node, msg)
        if source is not None:
            self._finish(source, msg.body.get("code"), msg.body.get("message"))

    def _on_offline(self, node: LiveNode) -> None:
        for source in self._open_on(node.name):
            self._finish(
                source,
                ErrorCode.NODE_OFFLINE,
                f"node {node.name} went offline; its part of the log stream ended.",
            )

    def _on_hello(self, node: LiveNode, msg: Message) -> None:
        """A reconnected agent has dropped the readers of its old connection."""
        for source in self._open_on(node.name):
            if source.routing_id is not None and source.routing_id != node.routing_id:
                self._finish(
                    source,
                    ErrorCode.NODE_OFFLINE,
                    f"the agent on {node.name} reconnected; its part of the log stream "
                    "ended (run the command again to go on).",
                )

    def _open_on(self, name: str) -> list[Source]:
        return [s for s in self.sources.values() if s.node == name and not s.ended]

    def _finish(self, source: Source, code: str | None, message: str | None) -> None:
        if source.ended:
            return
        source.ended = True
        source.relay.close()
        self.sources.pop(source.id, None)
        event: Event = {"type": "end", **source.label()}
        if code:
            event |= {"code": str(code), "message": message or "the log stream failed."}
        source.session.outbox.put_nowait((event, source))


def _validated(body: dict[str, Any]) -> dict[str, Any]:
    """The log.open fields of a logs.open body, checked at the edge."""
    lines = body.get("lines", DEFAULT_LINES)
    if not -1 <= lines <= MAX_LINES:
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"-n must be 0 to {MAX_LINES} lines (or -1 for all).",
        )
    request: dict[str, Any] = {
        "lines": int(lines),
        "follow": bool(body.get("follow")),
        "stamps": bool(body.get("stamps")),
    }
    grep = body.get("grep")
    if grep:
        try:
            re.compile(grep)
        except re.error as exc:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT, f"--grep {grep!r} is not a valid regex: {exc}."
            ) from None
        request["grep"] = grep
    since = body.get("since")
    if since is not None:
        request["since"] = float(since)
    path = body.get("path")
    if path is not None:
        if not path.startswith("/") or "\0" in path or ".." in path.split("/"):
            raise GdosError(
                ErrorCode.PATH_NOT_ALLOWED,
                f"--path {path!r} must be an absolute path without '..'.",
            )
        request["path"] = path
    return request
