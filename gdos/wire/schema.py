"""Declarative, nested value schemas for protocol bodies.

A node is trusted to speak for itself only: every value it sends is checked
here, at the mesh edge, before anything stores or shows it. One schema object
per field says its type, its range (integers that SQLite can hold, finite
floats), its size (string and byte lengths, list and map counts) and, for
maps, the fields inside. Each message kind's typed body (gdos/wire/kinds.py)
is declared with these, so the check, the limits and the documentation cannot
drift apart.

``check`` raises ``SchemaError`` naming the dotted path of the first bad value
(``sample.disks[2].total``), which the protocol turns into a counted
``bad_message`` refusal of the whole frame.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Room for "any plain value" an older or newer peer may add inside a map.
PLAIN_STR = 4096
PLAIN_ITEMS = 256
PLAIN_DEPTH = 4


class SchemaError(ValueError):
    """A value that does not fit its schema; ``path`` says where."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path, self.problem = path, problem


class Spec:
    """One value's schema. Subclasses check a value in place and never change it."""

    nullable = False

    def check(self, value: Any, path: str) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def example(self) -> Any:
        """A small value that fits (tests build every kind's bodies from these)."""
        raise NotImplementedError


def _kind(value: Any) -> str:
    return "nil" if value is None else type(value).__name__


@dataclass(frozen=True, slots=True)
class Int(Spec):
    """An integer (never a bool) in ``[lo, hi]``; the default range is SQLite's."""

    lo: int = INT64_MIN
    hi: int = INT64_MAX

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise SchemaError(path, f"must be {self.describe()}, not {_kind(value)}")
        if not self.lo <= value <= self.hi:
            raise SchemaError(path, f"must be between {self.lo} and {self.hi}")

    def describe(self) -> str:
        return "an integer"

    def example(self) -> Any:
        return max(self.lo, min(self.hi, 7))


@dataclass(frozen=True, slots=True)
class Num(Spec):
    """A finite int or float in ``[lo, hi]`` (NaN and infinities are refused)."""

    lo: float = -1e18
    hi: float = 1e18

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SchemaError(path, f"must be {self.describe()}, not {_kind(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise SchemaError(path, "must be a finite number")
        if not self.lo <= value <= self.hi:
            raise SchemaError(path, f"must be between {self.lo:g} and {self.hi:g}")

    def describe(self) -> str:
        return "a number"

    def example(self) -> Any:
        return max(self.lo, min(self.hi, 1.5))


@dataclass(frozen=True, slots=True)
class Str(Spec):
    """A string of at most ``max_len`` characters, optionally one of ``choices`` or
    matching ``pattern`` (a full match)."""

    max_len: int = PLAIN_STR
    choices: frozenset[str] | None = None
    pattern: re.Pattern[str] | None = None

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise SchemaError(path, f"must be {self.describe()}, not {_kind(value)}")
        if len(value) > self.max_len:
            raise SchemaError(path, f"is longer than {self.max_len} characters")
        if self.choices is not None and value not in self.choices:
            raise SchemaError(path, f"must be one of {', '.join(sorted(self.choices))}")
        if self.pattern is not None and not self.pattern.match(value):
            raise SchemaError(path, f"must match {self.pattern.pattern}")

    def describe(self) -> str:
        return "a string"

    def example(self) -> Any:
        return min(self.choices) if self.choices else "x/y" if self.pattern else "x"


@dataclass(frozen=True, slots=True)
class Bin(Spec):
    """Bytes (msgpack ``bin``) of at most ``max_len``."""

    max_len: int

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, bytes):
            raise SchemaError(path, f"must be {self.describe()}, not {_kind(value)}")
        if len(value) > self.max_len:
            raise SchemaError(path, f"is longer than {self.max_len} bytes")

    def describe(self) -> str:
        return "bytes"

    def example(self) -> Any:
        return b"\x00\xff\x80binary"[: self.max_len]


@dataclass(frozen=True, slots=True)
class Bool(Spec):
    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, bool):
            raise SchemaError(path, f"must be {self.describe()}, not {_kind(value)}")

    def describe(self) -> str:
        return "a boolean"

    def example(self) -> Any:
        return True


@dataclass(frozen=True, slots=True)
class Opt(Spec):
    """``inner`` or nil."""

    inner: Spec
    nullable = True

    def check(self, value: Any, path: str) -> None:
        if value is not None:
            self.inner.check(value, path)

    def describe(self) -> str:
        return f"{self.inner.describe()} or nil"

    def example(self) -> Any:
        return self.inner.example()


@dataclass(frozen=True, slots=True)
class ListOf(Spec):
    """A list of at most ``max_items`` values, each fitting ``item``."""

    item: Spec
    max_items: int

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise SchemaError(path, f"must be {self.describe()}, not {_kind(value)}")
        if len(value) > self.max_items:
            raise SchemaError(path, f"has more than {self.max_items} items")
        for i, item in enumerate(value):
            self.item.check(item, f"{path}[{i}]")

    def describe(self) -> str:
        return "a list"

    def example(self) -> Any:
        return [self.item.example()]


@dataclass(frozen=True, slots=True)
class MapOf(Spec):
    """A map of at most ``max_items`` entries, keys and values each fitting a schema."""

    key: Spec
    value: Spec
    max_items: int

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise SchemaError(path, f"must be {self.describe()}, not {_kind(value)}")
        if len(value) > self.max_items:
            raise SchemaError(path, f"has more than {self.max_items} entries")
        for k, v in value.items():
            self.key.check(k, f"{path} key")
            self.value.check(v, f"{path}[{k!r}]")

    def describe(self) -> str:
        return "a map"

    def example(self) -> Any:
        return {self.key.example(): self.value.example()}


@dataclass(frozen=True, slots=True)
class Plain(Spec):
    """Any msgpack value, bounded in depth, string/bytes length and counts.

    For the few places that carry free-form data, and for fields a newer peer
    adds to a map: accepted (so versions can differ) but never unbounded.
    """

    depth: int = PLAIN_DEPTH
    max_len: int = PLAIN_STR
    max_items: int = PLAIN_ITEMS

    def check(self, value: Any, path: str) -> None:
        self._check(value, path, self.depth)

    def _check(self, value: Any, path: str, depth: int) -> None:
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, int):
            Int().check(value, path)
        elif isinstance(value, float):
            Num().check(value, path)
        elif isinstance(value, str | bytes):
            if len(value) > self.max_len:
                raise SchemaError(path, f"is longer than {self.max_len}")
        elif isinstance(value, list | dict):
            if depth <= 0:
                raise SchemaError(path, "is nested too deeply")
            if len(value) > self.max_items:
                raise SchemaError(path, f"has more than {self.max_items} items")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                if isinstance(value, dict):
                    self._check(k, f"{path} key", 0)
                self._check(v, f"{path}[{k!r}]", depth - 1)
        else:
            raise SchemaError(path, f"has an unsupported type {_kind(value)}")

    def describe(self) -> str:
        return "a plain value"

    def example(self) -> Any:
        return {"nested": [1, "two", b"\x03"]}


PLAIN = Plain()


@dataclass(frozen=True)
class Record(Spec):
    """A map with named fields; other fields are allowed (newer peers) but bounded.

    ``extra`` checks every field not named; ``max_extra`` caps how many there are.
    """

    required: Mapping[str, Spec] = field(default_factory=dict)
    optional: Mapping[str, Spec] = field(default_factory=dict)
    extra: Spec = PLAIN
    max_extra: int = 32

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise SchemaError(path, f"must be {self.describe()}, not {_kind(value)}")
        check_fields(value, self.required, self.optional, path, self.extra, self.max_extra)

    def describe(self) -> str:
        return "a map"

    def example(self) -> Any:
        return {name: spec.example() for name, spec in {**self.required, **self.optional}.items()}


def check_fields(
    body: Mapping[str, Any],
    required: Mapping[str, Spec],
    optional: Mapping[str, Spec],
    prefix: str = "",
    extra: Spec | None = PLAIN,
    max_extra: int = 32,
) -> None:
    """Check a map's named fields, then bound the ones nobody declared.

    ``extra=None`` leaves undeclared fields unchecked (bodies of the local,
    trusted control link, whose replies nest freely).
    """
    dot = f"{prefix}." if prefix else ""
    for name, spec in required.items():
        if name not in body:
            raise SchemaError(f"{dot}{name}", "is missing")
        spec.check(body[name], f"{dot}{name}")
    unknown = 0
    for name, value in body.items():
        declared = optional.get(name) if isinstance(name, str) else None
        if declared is not None:
            declared.check(value, f"{dot}{name}")
        elif extra is not None and name not in required:
            unknown += 1
            if unknown > max_extra:
                raise SchemaError(prefix or "body", f"has more than {max_extra} unknown fields")
            Str(64).check(name, f"{dot}<field name>")
            extra.check(value, f"{dot}{name}")


def legacy(types: tuple[type, ...]) -> Spec:
    """The schema for a field declared as a tuple of Python types (control kinds)."""
    return _Types(types)


@dataclass(frozen=True, slots=True)
class _Types(Spec):
    """A top-level field declared by types only: type check, int64 ints, finite floats."""

    types: tuple[type, ...]

    def check(self, value: Any, path: str) -> None:
        ok = isinstance(value, self.types) and not (
            isinstance(value, bool) and bool not in self.types
        )
        if not ok:
            raise SchemaError(path, f"must be {self.describe()}, not {_kind(value)}")
        if isinstance(value, int) and not isinstance(value, bool):
            Int().check(value, path)
        elif isinstance(value, float) and not math.isfinite(value):
            raise SchemaError(path, "must be a finite number")

    def describe(self) -> str:
        return " or ".join("nil" if t is type(None) else t.__name__ for t in self.types)

    def example(self) -> Any:
        return _TYPE_EXAMPLES[self.types[0]]


_TYPE_EXAMPLES: dict[type, Any] = {
    int: 7,
    float: 1.5,
    str: "x",
    bool: True,
    bytes: b"\x00\xff\x80binary",
    dict: {"nested": [1, "two", b"\x03"]},
    list: ["a", 1, b"\x04"],
    type(None): None,
}
