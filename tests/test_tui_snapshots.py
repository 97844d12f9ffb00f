"""Snapshot tests of the dashboard's screens (pytest-textual-snapshot).

The app never dials a daemon here (``connect=False``): each view is fed fixed
data, and the one clock-dependent column (a task's WHEN) is formatted in UTC,
so the pictures are the same on every machine. After a deliberate change to
the look, regenerate with ``pytest tests/test_tui_snapshots.py --snapshot-update``
and check the SVGs under ``tests/__snapshots__/`` in after looking at them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Label, RichLog

from tui.app import GdosApp
from tui.nodes import NodesView
from tui.services import ServicesView
from tui.tasks import HostLines, TasksView

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
SVC_METRICS = {"shop/db@db-1": {"cpu_percent": 71.0, "rss_bytes": 812 * 1024 * 1024}}


@pytest.fixture(autouse=True)
def utc_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Task times in UTC whatever the machine's time zone."""
    monkeypatch.setattr(
        "tui.tasks.when",
        lambda ts: "-" if ts is None else time.strftime("%m-%d %H:%M:%S", time.gmtime(ts)),
    )


def offline_app() -> GdosApp:
    return GdosApp(connect=False)


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
