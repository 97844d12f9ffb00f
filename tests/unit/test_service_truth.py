"""Operation ids never repeat across daemon runs; acknowledgements cover only what is stored."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from gdos.agent.services import ServiceHost

from gdos.daemon.catalog import Catalog
from gdos.daemon.instance_reports import StateAcks
from gdos.daemon.opids import BLOCK, OpIds
from gdos.daemon.store import Store
from gdos.errors import ErrorCode, GdosError


def test_op_ids_continue_after_a_restart_even_with_the_clock_behind(tmp_path: Path) -> None:
    path = tmp_path / "op-ids"
    first = OpIds(path)
    taken = [first.take() for _ in range(BLOCK + 5)]  # crosses a reservation
    assert len(set(taken)) == len(taken) and taken == sorted(taken)
    path.write_text(str(int(path.read_text()) + 10**15))  # as if the clock went back far
    again = OpIds(path)
    assert again.take() > max(taken)


def test_op_ids_refuse_when_the_mark_cannot_be_written(tmp_path: Path) -> None:
    ids = OpIds(tmp_path / "missing-folder" / "op-ids")
    with pytest.raises(GdosError) as caught:
        ids.take()
    assert caught.value.code == ErrorCode.STORAGE_FAILED
    assert "missing-folder" in caught.value.message


def test_state_acks_need_a_stored_report_and_no_gap() -> None:
    acks = StateAcks()
    assert acks.state_stored("n1", 1) is None  # nothing acknowledged before a report
    assert acks.report_stored("n1", 5) == 5
    assert acks.state_stored("n1", 6) == 6
    assert acks.state_stored("n1", 8) is None  # 7 never arrived: wait for a report
    assert acks.state_stored("n1", 9) is None
    assert acks.report_stored("n1", 10) == 10
    acks.forget("n1")  # a failed write
    assert acks.state_stored("n1", 11) is None


def test_a_failed_write_stores_nothing_of_a_report(tmp_path: Path) -> None:
    store = Store(tmp_path / "gdos.db")
    catalog = Catalog(store)
    catalog.set_instance(("s", "a", "n1"), {"state": "running", "pid": 10})
    with pytest.raises(RuntimeError), catalog.atomic():
        catalog.set_instance(("s", "a", "n1"), {"state": "stopped", "pid": None})
        catalog.set_instance(("s", "b", "n1"), {"state": "running", "pid": 11})
        raise RuntimeError("the disk filled")
    assert [(r["module"], r["state"], r["pid"]) for r in catalog.instances()] == [
        ("a", "running", 10)
    ]
    assert [e["state"] for e in catalog.events()] == ["running"]


def test_events_record_a_new_process_but_not_a_repeat(tmp_path: Path) -> None:
    catalog = Catalog(Store(tmp_path / "gdos.db"))
    key = ("s", "a", "n1")
    catalog.set_instance(key, {"state": "running", "pid": 10, "version": "1"})
    assert not catalog.set_instance(key, {"state": "running", "pid": 10, "version": "1"})
    catalog.set_instance(key, {"state": "running", "pid": 12, "version": "1"})
    assert [(e["state"], e["pid"]) for e in catalog.events()] == [("running", 10), ("running", 12)]


def test_agent_keeps_answers_and_reports_until_the_daemon_stored_them(tmp_path: Path) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    async def main() -> None:
        host = ServiceHost(tmp_path, lambda kind, body: sent.append((kind, body)), _background)
        await host.recover()
        host._done(7, None, {"instance": "s/a", "state": "stopped"})
        host._emit({"instance": "s/a", "state": "stopped"})
        host.welcomed()
        kinds = [kind for kind, _ in sent]
        assert kinds[-2:] == ["svc.report", "svc.done"]  # the report first, then the answer
        report = sent[-2][1]
        assert report["ops"] == [7] and report["seq"] == host.seq == 2
        assert host.unacked_since is not None

        host.on_state_ack({"seq": report["seq"]})
        host.on_done_ack({"op": 7})
        assert host.unacked_since is None and not host.answers
        sent.clear()
        host.link_lost()
        host.welcomed()
        assert [kind for kind, _ in sent] == ["svc.report"]  # nothing left to resend
        host.link_lost()
        await host.close()

    asyncio.run(main())


_TASKS: list[asyncio.Future[Any]] = []


def _background(work: Any) -> None:
    _TASKS.append(asyncio.ensure_future(work))
