"""Control requests of nodes, keys, tokens, exec tasks and shells.

One small class per concern, each given only what it answers from, and each
registering its handlers with the daemon's table (gdos/daemon/handlers.py).
Handlers validate their arguments, call the registry, key ring or task
engine, and return a plain reply body; they hold no state of their own.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from gdos.daemon.auth import KeyRing
from gdos.daemon.config import DaemonConfig
from gdos.daemon.control import ControlConnection
from gdos.daemon.handlers import Handlers
from gdos.daemon.mesh import Mesh
from gdos.daemon.metrics import MetricRings
from gdos.daemon.registry import NodeRegistry
from gdos.daemon.shells import Shells
from gdos.daemon.store import Store
from gdos.daemon.tasks import ExecTasks
from gdos.daemon.watch import watch_interval, watch_nodes
from gdos.errors import ErrorCode, GdosError
from gdos.identity.keys import fingerprint
from gdos.identity.tokens import JoinToken
from gdos.names import check_name, natural_key
from gdos.wire import protocol
from gdos.wire.control_kinds import (
    Interval,
    KeyAccept,
    Limited,
    Named,
    NodeNames,
    NodeSetState,
    ShellSession,
    TaskId,
    TokenCreate,
)
from gdos.wire.protocol import Message

Body = dict[str, Any]
MAX_TOKEN_TTL = 366 * 86400


class NodeApi:
    """ping and the node requests."""

    def __init__(
        self,
        handlers: Handlers,
        config: DaemonConfig,
        store: Store,
        registry: NodeRegistry,
        mesh: Mesh,
        metrics: MetricRings,
        about: Callable[[], Body],
    ) -> None:
        self.config, self.store, self.registry = config, store, registry
        self.mesh, self.metrics, self.about = mesh, metrics, about
        handlers.register(
            {
                "ping": self.ping,
                "node.list": self.node_list,
                "node.names": self.node_names,
                "node.show": self.node_show,
                "node.rm": self.node_rm,
                "node.set_state": self.node_set_state,
                "node.watch": self.node_watch,
            }
        )

    async def ping(self, conn: ControlConnection, msg: Message[Any]) -> Body:
        """The daemon's figures (``about``), and who is asking."""
        return {**self.about(), "user": conn.user}

    async def node_list(self, conn: ControlConnection, msg: Message[Any]) -> Body:
        return {"nodes": self.registry.list()}

    async def node_names(self, conn: ControlConnection, msg: Message[NodeNames]) -> Body:
        prefix = msg.body.get("prefix", "")
        names = (n for n in self.registry.nodes if n.startswith(prefix))
        return {"names": sorted(names, key=natural_key)}

    async def node_show(self, conn: ControlConnection, msg: Message[Named]) -> Body:
        name = msg.body["name"]
        live = self.registry.get(name)
        row = self.store.node(name) or {}
        return {
            "node": {
                **live.view(),
                "facts": row.get("facts", {}),
                "metrics": live.metrics or {},
                "key": fingerprint(live.key) if live.key else None,
                "address": row.get("address"),
                "first_seen": row.get("first_seen"),
                "connected_at": live.connected_at,
            }
        }

    async def node_rm(self, conn: ControlConnection, msg: Message[Named]) -> Body:
        node = self.registry.get(msg.body["name"])
        if node.online:
            self.mesh.send(node, "revoked", {"reason": "node removed by the operator"})
        self.registry.remove(node.name)
        self.metrics.drop_node(node.name)
        return {"removed": node.name}

    async def node_set_state(self, conn: ControlConnection, msg: Message[NodeSetState]) -> Body:
        body = msg.body
        node = self.registry.set_state(body["name"], body["state"], body.get("reason"))
        self.mesh.send(node, "config", {"config": self.config.agent_config(), "state": node.state})
        return {"name": node.name, "state": node.state, "reason": node.state_reason}

    async def node_watch(self, conn: ControlConnection, msg: Message[Interval]) -> Body:
        """Open a stream of node changes (gdos/daemon/watch.py)."""
        if msg.id is None:
            raise GdosError(ErrorCode.BAD_MESSAGE, "node.watch needs a request id.")
        interval = watch_interval(msg.body.get("interval"))
        stream = conn.open_stream(msg.id, protocol.CONTROL_STREAM_CREDIT)
        conn.spawn(watch_nodes(self.registry, conn, stream, interval))
        return {"stream": msg.id, "interval": interval}


class KeyApi:
    """Node keys and join tokens."""

    def __init__(
        self,
        handlers: Handlers,
        config: DaemonConfig,
        store: Store,
        ring: KeyRing,
        registry: NodeRegistry,
        mesh: Mesh,
        public_key: str | None,
    ) -> None:
        self.config, self.store, self.ring = config, store, ring
        self.registry, self.mesh, self.public_key = registry, mesh, public_key
        handlers.register(
            {
                "key.list": self.key_list,
                "key.accept": self.key_accept,
                "key.reject": self.key_reject,
                "key.delete": self.key_delete,
                "token.create": self.token_create,
                "token.list": self.token_list,
            }
        )

    async def key_list(self, conn: ControlConnection, msg: Message[Any]) -> Body:
        held = self.ring.accepted_names
        return {
            "keys": [
                {**_key_view(r), "name_held": r["status"] == "pending" and r["name"] in held}
                for r in self.ring.known()
            ]
        }

    async def key_accept(self, conn: ControlConnection, msg: Message[KeyAccept]) -> Body:
        """One key by name or fingerprint, or every pending key that can be (--all)."""
        name = msg.body.get("name")
        if msg.body.get("all"):
            accepted, refused = self.ring.accept_all()
            return {
                "keys": [_key_view({**r, "status": "accepted"}) for r in accepted],
                "refused": [{**_key_view(r), "reason": r["reason"]} for r in refused],
            }
        if not name:
            raise GdosError(ErrorCode.INVALID_ARGUMENT, "name a node or pass --all.")
        row = self.ring.accept(name)
        return {"keys": [_key_view({**row, "status": "accepted"})]}

    async def key_reject(self, conn: ControlConnection, msg: Message[Named]) -> Body:
        row = self.ring.reject(msg.body["name"])
        self._revoke(row["key"], "key rejected by the operator")
        return {"keys": [_key_view({**row, "status": "rejected"})]}

    async def key_delete(self, conn: ControlConnection, msg: Message[Named]) -> Body:
        row = self.ring.delete(msg.body["name"])
        self._revoke(row["key"], "key deleted by the operator")
        return {"keys": [_key_view(row)]}

    def _revoke(self, key: str, reason: str) -> None:
        """Disconnect the node whose session runs on ``key``, if any (only that one)."""
        for node in list(self.registry.nodes.values()):
            if node.key == key and node.routing_id is not None:
                self.mesh.send(node, "revoked", {"reason": reason})
                self.registry.disconnect(node)

    async def token_create(self, conn: ControlConnection, msg: Message[TokenCreate]) -> Body:
        ttl = float(msg.body.get("ttl", 3600))
        uses = msg.body.get("uses")
        if not 0 < ttl <= MAX_TOKEN_TTL:
            raise GdosError(ErrorCode.INVALID_ARGUMENT, "--ttl must be between 1s and 366d.")
        if uses is not None and uses < 1:
            raise GdosError(ErrorCode.INVALID_ARGUMENT, "--uses must be at least 1.")
        if self.public_key is None:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT,
                "the daemon runs with --insecure; join tokens need CURVE.",
            )
        token = JoinToken(
            address=msg.body.get("address") or self.config.token_address(),
            server_key=self.public_key,
            token_id=secrets.token_hex(8),
            secret=secrets.token_bytes(24),
            expires_at=time.time() + ttl,
        )
        self.store.add_token(token.token_id, token.secret, token.expires_at, uses)
        return {
            "token": token.encode(),
            "id": token.token_id,
            "expires_at": token.expires_at,
            "uses": uses,
            "address": token.address,
        }

    async def token_list(self, conn: ControlConnection, msg: Message[Any]) -> Body:
        rows = self.store.tokens()
        return {
            "tokens": [
                {k: r[k] for k in ("id", "created", "expires_at", "uses_left", "used")}
                for r in rows
            ]
        }


class TaskApi:
    """Exec tasks and remote shells."""

    def __init__(self, handlers: Handlers, store: Store, tasks: ExecTasks, shells: Shells) -> None:
        self.store, self.tasks, self.shells = store, tasks, shells
        handlers.register(
            {
                "exec.start": self.exec_start,
                "task.list": self.task_list,
                "task.show": self.task_show,
                "task.cancel": self.task_cancel,
                "shell.open": self.shell_open,
                "shell.input": self.shell_input,
                "shell.eof": self.shell_eof,
                "shell.resize": self.shell_resize,
                "shell.close": self.shell_close,
                "shell.sessions": self.shell_sessions,
                "shell.cast": self.shell_cast,
            }
        )

    # Bodies passed on whole (exec.start, shell.*) stay Message: their consumers
    # (gdos/daemon/tasks.py, shells.py) read a plain dict.
    async def exec_start(self, conn: ControlConnection, msg: Message) -> Body:
        for name in msg.body.get("targets") or []:
            check_name(name)
        task, hosts = self.tasks.start(msg.body, conn.user)
        reply: Body = {"task": task.id, "hosts": hosts}
        if msg.body.get("follow") and msg.id is not None:
            subscriber = self.tasks.subscribe(task)
            stream = conn.open_stream(msg.id, protocol.CONTROL_STREAM_CREDIT)
            conn.spawn(_pump(subscriber, stream))
            reply["stream"] = msg.id
        return reply

    async def task_list(self, conn: ControlConnection, msg: Message[Limited]) -> Body:
        limit = max(1, min(int(msg.body.get("limit", 50)), 10_000))
        return {"tasks": self.store.tasks(limit)}

    async def task_show(self, conn: ControlConnection, msg: Message[TaskId]) -> Body:
        self.tasks.flush()
        task = self.store.task(msg.body["id"])
        if task is None:
            raise GdosError(
                ErrorCode.TASK_UNKNOWN,
                f"no task {msg.body['id']}; run 'gdos task list' to see tasks.",
            )
        return {"task": task}

    async def task_cancel(self, conn: ControlConnection, msg: Message[TaskId]) -> Body:
        task = self.tasks.cancel(msg.body["id"])
        return {"task": task.id, "open": len(task.open_hosts())}

    async def shell_open(self, conn: ControlConnection, msg: Message) -> Body:
        return self.shells.open(conn, msg, conn.user)

    async def shell_input(self, conn: ControlConnection, msg: Message) -> None:
        self.shells.input(conn, msg.body)

    async def shell_eof(self, conn: ControlConnection, msg: Message) -> None:
        self.shells.eof(conn, msg.body)

    async def shell_resize(self, conn: ControlConnection, msg: Message) -> None:
        self.shells.resize(conn, msg.body)

    async def shell_close(self, conn: ControlConnection, msg: Message) -> None:
        self.shells.close(conn, msg.body)

    async def shell_sessions(self, conn: ControlConnection, msg: Message[Limited]) -> Body:
        limit = max(1, min(int(msg.body.get("limit", 50)), 10_000))
        return {"sessions": self.shells.recordings.describe(self.store.shell_sessions(limit))}

    async def shell_cast(self, conn: ControlConnection, msg: Message[ShellSession]) -> Body:
        self.shells.recordings.check(msg.body["session"])
        if msg.id is None:
            raise GdosError(ErrorCode.BAD_MESSAGE, "shell.cast needs a request id.")
        stream = conn.open_stream(msg.id, protocol.CONTROL_STREAM_CREDIT)
        conn.spawn(self.shells.recordings.send(msg.body["session"], stream))
        return {"session": msg.body["session"], "stream": msg.id}


async def _pump(subscriber: Any, stream: Any) -> None:
    """Pass a task's events to one client, acking each output chunk once sent."""
    try:
        while True:
            event, ack = await subscriber.queue.get()
            if event["type"] == "done":
                await stream.end(event)
                return
            sent = await stream.send(event)
            if ack:
                ack()
            if not sent:
                return
    finally:
        subscriber.close()


def _key_view(row: Body) -> Body:
    return {
        "name": row["name"],
        "status": row["status"],
        "fingerprint": fingerprint(row["key"]),
        "key": row["key"],
        "address": row.get("address"),
        "via": row.get("via"),
        "created": row.get("created"),
    }
