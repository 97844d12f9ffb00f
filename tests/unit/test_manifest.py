"""service.json: every field refused by name, all problems at once, defaults, overrides."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gdos.errors import ErrorCode
from gdos.pkg.manifest import (
    FieldProblem,
    Manifest,
    ManifestError,
    Probe,
    RestartPolicy,
    apply_overrides,
    check_relative_path,
    parse_manifest,
)

BASE: dict[str, Any] = {"name": "web", "version": "1.2.0", "entrypoint": "bin/run.sh"}
DELETE = object()

FULL_DEFAULTS: dict[str, Any] = {
    "name": "web",
    "version": "1.2.0",
    "description": "",
    "os": "linux",
    "arch": None,
    "entrypoint": "bin/run.sh",
    "args": [],
    "env": {},
    "stop_entrypoint": None,
    "stop_args": [],
    "log_paths": {},
    "pid_strategy": "spawn",
    "process_name": None,
    "match_timeout": 10,
    "probe": {"type": "none"},
    "restart": {
        "policy": "on-failure",
        "max_retries": 5,
        "backoff": 1.0,
        "backoff_max": 30.0,
        "window": 60.0,
    },
    "stop_signal": "SIGTERM",
    "stop_timeout": 10,
}


def manifest_with(**changes: Any) -> dict[str, Any]:
    data = dict(BASE)
    for key, value in changes.items():
        if value is DELETE:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def refuse(raw: Any) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(raw)
    assert caught.value.code == ErrorCode.MANIFEST_INVALID
    return caught.value


TCP = {"type": "tcp", "port": 8080}
HTTP = {"type": "http", "url": "http://127.0.0.1:8080/health"}

# (case id, changes to BASE, the field the one problem must name)
INVALID_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("missing name", {"name": DELETE}, "name"),
    ("missing version", {"version": DELETE}, "version"),
    ("missing entrypoint", {"entrypoint": DELETE}, "entrypoint"),
    ("bad name", {"name": "-web"}, "name"),
    ("name with slash", {"name": "a/b"}, "name"),
    ("name not a string", {"name": 7}, "name"),
    ("bad version space", {"version": "1 2"}, "version"),
    ("empty version", {"version": ""}, "version"),
    ("version too long", {"version": "1" * 65}, "version"),
    ("version starts with dot", {"version": ".1"}, "version"),
    ("description too long", {"description": "x" * 1001}, "description"),
    ("description not a string", {"description": 5}, "description"),
    ("bad os", {"os": "plan9"}, "os"),
    ("bad arch", {"arch": "pdp11"}, "arch"),
    ("os wrong case", {"os": "Linux"}, "os"),
    ("absolute entrypoint", {"entrypoint": "/bin/sh"}, "entrypoint"),
    ("dotdot entrypoint", {"entrypoint": "../run.sh"}, "entrypoint"),
    ("inner dotdot entrypoint", {"entrypoint": "bin/../../run.sh"}, "entrypoint"),
    ("backslash entrypoint", {"entrypoint": "bin\\run.exe"}, "entrypoint"),
    ("drive letter entrypoint", {"entrypoint": "C:/run.exe"}, "entrypoint"),
    ("NUL entrypoint", {"entrypoint": "run\x00.sh"}, "entrypoint"),
    ("empty entrypoint", {"entrypoint": ""}, "entrypoint"),
    ("root entrypoint", {"entrypoint": "./"}, "entrypoint"),
    ("entrypoint not a string", {"entrypoint": ["run.sh"]}, "entrypoint"),
    ("args not a list", {"args": "--port 80"}, "args"),
    ("args element not a string", {"args": ["--port", 80]}, "args[1]"),
    ("args element null", {"args": [None]}, "args[0]"),
    ("args element NUL", {"args": ["a\x00b"]}, "args[0]"),
    ("env not an object", {"env": ["A=1"]}, "env"),
    ("env key starts with digit", {"env": {"1FOO": "x"}}, "env.1FOO"),
    ("env key with dash", {"env": {"MY-VAR": "x"}}, "env.MY-VAR"),
    ("env empty key", {"env": {"": "x"}}, "env."),
    ("env value not a string", {"env": {"PORT": 8080}}, "env.PORT"),
    ("env value null", {"env": {"PORT": None}}, "env.PORT"),
    ("stop_entrypoint absolute", {"stop_entrypoint": "/bin/kill"}, "stop_entrypoint"),
    ("stop_entrypoint dotdot", {"stop_entrypoint": "../stop"}, "stop_entrypoint"),
    ("stop_args not a list", {"stop_args": "now"}, "stop_args"),
    ("stop_args element", {"stop_args": [1]}, "stop_args[0]"),
    ("log_paths not an object", {"log_paths": ["/var/log/x"]}, "log_paths"),
    ("bad log label", {"log_paths": {"my log": "app.log"}}, "log_paths.my log"),
    ("log label leading dash", {"log_paths": {"-app": "app.log"}}, "log_paths.-app"),
    ("log path empty", {"log_paths": {"app": ""}}, "log_paths.app"),
    ("log path not a string", {"log_paths": {"app": 1}}, "log_paths.app"),
    ("log path NUL", {"log_paths": {"app": "a\x00"}}, "log_paths.app"),
    ("log path dotdot", {"log_paths": {"app": "logs/../../etc/shadow"}}, "log_paths.app"),
    ("log path abs dotdot", {"log_paths": {"app": "/var/log/../../etc/shadow"}}, "log_paths.app"),
    ("log path abs outside", {"log_paths": {"app": "/etc/shadow"}}, "log_paths.app"),
    ("log path abs root itself", {"log_paths": {"app": "/var/log"}}, "log_paths.app"),
    ("log path abs lookalike", {"log_paths": {"app": "/var/logs/app.log"}}, "log_paths.app"),
    ("log path backslash", {"log_paths": {"app": "..\\x"}}, "log_paths.app"),
    ("pid_strategy bad", {"pid_strategy": "guess"}, "pid_strategy"),
    ("match without process_name", {"pid_strategy": "match"}, "process_name"),
    ("process_name empty", {"process_name": ""}, "process_name"),
    ("process_name not a string", {"process_name": 5}, "process_name"),
    ("match_timeout zero", {"match_timeout": 0}, "match_timeout"),
    ("match_timeout too long", {"match_timeout": 601}, "match_timeout"),
    ("match_timeout bool", {"match_timeout": True}, "match_timeout"),
    ("match_timeout string", {"match_timeout": "10"}, "match_timeout"),
    ("probe not an object", {"probe": "tcp"}, "probe"),
    ("probe bad type", {"probe": {"type": "udp"}}, "probe.type"),
    ("probe without type", {"probe": {"port": 80}}, "probe.type"),
    ("tcp probe without port", {"probe": {"type": "tcp"}}, "probe.port"),
    ("tcp probe port zero", {"probe": {**TCP, "port": 0}}, "probe.port"),
    ("tcp probe port too high", {"probe": {**TCP, "port": 65536}}, "probe.port"),
    ("tcp probe port bool", {"probe": {**TCP, "port": True}}, "probe.port"),
    ("tcp probe port string", {"probe": {**TCP, "port": "80"}}, "probe.port"),
    ("tcp probe port float", {"probe": {**TCP, "port": 80.0}}, "probe.port"),
    ("tcp probe empty host", {"probe": {**TCP, "host": ""}}, "probe.host"),
    ("tcp probe with url", {"probe": {**TCP, "url": "http://x"}}, "probe.url"),
    ("none probe with port", {"probe": {"type": "none", "port": 80}}, "probe.port"),
    ("http probe without url", {"probe": {"type": "http"}}, "probe.url"),
    ("http probe bad scheme", {"probe": {**HTTP, "url": "ftp://host/x"}}, "probe.url"),
    ("http probe no host", {"probe": {**HTTP, "url": "http://"}}, "probe.url"),
    ("http probe url with space", {"probe": {**HTTP, "url": "http://a b/"}}, "probe.url"),
    ("http probe url not a string", {"probe": {**HTTP, "url": 5}}, "probe.url"),
    ("http probe status", {"probe": {**HTTP, "status": 99}}, "probe.status"),
    ("http probe status bool", {"probe": {**HTTP, "status": True}}, "probe.status"),
    ("http probe with port", {"probe": {**HTTP, "port": 80}}, "probe.port"),
    ("probe timeout zero", {"probe": {**TCP, "timeout": 0}}, "probe.timeout"),
    ("probe retries zero", {"probe": {**TCP, "retries": 0}}, "probe.retries"),
    ("probe retries too many", {"probe": {**HTTP, "retries": 10001}}, "probe.retries"),
    ("probe interval negative", {"probe": {**TCP, "interval": -1}}, "probe.interval"),
    ("restart not an object", {"restart": "always"}, "restart"),
    ("restart policy bad", {"restart": {"policy": "sometimes"}}, "restart.policy"),
    ("restart max_retries negative", {"restart": {"max_retries": -1}}, "restart.max_retries"),
    ("restart max_retries bool", {"restart": {"max_retries": False}}, "restart.max_retries"),
    ("restart backoff zero", {"restart": {"backoff": 0}}, "restart.backoff"),
    ("restart window zero", {"restart": {"window": 0}}, "restart.window"),
    (
        "restart backoff_max below backoff",
        {"restart": {"backoff": 10, "backoff_max": 5}},
        "restart.backoff_max",
    ),
    ("restart unknown key", {"restart": {"retries": 3}}, "restart.retries"),
    ("stop_signal unknown", {"stop_signal": "SIGSTOP"}, "stop_signal"),
    ("stop_signal without SIG", {"stop_signal": "TERM"}, "stop_signal"),
    ("stop_signal number", {"stop_signal": 15}, "stop_signal"),
    ("stop_timeout zero", {"stop_timeout": 0}, "stop_timeout"),
    ("stop_timeout negative", {"stop_timeout": -5}, "stop_timeout"),
    ("stop_timeout too long", {"stop_timeout": 3601}, "stop_timeout"),
    ("stop_timeout bool", {"stop_timeout": True}, "stop_timeout"),
    ("stop_timeout NaN", {"stop_timeout": float("nan")}, "stop_timeout"),
    ("unknown top-level field", {"entry_point": "run.sh"}, "entry_point"),
]


@pytest.mark.parametrize(
    ("changes", "field"),
    [pytest.param(changes, field, id=case) for case, changes, field in INVALID_FIELDS],
)
def test_invalid_field_is_refused_by_name(changes: dict[str, Any], field: str) -> None:
    error = refuse(manifest_with(**changes))
    assert [p.field for p in error.problems] == [field]
    assert f"service.json: {field}: " in error.message


@pytest.mark.parametrize(
    ("changes", "field"),
    [pytest.param(changes, field, id=case) for case, changes, field in INVALID_FIELDS],
)
def test_invalid_field_is_refused_from_json_bytes_too(changes: dict[str, Any], field: str) -> None:
    error = refuse(json.dumps(manifest_with(**changes)).encode())
    assert [p.field for p in error.problems] == [field]


def test_problem_line_has_got_and_allowed() -> None:
    error = refuse(manifest_with(probe={**TCP, "port": "x"}, os="plan9"))
    lines = error.message.splitlines()
    assert "service.json: probe.port: must be an integer 1-65535 (got 'x')" in lines
    assert (
        "service.json: os: is not a known value (got 'plan9'); allowed: linux, windows, darwin"
        in (lines)
    )


def test_field_problem_line_without_field_or_allowed() -> None:
    assert FieldProblem("", "is empty").line() == "service.json: is empty"
    assert FieldProblem("a", "b", "c").line() == "service.json: a: b; allowed: c"


def test_unknown_field_lists_allowed_fields() -> None:
    error = refuse(manifest_with(entry_point="run.sh"))
    (problem,) = error.problems
    assert problem.allowed is not None
    assert "entrypoint" in problem.allowed and "stop_timeout" in problem.allowed


def test_unknown_probe_field_lists_that_probe_type_fields() -> None:
    (problem,) = refuse(manifest_with(probe={**TCP, "path": "/"})).problems
    assert problem.field == "probe.path"
    assert problem.allowed == "type, port, host, timeout, retries, interval"


def test_missing_entrypoint_problem_says_required() -> None:
    (problem,) = refuse(manifest_with(entrypoint=DELETE)).problems
    assert problem.problem == "is required"


def test_all_problems_are_reported_together() -> None:
    error = refuse(
        {
            "name": "-bad",
            "entrypoint": "/abs",
            "args": ["ok", 3],
            "env": {"9X": "v"},
            "probe": {"type": "tcp", "port": True},
            "stop_signal": "SIGSTOP",
            "colour": "blue",
        }
    )
    fields = [p.field for p in error.problems]
    expected = ["colour", "name", "version", "entrypoint", "args[1]", "env.9X"]
    expected += ["probe.port", "stop_signal"]
    assert sorted(fields) == sorted(expected)
    assert error.message.startswith("service.json has 8 problems;")
    lines = error.message.splitlines()[1:]
    assert len(lines) == 8
    assert all(line.startswith("service.json: ") for line in lines)


def test_single_problem_header_is_singular() -> None:
    assert refuse(manifest_with(os="beos")).message.startswith("service.json has 1 problem;")


# -- whole-file problems -----------------------------------------------------------------


def test_invalid_json_says_line_and_column() -> None:
    error = refuse(b'{"name": "web",\n  "version": }')
    (problem,) = error.problems
    assert problem.field == ""
    assert "is not valid JSON" in error.message
    assert "line 2, column 14" in error.message


def test_empty_file_is_invalid_json() -> None:
    assert "line 1, column 1" in refuse(b"").message


def test_non_utf8_is_refused() -> None:
    error = refuse(b'{"name": "caf\xe9"}')
    assert "not UTF-8" in error.message
    assert "0xe9" in error.message


def test_utf8_bom_is_tolerated() -> None:
    raw = b"\xef\xbb\xbf" + json.dumps(BASE).encode()
    assert parse_manifest(raw).name == "web"


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"web"', b"null", b"42", b"true"])
def test_not_an_object_is_refused(raw: bytes) -> None:
    assert "JSON object" in refuse(raw).message


def test_from_dict_refuses_a_non_mapping() -> None:
    with pytest.raises(ManifestError, match="JSON object"):
        Manifest.from_dict([("name", "web")])  # type: ignore[arg-type]


def test_oversize_is_refused_before_parsing() -> None:
    raw = json.dumps({**BASE, "description": "x" * (70 * 1024)}).encode()
    error = refuse(raw)
    assert "too large" in error.message and "65536" in error.message


def test_oversize_limit_is_adjustable() -> None:
    raw = json.dumps(BASE).encode()
    with pytest.raises(ManifestError, match="too large"):
        parse_manifest(raw, max_bytes=10)


def test_oversize_text_counts_utf8_bytes() -> None:
    text = json.dumps({**BASE, "description": "é" * 40000}, ensure_ascii=False)
    assert len(text) < 64 * 1024 < len(text.encode())
    assert "too large" in refuse(text).message


def test_duplicate_key_is_refused() -> None:
    error = refuse(b'{"name": "web", "name": "api", "version": "1", "entrypoint": "x"}')
    assert "'name' appears twice" in error.message


def test_deep_nesting_is_refused() -> None:
    assert "nested too deeply" in refuse(b"[" * 60000).message


def test_text_input_is_parsed() -> None:
    assert parse_manifest(json.dumps(BASE)).to_dict() == FULL_DEFAULTS


# -- defaults, round trip ----------------------------------------------------------------


def test_defaults_are_filled_in() -> None:
    assert parse_manifest(json.dumps(BASE).encode()).to_dict() == FULL_DEFAULTS


def test_to_dict_keys_follow_the_spec_order() -> None:
    assert list(parse_manifest(BASE).to_dict()) == list(FULL_DEFAULTS)


def test_tcp_probe_defaults() -> None:
    probe = parse_manifest(manifest_with(probe=TCP)).to_dict()["probe"]
    assert probe == {
        "type": "tcp",
        "port": 8080,
        "host": "127.0.0.1",
        "timeout": 2,
        "retries": 30,
        "interval": 1,
    }


def test_http_probe_defaults() -> None:
    probe = parse_manifest(manifest_with(probe=HTTP)).to_dict()["probe"]
    assert probe == {**HTTP, "status": 200, "timeout": 2, "retries": 30, "interval": 1}


def test_partial_restart_gets_defaults() -> None:
    manifest = parse_manifest(manifest_with(restart={"policy": "always", "max_retries": 0}))
    assert manifest.restart == RestartPolicy(policy="always", max_retries=0)


def test_full_manifest_round_trips() -> None:
    data = {
        **FULL_DEFAULTS,
        "description": "the shop front",
        "os": "windows",
        "args": ["--port", "8080"],
        "env": {"PORT": "8080", "_X1": ""},
        "stop_entrypoint": "./bin/stop.sh",
        "stop_args": ["--now"],
        "log_paths": {"app": "logs/app.log", "access": "/var/log/web/access.log"},
        "pid_strategy": "match",
        "process_name": "web-server",
        "match_timeout": 2.5,
        "probe": {
            "type": "http",
            "url": "https://localhost:8443/health",
            "status": 204,
            "timeout": 0.5,
            "retries": 3,
            "interval": 0,
        },
        "restart": {
            "policy": "always",
            "max_retries": 0,
            "backoff": 0.25,
            "backoff_max": 0.25,
            "window": 10,
        },
        "stop_signal": "SIGINT",
        "stop_timeout": 3600,
    }
    manifest = Manifest.from_dict(data)
    assert manifest.to_dict() == data
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    assert manifest.probe == Probe(
        type="http",
        url="https://localhost:8443/health",
        status=204,
        timeout=0.5,
        retries=3,
        interval=0,
    )
    assert json.loads(json.dumps(manifest.to_dict())) == data


@pytest.mark.parametrize("signal", ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGKILL"])
def test_every_allowed_stop_signal(signal: str) -> None:
    assert parse_manifest(manifest_with(stop_signal=signal)).stop_signal == signal


@pytest.mark.parametrize("version", ["1", "1.2.3", "2024.01.02", "1.0.0-rc.1+build_5", "v2"])
def test_good_versions(version: str) -> None:
    assert parse_manifest(manifest_with(version=version)).version == version


def test_to_dict_is_a_copy() -> None:
    manifest = parse_manifest(manifest_with(args=["a"], env={"A": "1"}))
    copy = manifest.to_dict()
    copy["args"].append("b")
    copy["env"]["B"] = "2"
    assert manifest.args == ["a"] and manifest.env == {"A": "1"}


def test_input_dict_is_not_mutated() -> None:
    data = manifest_with(probe={"type": "tcp", "port": 1})
    before = json.dumps(data)
    parse_manifest(data)
    assert json.dumps(data) == before


# -- overrides -------------------------------------------------------------------------


def base_dict() -> dict[str, Any]:
    return parse_manifest(
        manifest_with(args=["--a"], env={"A": "1", "B": "2"}, probe=TCP)
    ).to_dict()


def test_override_args_replace() -> None:
    result = apply_overrides(base_dict(), {"args": ["--b", "--c"]})
    assert result["args"] == ["--b", "--c"]


def test_override_env_merges() -> None:
    result = apply_overrides(base_dict(), {"env": {"B": "x", "C": "3"}})
    assert result["env"] == {"A": "1", "B": "x", "C": "3"}


def test_override_probe_replaces_and_gets_defaults() -> None:
    result = apply_overrides(base_dict(), {"probe": {"type": "http", "url": "http://h/x"}})
    assert result["probe"] == {
        "type": "http",
        "url": "http://h/x",
        "status": 200,
        "timeout": 2,
        "retries": 30,
        "interval": 1,
    }


def test_no_overrides_gives_the_full_manifest() -> None:
    assert apply_overrides(BASE, None) == FULL_DEFAULTS
    assert apply_overrides(BASE, {}) == FULL_DEFAULTS
    assert apply_overrides(BASE, {"args": None, "env": None, "probe": None}) == FULL_DEFAULTS


def test_overrides_do_not_mutate_the_input() -> None:
    base = base_dict()
    before = json.dumps(base)
    apply_overrides(base, {"env": {"Z": "9"}, "args": []})
    assert json.dumps(base) == before


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"probe": {"type": "tcp", "port": 0}}, "probe.port"),
        ({"probe": "tcp"}, "probe"),
        ({"args": "--x"}, "args"),
        ({"args": [1]}, "args[0]"),
        ({"env": {"bad-key": "v"}}, "env.bad-key"),
        ({"env": {"K": 1}}, "env.K"),
        ({"env": "A=1"}, "env"),
        ({"name": "other"}, "overrides.name"),
        ({"entrypoint": "/bin/sh"}, "overrides.entrypoint"),
    ],
)
def test_invalid_override_is_refused(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ManifestError) as caught:
        apply_overrides(base_dict(), overrides)
    assert [p.field for p in caught.value.problems] == [field]


def test_override_problems_and_manifest_problems_together() -> None:
    with pytest.raises(ManifestError) as caught:
        apply_overrides({"name": "x"}, {"os": "linux", "args": [2]})
    fields = {p.field for p in caught.value.problems}
    assert fields == {"overrides.os", "args[0]", "version", "entrypoint"}


# -- relative paths --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["run.sh", "bin/run.sh", "./bin/run.sh", "a//b", "a/./b", "..a"])
def test_good_relative_paths(path: str) -> None:
    assert check_relative_path(path) is None


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        ("a/..", "'..'"),
        ("C:/x", "drive letter"),
        ("c:x", "drive letter"),
        ("\\\\server\\share", "'/'"),
        ("a\\b", "'/'"),
        ("a\x00b", "NUL"),
        (".", "root"),
        ("./", "root"),
    ],
)
def test_bad_relative_paths(path: str, words: str) -> None:
    problem = check_relative_path(path)
    assert problem is not None and words in problem


def test_relative_path_must_be_a_string() -> None:
    assert check_relative_path(5) == "must be a string"  # type: ignore[arg-type]
