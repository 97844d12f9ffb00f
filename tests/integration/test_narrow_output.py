"""List commands at 80 columns and piped: columns dropped by priority, nothing cut,
values with their units.

``COLUMNS=80`` makes the CLI fit 80 columns although the test reads a pipe; without
it, piped output is never fitted (scripts get every column and character).
"""

from __future__ import annotations

import re

import pytest

from gdos.metric_catalog import find_metric
from tests.harness import Fleet, wait_for
from tests.integration.services_kit import ok

SCIENTIFIC = re.compile(r"\d\.?\d*e[+-]\d")


@pytest.fixture
def n1(fleet: Fleet) -> Fleet:
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")
    return fleet


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _narrow(fleet: Fleet, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    try:
        out = ok(fleet.gdos(*args))
    finally:
        monkeypatch.delenv("COLUMNS")
    assert "…" not in out, out
    assert all(len(line) <= 80 for line in _lines(out)), out
    return out


def test_alert_list_keeps_severity_message_and_units(
    n1: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(n1.gdos("alert", "rule", "add", "traffic", "--metric", "net_rx", "--op", ">",
               "--value", "-1", "--severity", "critical"))  # fmt: skip
    event = wait_for(
        lambda: next((e for e in n1.gdos_json("alert", "list") if e["rule"] == "traffic"), None),
        20,
        "the traffic alert firing",
    )
    rule = ok(n1.gdos("alert", "rule", "list"))
    assert "net_rx > -1 B/s" in rule and not SCIENTIFIC.search(rule)

    narrow = _narrow(n1, monkeypatch, "alert", "list")
    assert "critical" in narrow and "firing" in narrow
    assert "net_rx > -1 B/s on n1 (now " in re.sub(r"\s+", " ", narrow)  # maybe wrapped
    assert not SCIENTIFIC.search(narrow), narrow

    piped = ok(n1.gdos("alert", "list"))
    assert "MIN/AVG/MAX" in piped and "STARTED" in piped and "B/s" in piped
    assert not SCIENTIFIC.search(piped), piped
    # "now" is the latest value, not the one at firing time
    wait_for(lambda: n1.gdos_json("alert", "list")[0]["samples"] > event["samples"], 20, "more")
    latest = next(e for e in n1.gdos_json("alert", "list") if e["rule"] == "traffic")
    now = find_metric("net_rx", None).format(latest["last_value"])
    assert latest["message"].endswith(f"(now {now})"), latest


def test_metrics_shows_every_figure_whole(n1: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    wait_for(lambda: "samples" in ok(n1.gdos("metrics", "n1")), 20, "metrics")
    wait_for(lambda: n1.gdos_json("metrics", "n1")["series"][0]["samples"] >= 2, 20, "two samples")
    narrow = _narrow(n1, monkeypatch, "metrics", "n1")
    header = next(line for line in _lines(narrow) if "METRIC" in line)
    assert all(word in header for word in ("MIN", "AVG", "MAX", "LAST", "HISTORY"))
    net = next(line for line in _lines(narrow) if line.startswith("net_rx"))
    assert re.search(r"B/s\s*$", net), net


def test_node_list_and_backup_paths_are_never_cut(
    n1: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(n1.gdos("node", "drain", "n1", "--reason", "moving racks this afternoon"))
    narrow = _narrow(n1, monkeypatch, "node", "list")
    assert "maintenance (moving racks this afternoon)" in narrow and "online" in narrow
    assert "hidden to fit 80 columns" in narrow
    piped = ok(n1.gdos("node", "list"))
    assert "LAST SEEN" in piped and "moving racks this afternoon" in piped

    made = n1.gdos_json("backup", "create")["path"]
    narrow = _narrow(n1, monkeypatch, "backup", "list")
    assert made in narrow.replace("\n", "").replace(" ", ""), narrow  # wrapped, not cut
    assert made in ok(n1.gdos("backup", "list"))


def test_key_and_token_lists_keep_fingerprints_and_statuses_whole(
    n1: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = n1.gdos_json("key", "list")[0]
    monkeypatch.setenv("COLUMNS", "60")
    try:
        keys, tokens = ok(n1.gdos("key", "list")), ok(n1.gdos("token", "list"))
    finally:
        monkeypatch.delenv("COLUMNS")
    assert "…" not in keys + tokens, keys + tokens
    assert key["fingerprint"] in keys and "accepted" in keys, keys
    assert "hidden to fit 60 columns" in keys, keys  # VIA, ADDRESS, SEEN go first
    assert "EXPIRES IN" in tokens and "USES LEFT" in tokens, tokens
