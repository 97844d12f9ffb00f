"""Snapshot tests of the dashboard's screens (pytest-textual-snapshot).

The app never dials a daemon here (``connect=False``): each view is fed fixed
data, and the clock-dependent columns (task, alert and audit times) are formatted in UTC,
so the pictures are the same on every machine. After a deliberate change to
the look, regenerate with ``pytest tests/test_tui_snapshots.py --snapshot-update``
and check the SVGs under ``tests/__snapshots__/`` in after looking at them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gdos.tui.app import GdosApp
from gdos.tui.logs import LogsView, SourceLabels, search_pattern
from gdos.tui.node_detail import NodeDetailScreen
from gdos.tui.nodes import NodesView
from gdos.tui.records import AlertsView, AuditView
from gdos.tui.services import ServicesView
from gdos.tui.tasks import HostLines, TasksView
from textual.pilot import Pilot
from textual.widgets import Input, Label, RichLog

SIZE = (120, 40)
Compare = Callable[..., bool]

NODES: list[dict[str, Any]] = [
    {
        "name": "web-1",
        "online": True,
        "state": "normal",
        "cpu_percent": 12.0,
        "mem_percent": 41.5,
        "load1": 0.42,
        "disk_percent": 55.0,
        "uptime": 3 * 86400 + 3600,
        "agent_version": "0.1.0",
    },
    {
        "name": "web-2",
        "online": True,
        "state": "normal",
        "cpu_percent": 67.0,
        "mem_percent": 83.0,
        "load1": 2.5,
        "disk_percent": 91.0,
        "uptime": 5400,
        "agent_version": "0.1.0",
    },
    {
        "name": "db-1",
        "online": True,
        "state": "maintenance",
        "cpu_percent": 95.0,
        "mem_percent": 70.0,
        "load1": 7.25,
        "disk_percent": 30.0,
        "uptime": 90,
        "agent_version": "0.1.0",
    },
    {"name": "old-1", "online": False, "state": "disabled", "agent_version": None},
]

TASKS: list[dict[str, Any]] = [
    {
        "id": 2,
        "created": 1_700_000_000.0,
        "user": "ops",
        "status": "failed",
        "succeeded": 1,
        "hosts": 2,
        "argv": ["sh", "-c", "exit 3"],
    },
    {
        "id": 1,
        "created": 1_699_999_000.0,
        "user": "ops",
        "status": "succeeded",
        "succeeded": 3,
        "hosts": 3,
        "argv": ["uptime"],
    },
]

HOSTS: list[dict[str, Any]] = [
    {"node": "web-1", "status": "succeeded", "exit_code": 0, "duration": 0.4},
    {"node": "web-2", "status": "failed", "exit_code": 3, "duration": 0.5},
]


NOW = 1_700_000_000.0


def instance(system: str, module: str, node: str, state: str, **fields: Any) -> dict[str, Any]:
    """An instance as ``svc.watch`` sends it (no uptime: the view computes it)."""
    view: dict[str, Any] = {
        "instance": f"{system}/{module}@{node}",
        "system": system,
        "module": module,
        "node": node,
        "kind": "managed",
        "package": module,
        "state": state,
        "pid": None,
        "started": None,
        "restarts": 0,
        "version": "1.0.0",
        "error": None,
        "previous_version": None,
        "node_online": True,
    }
    return view | fields


# Two pushes: everything, then a change (web@web-2 started) and a removal.
SVC_EVENTS: list[dict[str, Any]] = [
    {
        "type": "instances",
        "changed": [
            instance("shop", "web", "web-2", "stopped"),
            instance("shop", "web", "web-1", "running", pid=4121, started=NOW - 3 * 3600),
            instance("shop", "api", "web-1", "running", pid=4007, started=NOW - 95, restarts=2),
            instance("shop", "db", "db-1", "running", pid=977, started=NOW - 4 * 86400),
            instance(
                "billing",
                "worker",
                "db-1",
                "failed",
                restarts=5,
                version="2.1.0",
                error="flapping: 6 restarts within 60s (last exit status 3)",
            ),
            instance("billing", "cron", "old-1", "stopped", node_online=False),
            instance("billing", "mailer", "web-1", "stopped"),
        ],
        "removed": [],
    },
    {
        "type": "instances",
        "changed": [
            instance("shop", "web", "web-2", "running", pid=5230, started=NOW - 12),
        ],
        "removed": ["billing/mailer@web-1"],
    },
]
SVC_METRICS = {"shop/db@db-1": {"cpu": 71.0, "rss": 812 * 1024 * 1024}}


@pytest.fixture(autouse=True)
def utc_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Task times in UTC whatever the machine's time zone."""
    monkeypatch.setattr(
        "gdos.tui.tasks.when",
        lambda ts: "-" if ts is None else time.strftime("%m-%d %H:%M:%S", time.gmtime(ts)),
    )


def offline_app() -> GdosApp:
    """The header names the daemon's socket: a fixed one, so the picture is the same anywhere."""
    return GdosApp(connect=False, socket_path=Path("/run/gdos/gdosd.sock"))


class TestNodesView:
    def test_nodes_table(self, snap_compare: Compare) -> None:
        async def feed(pilot: Pilot[Any]) -> None:
            pilot.app.query_one(NodesView).apply({"changed": NODES}, full=True)

        assert snap_compare(offline_app(), terminal_size=SIZE, run_before=feed)

    def test_nodes_sorted_by_cpu(self, snap_compare: Compare) -> None:
        async def feed(pilot: Pilot[Any]) -> None:
            pilot.app.query_one(NodesView).apply({"changed": NODES}, full=True)

        assert snap_compare(offline_app(), press=["C"], terminal_size=SIZE, run_before=feed)


class TestTasksView:
    def test_tasks_and_hosts(self, snap_compare: Compare) -> None:
        async def feed(pilot: Pilot[Any]) -> None:
            app = pilot.app
            assert isinstance(app, GdosApp)
            app.show_view("tasks")
            view = app.query_one(TasksView)
            view.show_tasks(TASKS)
            view.query_one("#run-title", Label).update("task 2: sh -c 'exit 3' — failed")
            for host in HOSTS:
                view.show_host(host)
            lines = HostLines([h["node"] for h in HOSTS])
            log = view.query_one("#exec-log", RichLog)
            view.show_output(log, lines.feed("web-1", "stdout", b"starting\ndone\n"))
            view.show_output(log, lines.feed("web-2", "stderr", b"disk full\n"))

        assert snap_compare(offline_app(), terminal_size=SIZE, run_before=feed)


class TestServicesView:
    def test_instances_grouped_with_marks(self, snap_compare: Compare) -> None:
        async def feed(pilot: Pilot[Any]) -> None:
            app = pilot.app
            assert isinstance(app, GdosApp)
            app.show_view("services")
            view = app.query_one(ServicesView)
            view.clock = lambda: NOW
            for number, event in enumerate(SVC_EVENTS):
                view.apply(event, full=number == 0)
            view.merge_metrics(SVC_METRICS)
            view.busy["shop/db@db-1"] += 1  # an action under way on this row
            view.render_rows()

        # the cursor starts on the first row (billing/cron@old-1): mark it and the next
        press = ["space", "space"]
        assert snap_compare(offline_app(), press=press, terminal_size=SIZE, run_before=feed)


class TestHelpScreen:
    def test_help(self, snap_compare: Compare) -> None:
        assert snap_compare(offline_app(), press=["question_mark"], terminal_size=SIZE)


# -- the observe views: node detail, logs, alerts, audit --------------------------------

DETAIL_NODE: dict[str, Any] = {
    **NODES[0],
    "address": "10.0.0.11:7420",
    "facts": {
        "hostname": "web-1.example",
        "distro": "Debian GNU/Linux 12 (bookworm)",
        "kernel": "6.1.0-18-amd64",
        "arch": "x86_64",
        "cpu_model": "AMD EPYC 7443P",
        "cpu_cores": 24,
        "cpu_threads": 48,
        "memory_total": 64 * 1024**3,
    },
}
DETAIL_SERIES: dict[str, list[float]] = {
    "cpu": [10.0 + (i * 7) % 40 for i in range(90)],
    "mem": [40.0 + i * 0.1 for i in range(90)],
    "net_rx": [1024.0 * ((i * 13) % 50) for i in range(90)],
    "net_tx": [512.0 * ((i * 5) % 20) for i in range(90)],
}
LOG_SOURCES: list[dict[str, Any]] = [
    {"node": "web-1", "instance": "shop/web", "file": "stdout"},
    {"node": "web-2", "instance": "shop/web", "file": "stdout"},
]
ALERTS: list[dict[str, Any]] = [
    {
        "id": 3,
        "rule": "cpu-hot",
        "target": "db-1",
        "severity": "critical",
        "started": NOW - 300,
        "ended": None,
        "active": True,
        "duration": 300.0,
        "min": 91.0,
        "avg": 95.5,
        "max": 99.0,
        "message": "cpu > 90 for 60s (99.0)",
    },
    {
        "id": 2,
        "rule": "disk-full",
        "target": "web-2",
        "severity": "warning",
        "started": NOW - 1200,
        "ended": None,
        "active": True,
        "duration": 1200.0,
        "min": 90.2,
        "avg": 90.8,
        "max": 91.0,
        "message": "disk > 90 (91.0)",
    },
    {
        "id": 1,
        "rule": "node-offline",
        "target": "old-1",
        "severity": "critical",
        "started": NOW - 7200,
        "ended": NOW - 6000,
        "active": False,
        "duration": 1200.0,
        "min": None,
        "avg": None,
        "max": None,
        "message": "no heartbeat for 45s",
    },
]
AUDIT: list[dict[str, Any]] = [
    {
        "id": 1,
        "time": NOW - 600,
        "user": "ops",
        "action": "package.push",
        "target": "web",
        "result": "ok",
        "detail": {"version": "1.0.0"},
    },
    {
        "id": 2,
        "time": NOW - 500,
        "user": "ops",
        "action": "deploy",
        "target": "shop/web",
        "result": "ok",
        "detail": {"nodes": "web-1,web-2"},
    },
    {
        "id": 3,
        "time": NOW - 60,
        "user": "ann",
        "action": "exec",
        "target": "all",
        "result": "failed",
        "detail": {"argv": "sh -c 'exit 3'"},
    },
    {
        "id": 4,
        "time": NOW - 5,
        "user": "ann",
        "action": "alert.rule.add",
        "target": "cpu-hot",
        "result": "ok",
        "detail": None,
    },
]


@pytest.fixture(autouse=True)
def utc_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Alert and audit times in UTC whatever the machine's time zone."""
    monkeypatch.setattr(
        "gdos.tui.records.when",
        lambda ts: "-" if ts is None else time.strftime("%m-%d %H:%M:%S", time.gmtime(ts)),
    )


class TestNodeDetail:
    def test_facts_and_sparklines(self, snap_compare: Compare) -> None:
        async def feed(pilot: Pilot[Any]) -> None:
            app = pilot.app
            assert isinstance(app, GdosApp)
            app.query_one(NodesView).apply({"changed": NODES}, full=True)
            app.open_node_detail("web-1")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, NodeDetailScreen)
            screen.show_facts(DETAIL_NODE)
            screen.show_history(DETAIL_SERIES)

        assert snap_compare(offline_app(), terminal_size=SIZE, run_before=feed)


class TestLogsView:
    def test_two_sources_highlighted_and_paused(self, snap_compare: Compare) -> None:
        async def feed(pilot: Pilot[Any]) -> None:
            app = pilot.app
            assert isinstance(app, GdosApp)
            app.show_view("logs")
            view = app.query_one(LogsView)
            view.query_one("#logs-targets", Input).value = "shop/web"
            view.request = {"targets": ["shop/web"]}
            view.pattern = search_pattern("error")
            labels = SourceLabels(LOG_SOURCES)
            for n in range(6):
                source = LOG_SOURCES[n % 2]
                line = f"GET /cart/{n} 200" if n != 3 else "ERROR payment gateway timeout"
                event = {"type": "lines", **source, "lines": [line.encode()]}
                view.show_event(labels, event, "shop/web")
            view.show_event(
                labels,
                {
                    "type": "end",
                    **LOG_SOURCES[1],
                    "code": "node_offline",
                    "message": "node web-2 went offline; its part of the log stream ended.",
                },
                "shop/web",
            )
            view.set_status("following shop/web: 2 source(s)")
            view.action_pause()

        assert snap_compare(offline_app(), terminal_size=SIZE, run_before=feed)


class TestAlertsView:
    def test_firing_and_ended_by_severity(self, snap_compare: Compare) -> None:
        async def feed(pilot: Pilot[Any]) -> None:
            app = pilot.app
            assert isinstance(app, GdosApp)
            app.show_view("alerts")
            app.query_one(AlertsView).show(ALERTS)

        assert snap_compare(offline_app(), terminal_size=SIZE, run_before=feed)


class TestAuditView:
    def test_latest_entries_newest_first(self, snap_compare: Compare) -> None:
        async def feed(pilot: Pilot[Any]) -> None:
            app = pilot.app
            assert isinstance(app, GdosApp)
            app.show_view("audit")
            app.query_one(AuditView).show(AUDIT)

        assert snap_compare(offline_app(), terminal_size=SIZE, run_before=feed)
