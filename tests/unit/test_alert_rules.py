"""Alert rules: validation at the edge, the debounce state machine, value selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from gdos.daemon.alert_rules import Rule, check_rule, step
from gdos.daemon.alert_store import AlertStore, tasks_by_status
from gdos.daemon.alerts import Alerts, Snapshot
from gdos.daemon.hooks import HookRunner, command_env, post_webhook
from gdos.daemon.store import Store
from gdos.errors import ErrorCode, GdosError
from gdos.metric_catalog import instance_values, node_values
from tests.waiting import free_port

BASE = {"name": "hot", "metric": "cpu", "op": ">", "value": 90}


def test_a_valid_rule_keeps_every_field() -> None:
    rule = check_rule(
        {
            **BASE,
            "for_seconds": 60,
            "node": "web-*",
            "severity": "critical",
            "command": "notify-send 'cpu high'",
            "webhook": "https://hooks.example/alert",
        }
    )
    assert (rule.metric, rule.op, rule.value, rule.for_seconds) == ("cpu", ">", 90.0, 60.0)
    assert rule.node_glob == "web-*" and rule.severity == "critical" and not rule.builtin


@pytest.mark.parametrize(
    "change",
    [
        {"name": "bad/name"},
        {"metric": "temperature"},
        {"metric": "rss"},  # an instance metric without --instance
        {"op": "=>"},
        {"value": float("nan")},
        {"value": True},
        {"for_seconds": -1},
        {"for_seconds": 8 * 86400},
        {"node": "a b"},
        {"instance": "web;rm"},
        {"severity": "info"},
        {"webhook": "ftp://host/x"},
        {"webhook": "http://"},
        {"command": "echo 'unbalanced"},
    ],
)
def test_malformed_rules_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(GdosError) as caught:
        check_rule({**BASE, **change})
    assert caught.value.code == ErrorCode.INVALID_ARGUMENT


def test_instance_rules_take_instance_metrics() -> None:
    rule = check_rule({**BASE, "metric": "rss", "value": 1e9, "instance": "shop/*"})
    assert rule.per_instance and rule.matches("n1", "shop/web") and not rule.matches("n1", "x/y")


def test_condition_must_hold_for_the_whole_debounce() -> None:
    rule = Rule("hot", "cpu", ">", 90, for_seconds=10)
    watch, change = step(None, rule, 95, 100.0)
    assert change is None and watch is not None and watch.since == 100.0
    watch, change = step(watch, rule, 50, 105.0)  # dips: the clock starts again
    assert watch is None and change is None
    watch, _ = step(None, rule, 91, 106.0)
    watch, change = step(watch, rule, 99, 115.9)
    assert change is None
    watch, change = step(watch, rule, 97, 116.0)
    assert change == "fire" and watch is not None and watch.since == 106.0
    watch.event_id = 1
    watch, change = step(watch, rule, 93, 117.0)
    assert change is None and watch is not None
    assert (watch.min, watch.max, watch.samples) == (91, 99, 4)
    assert watch.avg == pytest.approx((91 + 99 + 97 + 93) / 4)
    watch, change = step(watch, rule, 10, 118.0)
    assert watch is None and change == "resolve"


def test_zero_debounce_fires_on_the_first_sample_and_every_op_works() -> None:
    for op, value, holds in (
        (">=", 5, True),
        ("<", 5, False),
        ("<=", 5, True),
        ("==", 5, True),
        ("!=", 5, False),
    ):
        rule = Rule("r", "cpu", op, 5)
        _watch, change = step(None, rule, value, 1.0)
        assert (change == "fire") is holds, op


def test_values_come_from_the_shared_metric_names() -> None:
    sample = {
        "cpu_percent": 12.5,
        "mem_percent": 40,
        "load1": 0.5,
        "disks": [{"percent": 20}, {"percent": 93.5}],
        "net_rx_bps": 10,
        "instances": {"shop/web": {"cpu_percent": 3, "rss_bytes": 1000, "threads": 4}},
    }
    assert node_values(sample) == {
        "cpu": 12.5,
        "mem": 40.0,
        "load1": 0.5,
        "disk": 93.5,
        "net_rx": 10.0,
    }
    assert instance_values(sample) == {"shop/web": {"cpu": 3.0, "rss": 1000.0, "threads": 4.0}}


def test_snapshot_selects_targets_by_glob_and_scope() -> None:
    snap = Snapshot(
        nodes={"web-1": {"cpu": 95.0}, "db-1": {"cpu": 99.0}},
        instances={("web-1", "shop/web"): {"rss": 5.0}},
        online={"web-1": 1.0, "db-1": 0.0, "new": None},
        failed={("web-1", "shop/web"): 1.0},
    )
    assert snap.values(Rule("r", "cpu", ">", 90, node_glob="web-*")) == {"web-1": 95.0}
    assert snap.values(Rule("r", "rss", ">", 1, instance_glob="shop/*")) == {"shop/web@web-1": 5.0}
    assert snap.values(Rule("r", "online", "==", 0)) == {"web-1": 1.0, "db-1": 0.0, "new": None}
    assert snap.values(Rule("r", "failed", "==", 1, instance_glob="*")) == {"shop/web@web-1": 1.0}


def test_hook_command_environment_describes_the_event() -> None:
    env = command_env({"rule": "hot", "target": "n1", "state": "firing", "value": 95.0})
    assert env["GDOS_ALERT_RULE"] == "hot" and env["GDOS_ALERT_STATE"] == "firing"
    assert env["GDOS_ALERT_VALUE"] == "95.0" and env["GDOS_ALERT_SEVERITY"] == ""


def test_a_refused_webhook_is_tried_three_times_with_backoff() -> None:
    pauses: list[float] = []
    url = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens there
    assert post_webhook(url, {"rule": "hot"}, sleep=pauses.append) is False
    assert pauses == [1.0, 2.0]


def test_events_open_close_and_survive_a_restart_through_the_alert_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "gdos.db")
    cpu = {"n1": 95.0}
    online = {"n1": 1.0}

    def source(now: float) -> Snapshot:
        return Snapshot({n: {"cpu": v} for n, v in cpu.items()}, {}, online, {})

    alerts = Alerts(store, source, HookRunner())
    alerts.add_rule({"name": "hot", "metric": "cpu", "op": ">", "value": 90})
    alerts.evaluate(now=100.0)
    [event] = alerts.events(active=True)
    assert (event["rule"], event["target"], event["last_value"]) == ("hot", "n1", 95.0)
    assert AlertStore(store.db).active_by_severity() == {"warning": 1}
    assert tasks_by_status(store.db) == {}

    again = Alerts(store, source, HookRunner())  # a daemon restart: built-ins once, event goes on
    assert [r["name"] for r in again.rules_view()] == [
        "disk-full",
        "instance-failed",
        "node-offline",
        "hot",
    ]
    cpu["n1"] = 50.0
    again.evaluate(now=101.0)
    [closed] = again.events()
    assert closed["id"] == event["id"] and not closed["active"]
    assert (closed["min"], closed["max"], closed["samples"]) == (95.0, 95.0, 1)  # while it held
    assert "resolved" in closed["message"]
    assert AlertStore(store.db).active_by_severity() == {}
    again.remove_rule("hot")
    assert "hot" not in {r["name"] for r in AlertStore(store.db).rules()}
    store.close()
