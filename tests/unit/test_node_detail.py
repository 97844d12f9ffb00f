"""A node's detail rows (``gdos.node_detail``), the one home of what ``gdos node show``
and the dashboard's ``d`` show: the rows themselves, and both views rendering them.

The rows are plain and unescaped; each view escapes them for its medium, so a
hostile string reaches the rows as it came and neither view as it came.
"""

from __future__ import annotations

from typing import Any

import pytest

from gdos.cli import node_cmd
from gdos.node_detail import node_rows
from tests.integration.test_node_data import EVIL
from tests.unit.test_output import invoke

NOW = 1_800_000_000.0


def when(ts: float) -> str:
    """A time formatter that shows what it was given, so a test can see which time is where."""
    return f"@{NOW - ts:.0f}s"


NODE: dict[str, Any] = {
    "name": "web-1",
    "online": True,
    "state": "maintenance",
    "state_reason": "kernel upgrade",
    "state_since": NOW - 300,
    "agent_version": "1.2.0",
    "address": "10.0.0.5:40000",
    "key": "ab:cd",
    "last_seen": NOW - 2,
    "connected_at": NOW - 600,
    "first_seen": NOW - 86400,
    "labels": {"rack": "r1", "zone": "a"},
    "cpu_percent": 12.5,  # node.list's summary: a copy, not shown twice
    "facts": {
        "hostname": "web-1.example",
        "os": "linux",
        "distro": "Debian GNU/Linux 12",
        "kernel": "6.1.0",
        "arch": "x86_64",
        "cpu_model": "Xeon",
        "cpu_cores": 4,
        "cpu_threads": 8,
        "cpu_max_mhz": 3000,
        "memory_total": 8 * 2**30,
        "swap_total": 2**30,
        "boot_time": NOW - 7200,
        "python": "3.12.1",
        "disks": [{"mount": "/", "device": "/dev/sda1", "fstype": "ext4", "total": 100 * 2**30}],
        "nics": [
            {
                "name": "eth0",
                "mac": "aa:bb:cc:dd:ee:ff",
                "ipv4": ["10.0.0.5"],
                "ipv6": ["fe80::1"],
                "speed_mbps": 1000,
            },
            {"name": "wg0", "speed_mbps": -1},  # -1: speed unknown
        ],
        "gpus": [
            {
                "name": "A100",
                "memory_total": 40 * 2**30,
                "driver": "535",
                "compute_capability": "8.0",
            }
        ],
    },
    "metrics": {
        "ts": NOW - 1,
        "cpu_percent": 12.5,
        "mem_percent": 40.0,
        "disks": [{"mount": "/", "percent": 70.0}, {"mount": "/data", "percent": 91.5}],
        "load1": 0.5,
        "load5": 0.25,
        "load15": 0.0,
        "net_rx_bps": 2048,
        "net_tx_bps": 512,
        "disk_read_bps": 3 * 2**20,
        "procs": 120,
        "uptime": 7200,
    },
}


def test_the_rows_of_a_node_in_order_with_units() -> None:
    assert node_rows(NODE, when) == [
        ("node", "web-1"),
        ("status", "online"),
        ("state", "maintenance"),
        ("reason", "kernel upgrade"),
        ("state since", "@300s"),
        ("agent", "1.2.0"),
        ("os", "linux  Debian GNU/Linux 12"),
        ("kernel", "6.1.0"),
        ("arch", "x86_64"),
        ("cpu model", "Xeon (4 cores, 8 threads, max 3000 MHz)"),
        ("memory", "8.0 GiB"),
        ("swap", "1.0 GiB"),
        ("address", "10.0.0.5:40000"),
        ("key", "ab:cd"),
        ("last seen", "@2s"),
        ("connected since", "@600s"),
        ("first seen", "@86400s"),
        ("booted", "@7200s"),
        ("hostname", "web-1.example"),
        ("python", "3.12.1"),
        ("filesystem", "/  /dev/sda1  ext4  100.0 GiB"),
        ("nic", "eth0  aa:bb:cc:dd:ee:ff  10.0.0.5, fe80::1  1000 Mb/s"),
        ("nic", "wg0"),
        ("gpu", "A100  40.0 GiB  driver 535  cc 8.0"),
        ("labels", "rack=r1, zone=a"),
        ("latest metrics", "@1s"),
        ("cpu", "12.5%"),
        ("mem", "40.0%"),
        ("disk", "91.5%"),  # the fullest mount, as the catalogue defines it
        ("load1", "0.50"),
        ("net_rx", "2.0 KiB/s"),
        ("net_tx", "512 B/s"),
        ("disk_read", "3.0 MiB/s"),
        ("disk_write", "-"),
        ("load5", "0.25"),
        ("load15", "0.00"),
        ("procs", "120"),
        ("uptime", "2.0h"),
    ]


def test_what_a_node_did_not_report_is_a_dash() -> None:
    rows = dict(node_rows({"name": "n9", "online": False, "state": "normal"}, when))
    for label in ("agent", "os", "kernel", "arch", "cpu model", "memory", "swap"):
        assert rows[label] == "-", label
    for label in ("address", "key", "last seen", "first seen"):
        assert rows[label] == "-", label
    assert rows["status"] == "offline" and rows["connected since"] == "- (offline)"
    assert rows["latest metrics"] == "none received yet"
    for label in ("reason", "state since", "booted", "labels", "filesystem", "nic", "gpu", "cpu"):
        assert label not in rows, label


def test_values_an_older_daemon_stored_unchecked_still_make_rows() -> None:
    node = {
        "name": "old",
        "online": True,
        "connected_at": "yesterday",
        "facts": {"memory_total": "abc", "cpu_cores": "x", "disks": "sda", "nics": [1, None]},
        "metrics": {"cpu_percent": "busy", "load5": "x", "uptime": "long"},
    }
    rows = node_rows(node, when)
    got = dict(rows)
    assert got["memory"] == "?" and got["cpu model"] == "- (x cores)"
    assert got["connected since"] == "yesterday"
    assert got["cpu"] == "-" and got["uptime"] == "?" and "load5" not in got
    assert not {"filesystem", "nic"} & {label for label, _ in rows}


def hostile() -> dict[str, Any]:
    facts = {**NODE["facts"], "hostname": "h" + EVIL, "kernel": "k" + EVIL}
    facts["disks"] = [{"mount": "/m" + EVIL, "total": 1}]
    return {**NODE, "state_reason": "r" + EVIL, "facts": facts, "weird" + EVIL: "w" + EVIL}


def test_hostile_text_reaches_the_rows_as_it_came() -> None:
    """Escaping is each view's job; the rows keep the node's bytes."""
    rows = dict(node_rows(hostile(), when))
    assert rows["hostname"] == "h" + EVIL and rows["kernel"] == "k" + EVIL
    assert rows["reason"] == "r" + EVIL and rows["filesystem"] == "/m" + EVIL + "  1 B"
    assert rows["weird" + EVIL] == "w" + EVIL  # an unknown field, its name a label


SHOWN_EVIL = "\\x1b]0;pwned\\x07\\x1b[2J[reverse]boom[/reverse]"


def test_gdos_node_show_renders_the_rows_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # Rich's width: whole lines, so the rows can be checked
    text = invoke(monkeypatch, node_cmd, {"node": hostile()}, "node", "show", "web-1")
    assert "\x1b" not in text and "\x07" not in text, repr(text)
    lines = text.splitlines()
    labels = [label for label, _ in node_rows(hostile(), when)]
    assert len(lines) == len(labels)
    for line, label in zip(lines, labels, strict=True):
        assert line.startswith(label.replace(EVIL, SHOWN_EVIL) + ":"), (line, label)
    assert "hostname:" in text and f"h{SHOWN_EVIL}" in text  # markup shown as text
    assert f"weird{SHOWN_EVIL}:" in text and f"w{SHOWN_EVIL}" in text


def test_the_dashboard_pane_renders_the_same_rows_escaped() -> None:
    from gdos.tui.details import node_detail

    text = node_detail(hostile(), NOW).plain
    assert "\x1b" not in text and "\x07" not in text, repr(text)
    lines = text.splitlines()
    rows = node_rows(hostile(), when)
    assert len(lines) == len(rows)
    for line, (label, _) in zip(lines, rows, strict=True):
        assert line.startswith(label.replace(EVIL, SHOWN_EVIL) + "  "), (line, label)
    assert f"h{SHOWN_EVIL}" in text and "(5m ago)" in text
