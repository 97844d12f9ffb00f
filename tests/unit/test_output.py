"""The CLI's one output layer: what every command's JSON, tables, details and errors
look like, and the rules (width, colour, terminal) they all follow.

Each test hands an :class:`Output` its own streams and environment, as httpie's
tests hand in an ``Environment``; the command tests pass it through Click's
``obj`` so the real command renders into it.
"""

from __future__ import annotations

import enum
import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gdos.cli import node_cmd
from gdos.cli.main import app
from gdos.cli.output import Output, dumps
from gdos.cli.tables import Column
from gdos.errors import ErrorCode, GdosError
from gdos.model import NodeState


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def captured(
    environ: dict[str, str] | None = None, tty: bool = False
) -> tuple[Output, io.StringIO]:
    stdout = Terminal() if tty else io.StringIO()
    return Output(stdout, io.StringIO(), environ=environ or {}), stdout


# -- JSON ----------------------------------------------------------------------


def test_one_encoder_for_values_json_lacks() -> None:
    class Colour(enum.Enum):
        RED = "red"

    data = {"z": b"caf\xc3\xa9 \xff", "a": NodeState.MAINTENANCE, "p": Path("/srv/x")}
    data |= {"s": {"b", "a"}, "e": Colour.RED}
    assert json.loads(dumps(data)) == {
        "z": "café \ufffd",
        "a": "maintenance",
        "p": "/srv/x",
        "s": ["a", "b"],
        "e": "red",
    }
    assert list(json.loads(dumps(data))) == ["z", "a", "p", "s", "e"]  # never sorted
    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_a_document_is_indented_and_a_line_is_one_line() -> None:
    out, stdout = captured()
    out.json({"a": [1]})
    out.json_lines([{"b": 2}, {"c": 3}])
    assert stdout.getvalue() == '{\n  "a": [\n    1\n  ]\n}\n{"b": 2}\n{"c": 3}\n'


# -- errors and plain text -------------------------------------------------------


def test_an_error_is_one_exact_line_on_stderr() -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    Output(stdout, stderr, environ={}).error(GdosError(ErrorCode.NO_TARGET, "name nodes."))
    assert stderr.getvalue() == "error[no_target]: name nodes.\n"
    assert stdout.getvalue() == ""


def test_details_line_up_their_labels() -> None:
    out, stdout = captured()
    out.fields([("mesh:", "tcp://x"), ("public key:", "-")], ["gdosd 1 running"])
    assert stdout.getvalue() == "gdosd 1 running\nmesh:       tcp://x\npublic key: -\n"


# -- the rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "tty", "colour"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"NO_COLOR": "1"}, True, False),
        ({"NO_COLOR": ""}, True, True),
        ({"TERM": "dumb"}, True, False),
        ({"FORCE_COLOR": "1"}, False, True),
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False, False),
        ({"FORCE_COLOR": ""}, True, False),
    ],
)
def test_colour_follows_one_rule(environ: dict[str, str], tty: bool, colour: bool) -> None:
    out, _ = captured(environ, tty)
    assert out.colour is colour
    assert (out.paint("n1 |", 36) != "n1 |") is colour


def test_width_is_columns_else_the_terminal_else_unlimited() -> None:
    assert captured({"COLUMNS": "77"})[0].width == 77
    assert captured({})[0].width is None
    assert captured({}, tty=True)[0].width


def test_a_narrow_table_drops_columns_by_priority_and_says_so() -> None:
    out, stdout = captured({"COLUMNS": "30"})
    columns = [Column("NAME"), Column("STATUS"), Column("ADDRESS", drop=1)]
    out.table(columns, [["web-1", "online", "10.0.0.1" * 3]])
    header, row, *note = stdout.getvalue().splitlines()
    assert header.split() == ["NAME", "STATUS"] and row.split() == ["web-1", "online"]
    assert " ".join(" ".join(note).split()).startswith("(ADDRESS hidden to fit 30 columns;")


# -- commands render through the Output they are given ---------------------------

NODE = {
    "name": "web-1",
    "online": True,
    "state": "maintenance",
    "state_reason": "disk swap",
    "cpu_percent": 12.5,
    "mem_percent": 40.0,
    "load1": 0.5,
    "disk_percent": 70.0,
    "uptime": 3600,
    "agent_version": "1.0",
    "last_seen": None,
}


def invoke(monkeypatch: pytest.MonkeyPatch, module: Any, reply: dict[str, Any], *args: str) -> str:
    monkeypatch.setattr(module, "request", lambda kind, **body: reply)
    out, stdout = captured({"COLUMNS": "200"})
    result = CliRunner().invoke(app, list(args), obj=out)
    assert result.exit_code == 0, result.output
    return stdout.getvalue()


def test_node_list_json_is_the_daemons_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    text = invoke(monkeypatch, node_cmd, {"nodes": [NODE]}, "node", "list", "--json")
    assert json.loads(text) == [NODE]


def test_node_list_table(monkeypatch: pytest.MonkeyPatch) -> None:
    text = invoke(monkeypatch, node_cmd, {"nodes": [NODE]}, "node", "list")
    header, row, footer = (line.split() for line in text.splitlines())
    assert header[:3] == ["NAME", "STATUS", "STATE"]
    assert row[:5] == ["web-1", "online", "maintenance", "(disk", "swap)"]
    assert footer == ["1", "online,", "0", "offline"]


def test_daemon_status_is_a_detail_view(monkeypatch: pytest.MonkeyPatch) -> None:
    import gdos.cli.common as common

    info = {
        "version": "1.0",
        "pid": 42,
        "started": None,
        "mesh": "tcp://0.0.0.0:7420",
        "insecure": False,
        "public_key": "abc",
        "online": 1,
        "nodes": 2,
    }
    text = invoke(monkeypatch, common, info, "daemon", "status")
    assert text.splitlines()[1:] == [
        "mesh:       tcp://0.0.0.0:7420",
        "public key: abc",
        "nodes:      1 online of 2",
    ]


def test_top_once_is_fitted_like_every_list() -> None:
    from gdos.cli.top_cmd import table

    rows = [{"key": "n1", "node": "n1", "online": False, "state": "normal", "cpu": 12.5}]
    columns, cells = table(rows, instances=False)
    piped, stdout = captured()
    piped.table(columns, cells)
    header, row = stdout.getvalue().splitlines()
    assert header.split() == [c.header for c in columns]  # piped: every metric, never cut
    assert row.split()[:3] == ["n1", "offline", "12.5%"]
    narrow, stdout = captured({"COLUMNS": "40"})
    narrow.table(columns, cells)
    assert "hidden to fit 40 columns" in stdout.getvalue()
    assert stdout.getvalue().split()[:3] == ["NODE", "STATUS", "CPU"]


def test_the_exec_summary_is_a_table_with_counts() -> None:
    from gdos.cli.exec_cmd import _summary

    hosts = [
        {"node": "n1", "status": "succeeded", "exit_code": 0, "started": 1, "ended": 2},
        {"node": "n2", "status": "failed", "exit_code": 2, "started": 1, "ended": 2},
    ]
    hosts[0]["reason"], hosts[1]["reason"] = None, "exited with code 2"
    out, stdout = captured()
    _summary(out, {"id": 7, "status": "failed", "hosts": hosts})
    lines = [line.split() for line in stdout.getvalue().splitlines()]
    assert lines[:3] == [
        [],
        ["task", "7:", "failed"],
        ["HOST", "STATUS", "EXIT", "DURATION", "REASON"],
    ]
    assert lines[3] == ["n1", "succeeded", "0", "1.00s"]
    assert lines[4] == ["n2", "failed", "2", "1.00s", "exited", "with", "code", "2"]
    assert lines[5] == ["1", "failed,", "1", "succeeded"]
