"""The service manifest: ``service.json`` at the root of a package.

A manifest says how to run, probe, restart and stop one service. It is
validated once, at the edge (``gdos push``, module overrides), and every
problem is reported together so an operator fixes the file in one pass.
After validation the dict form (``Manifest.to_dict()``) always has every
field, with defaults filled in, so the daemon, agents and supervisor never
guess a default of their own.

``Manifest`` and its parts are plain dataclasses; building one directly skips
validation, so code that takes input from outside goes through
``parse_manifest`` or ``Manifest.from_dict``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gdos.errors import ErrorCode, GdosError
from gdos.names import NAME_PATTERN

MAX_MANIFEST_BYTES = 64 * 1024
VERSION_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}\Z")
ENV_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
DRIVE_PATTERN = re.compile(r"^[A-Za-z]:")
OS_NAMES = ("linux", "windows", "darwin")
# Machine names as platform.machine() reports them, and the usual aliases.
ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}
ARCH_NAMES = ("x86_64", "aarch64", "armv7l", "i686", "ppc64le", "s390x", "riscv64", *ARCH_ALIASES)
PID_STRATEGIES = ("spawn", "match")
RESTART_POLICIES = ("no", "on-failure", "always")
PROBE_TYPES = ("none", "tcp", "http")
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL")
OVERRIDABLE = ("args", "env", "probe")

NAME_RULE = "1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"


# -- problems -----------------------------------------------------------------------


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field; ``field`` is a dotted path (``probe.port``)."""

    field: str
    problem: str
    allowed: str | None = None

    def line(self) -> str:
        where = f"service.json: {self.field}: " if self.field else "service.json: "
        tail = f"; allowed: {self.allowed}" if self.allowed else ""
        return f"{where}{self.problem}{tail}"


class ManifestError(GdosError):
    """A refused manifest; ``problems`` lists everything wrong, not just the first."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = list(problems)
        count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        lines = "\n".join(p.line() for p in problems)
        super().__init__(
            ErrorCode.MANIFEST_INVALID,
            f"service.json has {count}; fix it and build the package again:\n{lines}",
        )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- paths ----------------------------------------------------------------------------


def check_relative_path(path: str) -> str | None:
    """Return why ``path`` is not a safe relative posix path inside a package, or None.

    Refused: empty, NUL, backslashes (a separator on Windows), absolute
    (``/x``, ``C:x``), any ``..`` component, and names that are only ``.``.
    """
    if not isinstance(path, str):
        return "must be a string"
    if not path:
        return "must not be empty"
    if "\x00" in path:
        return "must not contain a NUL character"
    if "\\" in path:
        return "must use '/' as separator, not '\\'"
    if path.startswith("/"):
        return "must be relative to the package root, not absolute"
    if DRIVE_PATTERN.match(path):
        return "must be relative to the package root, not start with a drive letter"
    parts = path.split("/")
    if ".." in parts:
        return "must not contain a '..' component"
    if not normalize_relative_path(path):
        return "must name a file, not the package root"
    return None


def normalize_relative_path(path: str) -> str:
    """``./a//b/`` -> ``a/b``: drop empty and ``.`` components (call after checking)."""
    return "/".join(p for p in path.split("/") if p not in ("", "."))


# -- field checkers: (value, field path, problems) -> cleaned value ------------------

Check = Callable[[Any, str, list[FieldProblem]], Any]
REQUIRED = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(low: int, high: int) -> Check:
    def check(value: Any, path: str, out: list[FieldProblem]) -> Any:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            out.append(FieldProblem(path, f"must be an integer {low}-{high} (got {_show(value)})"))
        return value

    return check


def _seconds(high: float, *, zero_ok: bool = False) -> Check:
    low = "at least 0" if zero_ok else "more than 0"

    def check(value: Any, path: str, out: list[FieldProblem]) -> Any:
        in_range = _is_number(value) and (value >= 0 if zero_ok else value > 0) and value <= high
        if not in_range:
            out.append(
                FieldProblem(
                    path,
                    f"must be a number of seconds, {low} and at most {high:g} (got {_show(value)})",
                )
            )
        return value

    return check


def _choice(options: tuple[str, ...]) -> Check:
    def check(value: Any, path: str, out: list[FieldProblem]) -> Any:
        if not isinstance(value, str) or value not in options:
            out.append(
                FieldProblem(path, f"is not a known value (got {_show(value)})", ", ".join(options))
            )
        return value

    return check


def _text(*, max_len: int, nonempty: bool = False) -> Check:
    def check(value: Any, path: str, out: list[FieldProblem]) -> Any:
        if not isinstance(value, str):
            out.append(FieldProblem(path, f"must be a string (got {_show(value)})"))
        elif nonempty and not value:
            out.append(FieldProblem(path, "must not be empty (got '')"))
        elif len(value) > max_len:
            out.append(
                FieldProblem(
                    path, f"must be at most {max_len} characters (got {len(value)} characters)"
                )
            )
        elif "\x00" in value:
            out.append(FieldProblem(path, f"must not contain a NUL character (got {_show(value)})"))
        return value

    return check


def _pattern(regex: re.Pattern[str], what: str, rule: str) -> Check:
    def check(value: Any, path: str, out: list[FieldProblem]) -> Any:
        if not isinstance(value, str) or not regex.match(value):
            out.append(FieldProblem(path, f"is not a valid {what} (got {_show(value)})", rule))
        return value

    return check


def _optional(inner: Check) -> Check:
    def check(value: Any, path: str, out: list[FieldProblem]) -> Any:
        return None if value is None else inner(value, path, out)

    return check


def _package_path(value: Any, path: str, out: list[FieldProblem]) -> Any:
    problem = check_relative_path(value)
    if problem:
        out.append(
            FieldProblem(
                path, f"{problem} (got {_show(value)})", "a relative path like 'bin/run.sh'"
            )
        )
    return value


# Absolute log_paths must lie here: the agents' default --log-root. Anything
# else is a relative path inside the instance's package folder.
LOG_PATH_ROOTS = ("/var/log",)


def _log_path(value: Any, path: str, out: list[FieldProblem]) -> Any:
    """A log file an agent will serve: inside the package, or under a log root."""
    found = len(out)
    _text(max_len=4096, nonempty=True)(value, path, out)
    if len(out) > found:
        return value
    if not value.startswith("/"):
        return _package_path(value, path, out)
    rule = f"a relative path like 'logs/app.log', or an absolute one under {LOG_PATH_ROOTS[0]}"
    parts = value.split("/")
    if ".." in parts or "." in parts or "" in parts[1:]:
        out.append(
            FieldProblem(path, f"must be a plain absolute path, no '..' (got {_show(value)})", rule)
        )
    elif not any(value.startswith(root + "/") for root in LOG_PATH_ROOTS):
        roots = ", ".join(LOG_PATH_ROOTS)
        out.append(FieldProblem(path, f"must be under {roots} (got {_show(value)})", rule))
    return value


def _string_list(value: Any, path: str, out: list[FieldProblem]) -> Any:
    if not isinstance(value, list):
        out.append(FieldProblem(path, f"must be a list of strings (got {_show(value)})"))
        return []
    item = _text(max_len=1 << 16)
    for index, element in enumerate(value):
        item(element, f"{path}[{index}]", out)
    return list(value)


def _string_map(key_check: Check, value_check: Check) -> Check:

    def check(value: Any, path: str, out: list[FieldProblem]) -> Any:
        if not isinstance(value, dict):
            out.append(FieldProblem(path, f"must be an object of strings (got {_show(value)})"))
            return {}
        for key, item in value.items():
            where = f"{path}.{key}"
            key_check(key, where, out)
            value_check(item, where, out)
        return dict(value)

    return check


_ENV_KEY = _pattern(
    ENV_KEY_PATTERN, "variable name", "letters, digits and '_', not starting with a digit"
)
_LOG_LABEL = _pattern(NAME_PATTERN, "log label", NAME_RULE)


def _check_fields(
    data: Mapping[str, Any],
    table: Mapping[str, tuple[Any, Check]],
    prefix: str,
    out: list[FieldProblem],
) -> dict[str, Any]:
    """Check ``data`` against ``table``; unknown keys, missing required keys, defaults."""
    for key in data:
        if key not in table:
            out.append(FieldProblem(f"{prefix}{key}", "is not a known field", ", ".join(table)))
    cleaned: dict[str, Any] = {}
    for key, (default, check) in table.items():
        if key in data:
            cleaned[key] = check(data[key], f"{prefix}{key}", out)
        elif default is REQUIRED:
            out.append(FieldProblem(f"{prefix}{key}", "is required"))
            cleaned[key] = None
        else:
            cleaned[key] = copy.deepcopy(default)
    return cleaned


# -- probe and restart ------------------------------------------------------------------


def _http_url(value: Any, path: str, out: list[FieldProblem]) -> Any:
    ok = isinstance(value, str) and re.match(r"^https?://[^/\s?#]+", value) is not None
    if not ok or any(c.isspace() for c in value):
        out.append(
            FieldProblem(
                path, f"must be an http:// or https:// URL with a host (got {_show(value)})"
            )
        )
    return value


_PROBE_COMMON: dict[str, tuple[Any, Check]] = {
    "timeout": (2, _seconds(600)),
    "retries": (30, _integer(1, 10000)),
    "interval": (1, _seconds(3600, zero_ok=True)),
}
_PROBE_TABLES: dict[str, dict[str, tuple[Any, Check]]] = {
    "none": {"type": ("none", _choice(PROBE_TYPES))},
    "tcp": {
        "type": ("tcp", _choice(PROBE_TYPES)),
        "port": (REQUIRED, _integer(1, 65535)),
        "host": ("127.0.0.1", _text(max_len=255, nonempty=True)),
        **_PROBE_COMMON,
    },
    "http": {
        "type": ("http", _choice(PROBE_TYPES)),
        "url": (REQUIRED, _http_url),
        "status": (200, _integer(100, 599)),
        **_PROBE_COMMON,
    },
}
_RESTART_TABLE: dict[str, tuple[Any, Check]] = {
    "policy": ("on-failure", _choice(RESTART_POLICIES)),
    "max_retries": (5, _integer(0, 1000)),
    "backoff": (1.0, _seconds(3600)),
    "backoff_max": (30.0, _seconds(86400)),
    "window": (60.0, _seconds(86400)),
}


_PROBE_SHAPES = (
    '{"type": "none"}, {"type": "tcp", "port": N}, {"type": "http", "url": "http://..."}'
)


def _probe(value: Any, path: str, out: list[FieldProblem]) -> Any:
    if not isinstance(value, dict):
        out.append(FieldProblem(path, f"must be an object (got {_show(value)})", _PROBE_SHAPES))
        return {"type": "none"}
    kind = value.get("type")
    if kind not in PROBE_TYPES:
        out.append(
            FieldProblem(
                f"{path}.type", f"is not a probe type (got {_show(kind)})", ", ".join(PROBE_TYPES)
            )
        )
        return {"type": "none"}
    return _check_fields(value, _PROBE_TABLES[kind], f"{path}.", out)


def _restart(value: Any, path: str, out: list[FieldProblem]) -> Any:
    if not isinstance(value, dict):
        out.append(
            FieldProblem(path, f"must be an object (got {_show(value)})", ", ".join(_RESTART_TABLE))
        )
        return _check_fields({}, _RESTART_TABLE, f"{path}.", [])
    cleaned = _check_fields(value, _RESTART_TABLE, f"{path}.", out)
    low, high = cleaned["backoff"], cleaned["backoff_max"]
    if _is_number(low) and _is_number(high) and high < low:
        out.append(
            FieldProblem(
                f"{path}.backoff_max", f"must be at least restart.backoff (got {high} < {low})"
            )
        )
    return cleaned


# -- the manifest -------------------------------------------------------------------------

_FIELDS: dict[str, tuple[Any, Check]] = {
    "name": (REQUIRED, _pattern(NAME_PATTERN, "service name", NAME_RULE)),
    "version": (
        REQUIRED,
        _pattern(
            VERSION_PATTERN, "version", "1-64 of [0-9A-Za-z.+_-], starting with a letter or digit"
        ),
    ),
    "description": ("", _text(max_len=1000)),
    "os": ("linux", _choice(OS_NAMES)),
    "arch": (None, _optional(_choice(ARCH_NAMES))),
    "entrypoint": (REQUIRED, _package_path),
    "args": ([], _string_list),
    "env": ({}, _string_map(_ENV_KEY, _text(max_len=1 << 16))),
    "stop_entrypoint": (None, _optional(_package_path)),
    "stop_args": ([], _string_list),
    "log_paths": ({}, _string_map(_LOG_LABEL, _log_path)),
    "pid_strategy": ("spawn", _choice(PID_STRATEGIES)),
    "process_name": (None, _optional(_text(max_len=255, nonempty=True))),
    "match_timeout": (10, _seconds(600)),
    "probe": ({"type": "none"}, _probe),
    "restart": ({}, _restart),
    "stop_signal": ("SIGTERM", _choice(STOP_SIGNALS)),
    "stop_timeout": (10, _seconds(3600)),
}
FIELDS = tuple(_FIELDS)


@dataclass(frozen=True)
class Probe:
    """Readiness check; only the keys of ``type`` appear in ``to_dict()``."""

    type: str = "none"
    port: int | None = None
    host: str = "127.0.0.1"
    url: str | None = None
    status: int = 200
    timeout: float = 2
    retries: int = 30
    interval: float = 1

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _PROBE_TABLES[self.type]}


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff ``backoff * 2**n`` capped at ``backoff_max``; more than ``max_retries``
    restarts inside ``window`` seconds is flapping."""

    policy: str = "on-failure"
    max_retries: int = 5
    backoff: float = 1.0
    backoff_max: float = 30.0
    window: float = 60.0

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _RESTART_TABLE}


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    entrypoint: str
    description: str = ""
    os: str = "linux"
    arch: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    stop_entrypoint: str | None = None
    stop_args: list[str] = field(default_factory=list)
    log_paths: dict[str, str] = field(default_factory=dict)
    pid_strategy: str = "spawn"
    process_name: str | None = None
    match_timeout: float = 10
    probe: Probe = field(default_factory=Probe)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    stop_signal: str = "SIGTERM"
    stop_timeout: float = 10

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Validate ``data`` (ManifestError lists every problem) and build the manifest."""
        problems: list[FieldProblem] = []
        if not isinstance(data, Mapping):
            problems.append(
                FieldProblem(
                    "", f"must hold a JSON object at the top level (got {type(data).__name__})"
                )
            )
            raise ManifestError(problems)
        cleaned = _check_fields(data, _FIELDS, "", problems)
        if cleaned["pid_strategy"] == "match" and cleaned["process_name"] is None:
            problems.append(
                FieldProblem("process_name", "is required when pid_strategy is 'match'")
            )
        if problems:
            raise ManifestError(problems)
        cleaned["probe"] = Probe(**cleaned["probe"])
        cleaned["restart"] = RestartPolicy(**cleaned["restart"])
        return cls(**cleaned)

    def to_dict(self) -> dict[str, Any]:
        """Every field, in the spec's order, defaults filled; safe to mutate."""
        out: dict[str, Any] = {}
        for key in _FIELDS:
            value = getattr(self, key)
            out[key] = value.to_dict() if isinstance(value, Probe | RestartPolicy) else value
        return copy.deepcopy(out)


# -- entry points ---------------------------------------------------------------------


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _decode(raw: bytes | str, max_bytes: int) -> Any:
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ManifestError(
            [FieldProblem("", f"is too large ({size} bytes)", f"at most {max_bytes} bytes")]
        )
    text = raw
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            problem = f"is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})"
            raise ManifestError([FieldProblem("", problem, "UTF-8 encoded JSON")]) from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        problem = f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        raise ManifestError([FieldProblem("", problem)]) from None
    except _DuplicateKey as exc:
        problem = f"is not valid: key {exc.args[0]!r} appears twice in one object"
        raise ManifestError([FieldProblem("", problem)]) from None
    except RecursionError:
        raise ManifestError([FieldProblem("", "is nested too deeply")]) from None


def parse_manifest(
    raw: bytes | str | Mapping[str, Any], *, max_bytes: int = MAX_MANIFEST_BYTES
) -> Manifest:
    """Parse ``service.json`` content (bytes or text) or an already-decoded dict.

    Bytes must be UTF-8 (a BOM is tolerated) and at most ``max_bytes``; the
    document must be one JSON object. Raises ManifestError.
    """
    data = raw if isinstance(raw, Mapping) else _decode(raw, max_bytes)
    return Manifest.from_dict(data)


def apply_overrides(
    manifest_dict: Mapping[str, Any], overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The effective manifest of a module: ``args`` and ``probe`` replace, ``env`` merges.

    A None value (or no key) means "no override". The result is validated as a
    whole and returned in full ``to_dict()`` form; raises ManifestError.
    """
    overrides = overrides or {}
    problems: list[FieldProblem] = []
    merged = dict(manifest_dict)
    for key, value in overrides.items():
        if key not in OVERRIDABLE:
            problems.append(
                FieldProblem(f"overrides.{key}", "cannot be overridden", ", ".join(OVERRIDABLE))
            )
        elif value is not None:
            base_env = merged.get("env") or {}
            both_maps = key == "env" and isinstance(value, dict) and isinstance(base_env, dict)
            merged[key] = {**base_env, **value} if both_maps else copy.deepcopy(value)
    try:
        result = Manifest.from_dict(merged).to_dict()
    except ManifestError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ManifestError(problems)
    return result
