"""The field checks of service.json: each turns (value, field path) into problems.

A check appends every problem it finds to ``out`` and returns the cleaned
value, so a manifest is checked in one pass and the operator sees all that
is wrong at once. ``check_fields`` applies a table of (default, check) per
key; the tables themselves live with the manifest (gdos/pkg/manifest.py).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DRIVE_PATTERN = re.compile(r"^[A-Za-z]:")


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


def show(value: Any) -> str:
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


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def integer(low: int, high: int) -> Check:
    def check(value: Any, path: str, out: list[FieldProblem]) -> Any:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            out.append(FieldProblem(path, f"must be an integer {low}-{high} (got {show(value)})"))
        return value

    return check


def seconds(high: float, *, zero_ok: bool = False) -> Check:
    low = "at least 0" if zero_ok else "more than 0"

    def check(value: Any, path: str, out: list[FieldProblem]) -> Any:
        in_range = is_number(value) and (value >= 0 if zero_ok else value > 0) and value <= high
        if not in_range:
            out.append(
                FieldProblem(
                    path,
                    f"must be a number of seconds, {low} and at most {high:g} (got {show(value)})",
                )
            )
        return value

    return check


def choice(options: tuple[str, ...]) -> Check:
    def check(value: Any, path: str, out: list[FieldProblem]) -> Any:
        if not isinstance(value, str) or value not in options:
            out.append(
                FieldProblem(path, f"is not a known value (got {show(value)})", ", ".join(options))
            )
        return value

    return check


def text(*, max_len: int, nonempty: bool = False) -> Check:
    def check(value: Any, path: str, out: list[FieldProblem]) -> Any:
        if not isinstance(value, str):
            out.append(FieldProblem(path, f"must be a string (got {show(value)})"))
        elif nonempty and not value:
            out.append(FieldProblem(path, "must not be empty (got '')"))
        elif len(value) > max_len:
            out.append(
                FieldProblem(
                    path, f"must be at most {max_len} characters (got {len(value)} characters)"
                )
            )
        elif "\x00" in value:
            out.append(FieldProblem(path, f"must not contain a NUL character (got {show(value)})"))
        return value

    return check


def pattern(regex: re.Pattern[str], what: str, rule: str) -> Check:
    def check(value: Any, path: str, out: list[FieldProblem]) -> Any:
        if not isinstance(value, str) or not regex.match(value):
            out.append(FieldProblem(path, f"is not a valid {what} (got {show(value)})", rule))
        return value

    return check


def optional(inner: Check) -> Check:
    def check(value: Any, path: str, out: list[FieldProblem]) -> Any:
        return None if value is None else inner(value, path, out)

    return check


def package_path(value: Any, path: str, out: list[FieldProblem]) -> Any:
    problem = check_relative_path(value)
    if problem:
        out.append(
            FieldProblem(
                path, f"{problem} (got {show(value)})", "a relative path like 'bin/run.sh'"
            )
        )
    return value


# Absolute log_paths must lie here: the agents' default --log-root. Anything
# else is a relative path inside the instance's package folder.
LOG_PATH_ROOTS = ("/var/log",)


def log_path(value: Any, path: str, out: list[FieldProblem]) -> Any:
    """A log file an agent will serve: inside the package, or under a log root."""
    found = len(out)
    text(max_len=4096, nonempty=True)(value, path, out)
    if len(out) > found:
        return value
    if not value.startswith("/"):
        return package_path(value, path, out)
    rule = f"a relative path like 'logs/app.log', or an absolute one under {LOG_PATH_ROOTS[0]}"
    parts = value.split("/")
    if ".." in parts or "." in parts or "" in parts[1:]:
        out.append(
            FieldProblem(path, f"must be a plain absolute path, no '..' (got {show(value)})", rule)
        )
    elif not any(value.startswith(root + "/") for root in LOG_PATH_ROOTS):
        roots = ", ".join(LOG_PATH_ROOTS)
        out.append(FieldProblem(path, f"must be under {roots} (got {show(value)})", rule))
    return value


def string_list(value: Any, path: str, out: list[FieldProblem]) -> Any:
    if not isinstance(value, list):
        out.append(FieldProblem(path, f"must be a list of strings (got {show(value)})"))
        return []
    item = text(max_len=1 << 16)
    for index, element in enumerate(value):
        item(element, f"{path}[{index}]", out)
    return list(value)


def string_map(key_check: Check, value_check: Check) -> Check:

    def check(value: Any, path: str, out: list[FieldProblem]) -> Any:
        if not isinstance(value, dict):
            out.append(FieldProblem(path, f"must be an object of strings (got {show(value)})"))
            return {}
        for key, item in value.items():
            where = f"{path}.{key}"
            key_check(key, where, out)
            value_check(item, where, out)
        return dict(value)

    return check


def check_fields(
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


def http_url(value: Any, path: str, out: list[FieldProblem]) -> Any:
    ok = isinstance(value, str) and re.match(r"^https?://[^/\s?#]+", value) is not None
    if not ok or any(c.isspace() for c in value):
        out.append(
            FieldProblem(
                path, f"must be an http:// or https:// URL with a host (got {show(value)})"
            )
        )
    return value
