"""How a message kind is declared: once, as a typed body that carries its schema.

Each kind is one ``TypedDict`` decorated with ``@kind(name, link, way)``: the
class is the type handlers read the body as, and its annotations are the
schema ``gdos.wire.protocol`` checks every frame against. A field annotated
``Annotated[T, spec]`` is checked by that Spec (ranges, sizes, nested fields;
everything a node sends is declared so); a plain annotation (``str``,
``float | None``, ``list[Any]``) is checked by type alone, which only the
local, trusted control link uses. ``NotRequired[...]`` marks an optional field.
Modules that declare kinds do not use ``from __future__ import annotations``:
the annotations are read as evaluated, which keeps start-up cheap.

The kinds are grouped by link (``gdos/wire/mesh_kinds.py``: agent <-> daemon,
``gdos/wire/control_kinds.py``: client <-> daemon) and each says which way it
travels, so the sets of kinds each side may receive are generated, never
listed by hand.
"""

import types
from collections.abc import Callable
from enum import StrEnum
from typing import (
    Annotated,
    Any,
    ForwardRef,
    NamedTuple,
    NotRequired,
    TypedDict,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

from gdos.wire import node_data as nd
from gdos.wire.schema import Int, Opt, Record, Spec, Str

# Bulk bytes travel in chunks of CHUNK_BYTES; captured exec output is capped.
CHUNK_BYTES = 64 * 1024
OUTPUT_CAP_BYTES = 1024 * 1024


class Link(StrEnum):
    MESH = "mesh"  # agent <-> daemon (ZeroMQ, CURVE)
    CONTROL = "control"  # client <-> daemon (the local unix socket)
    BOTH = "both"  # replies


class Way(StrEnum):
    """Which way a kind travels: ``up`` towards the daemon (from an agent or a
    client), ``down`` from the daemon, ``both`` (replies, credit both ways)."""

    UP = "up"
    DOWN = "down"
    BOTH = "both"


# A field declared by a Spec, or (control link) by the Python types it may hold.
Declared = Spec | tuple[type, ...]


class Kind(NamedTuple):
    """One declared message kind (a NamedTuple: cheaper to define than a dataclass,
    and this module is imported by every gdos command)."""

    name: str
    link: Link
    way: Way
    body: type
    required: dict[str, Declared]
    optional: dict[str, Declared]

    def travels(self, link: Link, way: Way) -> bool:
        return self.link in (link, Link.BOTH) and self.way in (way, Way.BOTH)


DECLARED: dict[str, Kind] = {}
T = TypeVar("T")


def kind(name: str, link: Link, way: Way) -> Callable[[T], T]:
    """Declare the TypedDict below as the body of message kind ``name``."""

    def declare(body: T) -> T:
        if name in DECLARED:
            raise ValueError(f"message kind {name!r} is declared twice")
        assert isinstance(body, type)
        required, optional = fields_of(body)
        DECLARED[name] = Kind(name, link, way, body, required, optional)
        return body

    return declare


class Empty(TypedDict):
    """The body of a kind that declares no field."""


def empty(name: str, link: Link, way: Way) -> None:
    """Declare a kind whose body declares no field."""
    kind(name, link, way)(Empty)


def fields_of(body: type) -> tuple[dict[str, Declared], dict[str, Declared]]:
    """(required, optional) fields of a TypedDict, each as a Spec or a types tuple."""
    required: dict[str, Declared] = {}
    optional: dict[str, Declared] = {}
    # Read as evaluated at class creation (get_type_hints costs ~10 ms per start):
    # the modules that declare kinds do not use ``from __future__ import annotations``.
    for name, hint in body.__annotations__.items():
        if isinstance(hint, str | ForwardRef):
            raise TypeError(f"{body.__name__}.{name}: declare kinds with evaluated annotations")
        target = required
        if get_origin(hint) is NotRequired:
            hint, target = get_args(hint)[0], optional
        target[name] = _declared(hint)
    return required, optional


def record(body: type) -> Record:
    """The nested-map Spec of a TypedDict whose every field is declared by a Spec."""
    required, optional = fields_of(body)
    specs = {**required, **optional}
    if not all(isinstance(s, Spec) for s in specs.values()):
        raise TypeError(f"{body.__name__}: a record's fields must all be Specs")
    return Record(required=required, optional=optional)  # type: ignore[arg-type]


_PLAIN_TYPES: dict[Any, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    str: (str,),
    bool: (bool,),
    bytes: (bytes,),
    dict: (dict,),
    list: (list,),
    type(None): (type(None),),
}


def _declared(hint: Any) -> Declared:
    if get_origin(hint) is Annotated:
        spec = hint.__metadata__[0]
        if not isinstance(spec, Spec):
            raise TypeError(f"Annotated field metadata must be a Spec, not {spec!r}")
        return spec
    if get_origin(hint) in (Union, types.UnionType):
        return tuple(t for arm in get_args(hint) for t in _plain(arm))
    return _plain(hint)


def _plain(hint: Any) -> tuple[type, ...]:
    found = _PLAIN_TYPES.get(get_origin(hint) or hint)
    if found is None:
        raise TypeError(f"field type {hint!r} needs Annotated[..., spec]")
    return found


# Field types shared by both links' declarations.
SEQ = Int(0, 2**63 - 1)
ID = Int(0, 2**63 - 1)
CREDIT = Int(0, 2**31 - 1)
OUT_STREAM = Str(16, frozenset({"stdout", "stderr"}))
Id = Annotated[int, ID]
Seq = Annotated[int, SEQ]
Credit = Annotated[int, CREDIT]
Code = Annotated[str, nd.CODE]
OptCode = Annotated[str | None, Opt(nd.CODE)]
OptErrorText = Annotated[str | None, Opt(nd.ERROR_TEXT)]


# -- replies ------------------------------------------------------------------------------

empty("ok", Link.CONTROL, Way.DOWN)  # a request's answer; its fields depend on the request


@kind("error", Link.BOTH, Way.BOTH)
class Error(TypedDict):
    code: Code
    message: Annotated[str, Str(64 * 1024)]


@kind("reply.part", Link.CONTROL, Way.DOWN)  # gdos/wire/replies.py
class ReplyPart(TypedDict):
    data: bytes
    more: bool
