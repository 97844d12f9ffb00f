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
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from gdos.errors import ErrorCode, GdosError
from gdos.names import NAME_PATTERN
from gdos.pkg import manifest_checks as checks
from gdos.pkg.manifest_checks import (  # noqa: F401  (re-exported: importers use gdos.pkg.manifest)
    DRIVE_PATTERN,
    LOG_PATH_ROOTS,
    REQUIRED,
    Check,
    FieldProblem,
    check_relative_path,
    normalize_relative_path,
    show,
)

MANIFEST_NAME = "service.json"  # at the root of every package
MAX_MANIFEST_BYTES = 64 * 1024
VERSION_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}\Z")
ENV_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
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


# -- the typed manifest: its dataclass defaults are the only defaults ------------------


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
        cleaned = checks.check_fields(data, _FIELDS, "", problems)
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


def _defaults(cls: type) -> dict[str, Any]:
    """Each field's default (REQUIRED when it has none), read from the dataclass."""
    out: dict[str, Any] = {}
    for item in fields(cls):
        if item.default is not MISSING:
            out[item.name] = item.default
        elif item.default_factory is not MISSING:
            out[item.name] = item.default_factory()
        else:
            out[item.name] = REQUIRED
    return out


# -- the tables: (default, check) per key -----------------------------------------------

_P, _R, _M = _defaults(Probe), _defaults(RestartPolicy), _defaults(Manifest)
_PROBE_COMMON: dict[str, tuple[Any, Check]] = {
    "timeout": (_P["timeout"], checks.seconds(600)),
    "retries": (_P["retries"], checks.integer(1, 10000)),
    "interval": (_P["interval"], checks.seconds(3600, zero_ok=True)),
}
_PROBE_TABLES: dict[str, dict[str, tuple[Any, Check]]] = {
    "none": {"type": ("none", checks.choice(PROBE_TYPES))},
    "tcp": {
        "type": ("tcp", checks.choice(PROBE_TYPES)),
        "port": (REQUIRED, checks.integer(1, 65535)),
        "host": (_P["host"], checks.text(max_len=255, nonempty=True)),
        **_PROBE_COMMON,
    },
    "http": {
        "type": ("http", checks.choice(PROBE_TYPES)),
        "url": (REQUIRED, checks.http_url),
        "status": (_P["status"], checks.integer(100, 599)),
        **_PROBE_COMMON,
    },
}
_RESTART_TABLE: dict[str, tuple[Any, Check]] = {
    "policy": (_R["policy"], checks.choice(RESTART_POLICIES)),
    "max_retries": (_R["max_retries"], checks.integer(0, 1000)),
    "backoff": (_R["backoff"], checks.seconds(3600)),
    "backoff_max": (_R["backoff_max"], checks.seconds(86400)),
    "window": (_R["window"], checks.seconds(86400)),
}


_PROBE_SHAPES = (
    '{"type": "none"}, {"type": "tcp", "port": N}, {"type": "http", "url": "http://..."}'
)


def _probe(value: Any, path: str, out: list[FieldProblem]) -> Any:
    if not isinstance(value, dict):
        out.append(FieldProblem(path, f"must be an object (got {show(value)})", _PROBE_SHAPES))
        return {"type": "none"}
    kind = value.get("type")
    if kind not in PROBE_TYPES:
        out.append(
            FieldProblem(
                f"{path}.type", f"is not a probe type (got {show(kind)})", ", ".join(PROBE_TYPES)
            )
        )
        return {"type": "none"}
    return checks.check_fields(value, _PROBE_TABLES[kind], f"{path}.", out)


def _restart(value: Any, path: str, out: list[FieldProblem]) -> Any:
    if not isinstance(value, dict):
        out.append(
            FieldProblem(path, f"must be an object (got {show(value)})", ", ".join(_RESTART_TABLE))
        )
        return checks.check_fields({}, _RESTART_TABLE, f"{path}.", [])
    cleaned = checks.check_fields(value, _RESTART_TABLE, f"{path}.", out)
    low, high = cleaned["backoff"], cleaned["backoff_max"]
    if checks.is_number(low) and checks.is_number(high) and high < low:
        out.append(
            FieldProblem(
                f"{path}.backoff_max", f"must be at least restart.backoff (got {high} < {low})"
            )
        )
    return cleaned


_ENV_KEY = checks.pattern(
    ENV_KEY_PATTERN, "variable name", "letters, digits and '_', not starting with a digit"
)
_LOG_LABEL = checks.pattern(NAME_PATTERN, "log label", NAME_RULE)
_VERSION_RULE = "1-64 of [0-9A-Za-z.+_-], starting with a letter or digit"
_FIELDS: dict[str, tuple[Any, Check]] = {
    "name": (REQUIRED, checks.pattern(NAME_PATTERN, "service name", NAME_RULE)),
    "version": (REQUIRED, checks.pattern(VERSION_PATTERN, "version", _VERSION_RULE)),
    "description": (_M["description"], checks.text(max_len=1000)),
    "os": (_M["os"], checks.choice(OS_NAMES)),
    "arch": (_M["arch"], checks.optional(checks.choice(ARCH_NAMES))),
    "entrypoint": (REQUIRED, checks.package_path),
    "args": (_M["args"], checks.string_list),
    "env": (_M["env"], checks.string_map(_ENV_KEY, checks.text(max_len=1 << 16))),
    "stop_entrypoint": (_M["stop_entrypoint"], checks.optional(checks.package_path)),
    "stop_args": (_M["stop_args"], checks.string_list),
    "log_paths": (_M["log_paths"], checks.string_map(_LOG_LABEL, checks.log_path)),
    "pid_strategy": (_M["pid_strategy"], checks.choice(PID_STRATEGIES)),
    "process_name": (_M["process_name"], checks.optional(checks.text(max_len=255, nonempty=True))),
    "match_timeout": (_M["match_timeout"], checks.seconds(600)),
    "probe": ({"type": _P["type"]}, _probe),  # the parts' own tables fill in the rest
    "restart": ({}, _restart),
    "stop_signal": (_M["stop_signal"], checks.choice(STOP_SIGNALS)),
    "stop_timeout": (_M["stop_timeout"], checks.seconds(3600)),
}
FIELDS = tuple(_FIELDS)


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
