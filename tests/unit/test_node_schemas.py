"""Node-supplied values are checked against nested schemas (gdos/wire/schema.py,
gdos/wire/node_data.py).

A node may be compromised or buggy: wrong types, out-of-range integers,
NaN, oversized strings or lists anywhere inside a body refuse the frame with
``bad_message`` and a path saying where.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from gdos.agent.facts import collect_facts
from gdos.agent.metrics import MetricsSampler

from gdos.devtools.sim_agent import fake_facts, fake_sample
from gdos.errors import ErrorCode
from gdos.wire import protocol
from gdos.wire.protocol import ProtocolError, decode, encode

STATE = {"instance": "shop/web", "state": "running", "pid": 10, "started": 1.7e9, "restarts": 0}
RESULT = {"task": 1, "status": "succeeded", "started": 1.0, "ended": 2.0}


def refusal(kind: str, body: dict[str, Any]) -> str:
    raw = msgpack.packb({"v": protocol.VERSION, "k": kind, "b": body}, use_bin_type=True)
    with pytest.raises(ProtocolError) as info:
        decode(raw)
    assert info.value.code == ErrorCode.BAD_MESSAGE
    return info.value.message


def test_what_real_and_simulated_agents_send_fits() -> None:
    sampler = MetricsSampler()
    try:
        bodies = [
            ("hello", {"name": "n1", "version": "1", "facts": collect_facts("1")}),
            ("hello", {"name": "n1", "version": "1", "facts": fake_facts("n1", 3)}),
            ("metrics", {"sample": sampler.sample([])}),
            ("metrics", {"sample": fake_sample(10.0, 8)}),
        ]
    finally:
        sampler.close()
    for kind, body in bodies:
        assert decode(encode(kind, body)).body == body


@pytest.mark.parametrize(
    ("kind", "body", "where"),
    [
        ("svc.state", {"state": {**STATE, "started": "abc"}}, "state.started must be a number"),
        ("svc.state", {"state": {**STATE, "pid": 2**40}}, "state.pid must be between"),
        ("svc.state", {"state": {**STATE, "error": "e" * 20_000}}, "state.error is longer"),
        ("svc.state", {"state": {"state": "running"}}, "state.instance is missing"),
        ("svc.report", {"instances": [STATE, {**STATE, "restarts": -1}]}, "instances[1].restarts"),
        ("svc.done", {"op": 1, "ok": True, "state": {**STATE, "version": 5}}, "state.version"),
        ("metrics", {"sample": {"cpu_percent": "abc"}}, "sample.cpu_percent must be a number"),
        ("metrics", {"sample": {"cpu_percent": float("inf")}}, "must be a finite number"),
        ("metrics", {"sample": {"mem_percent": 1e9}}, "sample.mem_percent must be between"),
        ("metrics", {"sample": {"disks": [{"used": 2**64 - 1}]}}, "sample.disks[0].used"),
        ("metrics", {"sample": {"instances": {"a/b": {"rss_bytes": "x"}}}}, "rss_bytes"),
        ("metrics", {"sample": {"cpu_per_core": [1.0] * 10_000}}, "has more than"),
        ("hello", {"name": "n", "version": "1", "facts": {"nics": [{"ipv4": "1.2.3.4"}]}}, "ipv4"),
        ("hello", {"name": "n", "version": "v" * 100, "facts": {}}, "version is longer"),
        ("exec.result", {**RESULT, "exit_code": 2**63}, "exit_code must be between"),
        ("exec.result", {**RESULT, "ended": float("nan")}, "ended must be a finite number"),
        ("exec.output", {"task": 1, "stream": "tty", "seq": 1, "data": b""}, "stream must be one"),
        ("log.data", {"stream": 1, "seq": 1, "lines": ["text"]}, "lines[0] must be bytes"),
        ("pty.exit", {"session": 1, "exit_code": -(2**40)}, "exit_code"),
        ("pkg.fetch", {"fetch": 1, "sha256": "a", "offset": -1, "credit": 1}, "offset"),
    ],
)
def test_a_bad_nested_value_is_refused_with_its_path(
    kind: str, body: dict[str, Any], where: str
) -> None:
    assert where in refusal(kind, body)


def test_unknown_fields_are_allowed_but_bounded() -> None:
    facts = {"simulated": True, "future_field": {"deep": [1, 2]}}
    assert decode(encode("hello", {"name": "n", "version": "1", "facts": facts}))
    many = {f"f{i}": 1 for i in range(100)}
    assert "unknown fields" in refusal("hello", {"name": "n", "version": "1", "facts": many})
    huge = {"extra": "x" * 100_000}
    assert "facts.extra is longer" in refusal("hello", {"name": "n", "version": "1", "facts": huge})
    deep: Any = 1
    for _ in range(10):
        deep = [deep]
    assert "nested too deeply" in refusal("metrics", {"sample": {"x": deep}})


def test_control_integers_must_fit_sqlite_and_numbers_be_finite() -> None:
    assert "between" in refusal("task.show", {"id": 2**64 - 1})
    assert "finite" in refusal("exec.start", {"argv": ["true"], "timeout": float("nan")})


def test_the_largest_log_batch_of_empty_lines_fits() -> None:
    from gdos.agent.logreader import Batcher

    batches = list(Batcher().add([b""] * 100_000))
    assert len(batches[0]) > 4096
    for batch in batches:
        body = {"stream": 1, "seq": 1, "lines": batch, "stamps": [None] * len(batch)}
        assert decode(encode("log.data", body)).body["lines"] == batch


def test_every_field_of_every_agent_kind_has_a_full_schema() -> None:
    """Nothing a node sends is checked by type alone: each field is a Spec with its
    ranges and sizes, and a value of another type is refused at decode."""
    from gdos.wire.protocol import AGENT_SENDS, KINDS, SPECS
    from gdos.wire.schema import SchemaError, Spec

    candidates: list[Any] = [{"a": 1}, "s", 1.5, b"b", [1], True, 2**64 - 1]
    for kind in sorted(AGENT_SENDS):
        required, optional = KINDS[kind]
        for name, declared in {**required, **optional}.items():
            assert isinstance(declared, Spec), f"{kind}.{name} is checked by type only"
            spec = SPECS[kind]
            wrong = []
            for value in candidates:
                try:
                    declared.check(value, name)
                except SchemaError:
                    wrong.append(value)
            assert wrong, f"{kind}.{name} accepts anything"
            for value in wrong:
                body = {n: s.example() for n, s in spec.required.items()} | {name: value}
                assert name in refusal(kind, body), (kind, name, value)
