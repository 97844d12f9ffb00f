"""The ``gdos`` command without a daemon: clear errors, documented exit codes.

Most checks run the real program in a subprocess with ``GDOS_HOME`` pointing
at an empty folder, the situation of an operator who has not started the
daemon yet. The argument splitting of ``gdos exec`` is checked in-process
with Typer's runner and a stand-in for the client.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gdos import __version__
from gdos.cli import common, exec_cmd
from gdos.cli.main import app
from gdos.cli.output import Output
from gdos.cli.tables import Column
from gdos.errors import ExitCode


@pytest.fixture
def home() -> Iterator[Path]:
    """An empty GDOS_HOME, short enough for a unix socket path."""
    path = Path(tempfile.mkdtemp(prefix="gt-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def gdos(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_GDOS_", "COMP_"))}
    return subprocess.run(
        [sys.executable, "-m", "gdos.cli.main", *args],
        env={**env, "GDOS_HOME": str(home)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_refused(result: subprocess.CompletedProcess[str], exit_code: int, code: str) -> None:
    assert result.returncode == exit_code, (result.stdout, result.stderr)
    assert result.stderr.startswith(f"error[{code}]: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# -- no daemon ----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["node", "list"],
        ["node", "show", "web-1"],
        ["exec", "--all", "--", "true"],
        ["task", "list"],
        ["key", "list"],
        ["token", "list"],
        ["daemon", "status"],
    ],
    ids=" ".join,
)
def test_commands_say_how_to_start_the_daemon(args: list[str], home: Path) -> None:
    result = gdos(home, *args)
    assert_refused(result, ExitCode.DAEMON_UNAVAILABLE, "daemon_unavailable")
    assert "gdos daemon start" in result.stderr
    assert result.stdout == ""


def test_daemon_stop_with_none_running(home: Path) -> None:
    result = gdos(home, "daemon", "stop")
    assert_refused(result, ExitCode.DAEMON_UNAVAILABLE, "daemon_unavailable")


def test_version(home: Path) -> None:
    result = gdos(home, "--version")
    assert result.returncode == 0
    assert result.stdout == f"gdos {__version__}\n"


def test_help_lists_the_command_groups(home: Path) -> None:
    result = gdos(home, "--help")
    assert result.returncode == 0
    for group in ("daemon", "agent", "node", "key", "token", "task", "exec"):
        assert group in result.stdout


# -- bad arguments are refused before any daemon is asked ------------------------


def test_exec_without_a_command_after_dashdash(home: Path) -> None:
    result = gdos(home, "exec", "--all", "--")
    assert_refused(result, ExitCode.USAGE, "invalid_argument")
    assert "after '--'" in result.stderr


def test_exec_without_dashdash(home: Path) -> None:
    assert_refused(gdos(home, "exec", "--all"), ExitCode.USAGE, "invalid_argument")


def test_exec_without_targets(home: Path) -> None:
    assert_refused(gdos(home, "exec", "--", "true"), ExitCode.NOT_FOUND, "no_target")


def test_exec_with_options_but_no_targets(home: Path) -> None:
    result = gdos(home, "exec", "--shell", "--", "true")
    assert_refused(result, ExitCode.NOT_FOUND, "no_target")


def test_exec_refuses_a_malformed_env(home: Path) -> None:
    result = gdos(home, "exec", "--all", "--env", "NOEQUALS", "--", "true")
    assert_refused(result, ExitCode.USAGE, "invalid_argument")


def test_exec_refuses_a_malformed_timeout(home: Path) -> None:
    result = gdos(home, "exec", "--all", "--timeout", "soon", "--", "true")
    assert_refused(result, ExitCode.USAGE, "invalid_argument")


def test_token_create_refuses_a_malformed_ttl(home: Path) -> None:
    result = gdos(home, "token", "create", "--ttl", "banana")
    assert_refused(result, ExitCode.USAGE, "invalid_argument")
    assert "banana" in result.stderr


@pytest.mark.parametrize(
    ("args", "said", "hint"),
    [
        (["node", "list", "--bogus"], "--bogus", "gdos node list -h"),
        (["nodee"], "nodee", "gdos -h"),
        (["node", "show"], "'name'", "gdos node show -h"),
        (["task", "list", "--limit", "many"], "many", "gdos task list -h"),
    ],
    ids=["unknown-option", "unknown-command", "missing-argument", "bad-value"],
)
def test_parser_errors_keep_the_error_contract(
    args: list[str], said: str, hint: str, home: Path
) -> None:
    """Click's own usage errors print one `error[usage]` line with a hint, exit 2."""
    result = gdos(home, *args)
    assert_refused(result, ExitCode.USAGE, "usage")
    assert said in result.stderr and f"'{hint}'" in result.stderr
    assert "Usage:" not in result.stderr and result.stderr.count("\n") == 1


def test_a_bare_group_still_shows_its_help(home: Path) -> None:
    result = gdos(home, "node")
    assert "list" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


# -- gdos exec: what reaches the daemon -------------------------------------------


class RecordingClient:
    """Stands in for the client: records the exec request, then stops."""

    class Sent(Exception):
        pass

    def __init__(self) -> None:
        self.kind = ""
        self.body: dict[str, Any] = {}

    async def stream(self, kind: str, **body: Any) -> Any:
        self.kind, self.body = kind, body
        raise self.Sent


def exec_request(monkeypatch: pytest.MonkeyPatch, *args: str) -> dict[str, Any]:
    """The body ``gdos exec ARGS`` would send to the daemon."""
    calls: list[Any] = []

    def fake_run(call: Any) -> int:
        calls.append(call)
        return 0

    monkeypatch.setattr(common, "run", fake_run)
    result = CliRunner().invoke(app, ["exec", *args])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    client = RecordingClient()
    with pytest.raises(RecordingClient.Sent):
        asyncio.run(calls[0](client))
    assert client.kind == "exec.start"
    return client.body


def test_exec_passes_the_command_after_dashdash_verbatim(monkeypatch: pytest.MonkeyPatch) -> None:
    body = exec_request(monkeypatch, "web-1", "web-2", "--", "ls", "-la", "--all", "-h")
    assert body["argv"] == ["ls", "-la", "--all", "-h"]
    assert body["targets"] == ["web-1", "web-2"]
    assert body["all"] is False


def test_exec_keeps_a_second_dashdash_in_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    body = exec_request(monkeypatch, "--all", "--", "grep", "--", "-x", "file")
    assert body["argv"] == ["grep", "--", "-x", "file"]
    assert body["all"] is True
    assert body["targets"] == []


def test_exec_options_before_dashdash_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    body = exec_request(
        monkeypatch,
        "--match",
        "web-*",
        "-t",
        "5m",
        "-e",
        "A=1",
        "--env",
        "B=x=y",
        "--shell",
        "--cwd",
        "/srv",
        "--include-drained",
        "--",
        "echo $A",
    )
    assert body == {
        "argv": ["echo $A"],
        "targets": [],
        "all": False,
        "match": "web-*",
        "timeout": 300.0,
        "shell": True,
        "env": {"A": "1", "B": "x=y"},
        "cwd": "/srv",
        "user": None,
        "allow_drained": True,
        "follow": True,
    }


def test_exec_exits_with_the_code_of_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "run", lambda call: ExitCode.EXEC_TIMED_OUT)
    result = CliRunner().invoke(app, ["exec", "--all", "--", "sleep", "9"])
    assert result.exit_code == ExitCode.EXEC_TIMED_OUT


def test_command_after_dashdash_is_not_parsed_as_options() -> None:
    """Without the split, '-la' would be an unknown option of gdos exec."""
    result = CliRunner().invoke(app, ["exec", "--all", "--bogus", "--", "true"])
    assert result.exit_code == ExitCode.USAGE
    assert "--bogus" in result.output


# -- exit codes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ([], 0),
        (["succeeded"], 0),
        (["succeeded", "succeeded"], 0),
        (["succeeded", "failed"], 5),
        (["failed", "timed_out"], 7),
        (["timed_out", "failed", "succeeded"], 7),
        (["failed", "unreachable"], 6),
        (["timed_out", "unreachable"], 6),
        (["unreachable", "canceled"], 130),
        (["succeeded", "failed", "timed_out", "unreachable", "canceled"], 130),
        (["canceled"], 130),
    ],
)
def test_exit_code_precedence(statuses: list[str], code: int) -> None:
    assert exec_cmd.exit_code_for(statuses) == code


def test_exit_codes_match_the_documented_ones() -> None:
    assert exec_cmd.exit_code_for(["canceled"]) == ExitCode.CANCELED
    assert exec_cmd.exit_code_for(["unreachable"]) == ExitCode.EXEC_UNREACHABLE
    assert exec_cmd.exit_code_for(["timed_out"]) == ExitCode.EXEC_TIMED_OUT
    assert exec_cmd.exit_code_for(["failed"]) == ExitCode.EXEC_FAILED


class Terminal(io.StringIO):
    """A captured stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_host_prefixes_are_never_red_or_green() -> None:
    """Red and green mean failed and succeeded; a host name must not look like either."""
    import re

    printer = exec_cmd._Printer(Output(Terminal(), environ={}))
    colours = {re.match(r"\x1b\[(\d+)m", printer.prefix(f"n{i}")) for i in range(30)}
    codes = {int(m.group(1)) for m in colours if m}
    assert len(codes) >= 6
    assert not codes & {31, 32, 91, 92}, codes


# -- durations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("1.5s", 1.5), ("15m", 900), ("1h", 3600), ("2d", 172800)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert common.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "banana", "-5s", "1w", "5 m", "1h30m", "s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(typer.Exit) as info:
        common.parse_duration(text)
    assert info.value.exit_code == ExitCode.USAGE


def test_output_never_turns_colon_codes_into_emoji() -> None:
    """A key fingerprint holds ``:ab:``: Rich would print it as an emoji."""
    buffer = io.StringIO()
    out = Output(buffer, environ={})
    out.markup("3f:ab:cd:ok:")
    out.table([Column("FINGERPRINT")], [["3f:ab:cd"]])
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    assert lines == ["3f:ab:cd:ok:", "FINGERPRINT", "3f:ab:cd"]


def test_agent_run_passes_a_daemon_key_that_begins_with_a_dash(tmp_path: Path) -> None:
    """z85 keys may begin with '-': `gdos agent run` hands options to the agent
    it re-executes as FLAG=VALUE, so such a key is not read as an option.
    (A restarted agent once died with 'argument --daemon-key: expected one argument'.)"""
    from tests.waiting import free_port, wait_for

    log = tmp_path / "agent.out"
    key = "-" + "a" * 39  # the shape of a z85 public key; the address has no daemon
    argv = [sys.executable, "-P", "-m", "gdos.cli.main", "agent", "run", "--name", "x"]
    argv += ["--daemon", f"tcp://127.0.0.1:{free_port()}", "--daemon-key", key]
    argv += ["--state-dir", str(tmp_path / "state")]
    env = {**os.environ, "GDOS_HOME": str(tmp_path / "home")}
    with open(log, "wb") as out:
        agent = subprocess.Popen(argv, env=env, stdout=out, stderr=out, start_new_session=True)
    try:
        wait_for(lambda: "dialling" in log.read_text() or agent.poll() is not None, 30)
        assert agent.poll() is None, log.read_text()
        assert "expected one argument" not in log.read_text()
    finally:
        agent.kill()
        agent.wait()
