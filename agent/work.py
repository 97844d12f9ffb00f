"""The real node behind the agent's session: commands, shells, services and logs.

The session core (agent/session.py) answers the session's own kinds and
admits exec; ``HANDLERS`` below routes every other kind the daemon sends to
the part of the agent that owns it. It is the agent's one dispatch table
(checked at start-up by ``session.dispatch_table``): a new kind for the
agent is one line here plus its handler.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from gdos.agent.executor import ExecRuns, Finish, Send, Spawn
from gdos.agent.logs import LogAccess, LogStreams
from gdos.agent.metrics import MetricsSampler
from gdos.agent.services import ServiceHost
from gdos.agent.session import Body, WorkHandler
from gdos.agent.shells import ShellSessions

from gdos.metric_catalog import MetricSample
from gdos.model import NodeState


class AgentWork:
    """Everything this node does for the daemon, and what the session tells it."""

    def __init__(
        self,
        state_dir: Path,
        send: Send,
        spawn: Spawn,
        finish: Finish,
        *,
        log_max_bytes: int,
        log_backups: int,
        log_roots: tuple[Path, ...],
    ) -> None:
        self.state = NodeState.NORMAL
        self.sampler = MetricsSampler()
        self.execs = ExecRuns(send, spawn, finish)
        self.shells = ShellSessions(send, spawn)
        self.services = ServiceHost(
            state_dir,
            send,
            spawn,
            log_max_bytes=log_max_bytes,
            log_backups=log_backups,
            log_roots=log_roots,
        )
        self.logs = LogStreams(send, LogAccess(log_roots, self.services.supervisor))

    # -- session events (the Work protocol of agent/session.py) ---------------------
    def start_exec(self, body: Body) -> None:
        self.execs.start(body)

    def welcomed(self) -> None:
        self.execs.reset_credit()
        self.services.welcomed()

    def set_node_state(self, state: NodeState) -> None:
        self.state = state
        self.services.set_node_state(state)

    # -- the transport's events -----------------------------------------------------
    def link_lost(self) -> None:
        """Streams live only as long as their connection; services keep running."""
        self.shells.close_all("the agent lost its connection to the daemon")
        self.logs.close_all()
        self.services.link_lost()

    def metrics_sample(self) -> MetricSample:
        """The node's load plus each instance's (agent/metrics.py)."""
        return self.sampler.sample(self.services.supervisor.snapshot())

    HANDLERS: ClassVar[Mapping[str, WorkHandler]] = {
        # exec (agent/executor.py); exec.run and its ack are the session's
        "exec.cancel": lambda w, b: w.execs.cancel(b),
        "exec.credit": lambda w, b: w.execs.credit(b),
        # remote shell (agent/shells.py)
        "pty.open": lambda w, b: w.shells.open(b, w.state),
        "pty.input": lambda w, b: w.shells.input(b),
        "pty.eof": lambda w, b: w.shells.eof(b),
        "pty.resize": lambda w, b: w.shells.resize(b),
        "pty.credit": lambda w, b: w.shells.credit(b),
        "pty.close": lambda w, b: w.shells.close(b),
        # services and packages (agent/services.py, agent/packages.py)
        "svc.deploy": lambda w, b: w.services.on_deploy(b),
        "svc.action": lambda w, b: w.services.on_action(b),
        "svc.adopt": lambda w, b: w.services.on_adopt(b),
        "svc.done.ack": lambda w, b: w.services.on_done_ack(b),
        "svc.state.ack": lambda w, b: w.services.on_state_ack(b),
        "pkg.chunk": lambda w, b: w.services.cache.on_chunk(b),
        "pkg.error": lambda w, b: w.services.cache.on_error(b),
        # logs (agent/logs.py)
        "log.open": lambda w, b: w.logs.open(b),
        "log.credit": lambda w, b: w.logs.credit(b),
        "log.close": lambda w, b: w.logs.close(b),
    }
