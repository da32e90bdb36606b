"""Intake's fast batch of inbound requests (adapters.repository._Batch): places and earlier registrations read
once per batch, numbers taken once per property and day. Each request is still registered exactly once, numbers
stay distinct and sort as the registration times do, and a message the batch cannot keep is refused alone.
Real Postgres, intake's schema, the real classifier."""
from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.common import metrics
from services.common.config import REPO_ROOT
from services.common.contract.inbound import INBOUND_EXAMPLE, load_inbound
from services.common.db import make_pool, migrate
from services.common.domain import DomainError
from services.common.nameko_ext import UowFactory, batch_lock_key, run_batch
from services.intake.adapters import repository
from services.intake.adapters.dictionary import bounded_segmentation_dictionary, load_dictionary
from services.intake.domain.classification import Classifier
from services.intake.domain.numbering import parse_request_no
from services.intake.entrypoints.service import IntakeService
from services.intake.service_layer import handlers
from tests.support import PoolStore, count_batch_statements, db_url


class _Service:
    def __init__(self, store: PoolStore, classifier: Classifier) -> None:
        self.uow = UowFactory(store)  # type: ignore[arg-type]
        self.classifier = classifier
        self.rules = handlers.Rules()


# The consumer's own method, as its batch runs it.
register = IntakeService.on_inbound.__wrapped__  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def service(infra: None) -> Iterator[_Service]:
    migrate(db_url("intake"), Path("services/intake/migrations"), "intake")
    pool = make_pool(db_url("intake"), "intake", 3, "test-intake-batches")
    classifier = Classifier(load_dictionary(REPO_ROOT / "services/intake/classification.yml"),
                            bounded_segmentation_dictionary(60000))
    try:
        yield _Service(PoolStore(pool, "intake"), classifier)
    finally:
        pool.close()


def inbound(source: str, i: int, property_id: str = "LY") -> dict[str, Any]:
    return load_inbound({**INBOUND_EXAMPLE, "source": source, "external_id": f"alarm-{i}", "property_id": property_id,
                         "area": f"{i}号泵房", "building": None if property_id != "LY" else "3"})


def redone() -> float:
    return metrics.BATCHES_REDONE.labels("intake")._value.get()


def registrations(svc: _Service, source: str) -> list[tuple[str, Any]]:
    with svc.uow.store.pool.connection() as conn:
        return conn.execute("SELECT request_no, registered_at FROM requests WHERE source = %s "  # type: ignore[return-value]
                            "ORDER BY registered_at, request_no", (source,)).fetchall()


def test_a_batch_registers_each_request_once_with_numbers_taken_together(service: _Service,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    source = f"iot-{uuid.uuid4().hex[:8]}"
    items = [inbound(source, i, "LY" if i % 3 else "JH") for i in range(12)] + [inbound(source, 4)]
    before = redone()
    takes: list[dict[str, int]] = []
    take = repository._take_blocks
    monkeypatch.setattr(repository, "_take_blocks", lambda uow, day, wanted: takes.append(dict(wanted))
                        or take(uow, day, wanted))
    outcomes = run_batch(service, register, items, batch_lock_key("intake.inbound"))
    assert takes == [{"LY": 9, "JH": 4}]  # both properties' numbers in one short transaction (the redelivery too)
    assert redone() == before  # it stayed in fast mode
    assert all(o[1] is None for o in outcomes)
    answers = [o[0] for o in outcomes]
    assert [a["created"] for a in answers] == [True] * 12 + [False]
    assert answers[12]["request_no"] == answers[4]["request_no"]  # the redelivery inside the batch
    rows = registrations(service, source)
    assert sorted(r[0] for r in rows) == sorted(a["request_no"] for a in answers[:12])
    for property_id in ("LY", "JH"):
        mine = [parse_request_no(a["request_no"]).seq for a in answers[:12]
                if a["request_no"].startswith(property_id)]
        assert mine == list(range(mine[0], mine[0] + len(mine)))  # one block, in message order
        taken_at = {at for no, at in rows if no.startswith(property_id)}
        assert len(taken_at) == 1  # one short transaction for the block
    # time order is number order (a block's requests share the instant its numbers were taken at)
    by_time = [parse_request_no(no) for no, _ in rows]
    for property_id in ("LY", "JH"):
        seqs = [p.seq for p in by_time if p.property_id == property_id]
        assert seqs == sorted(seqs)

    again = run_batch(service, register, [inbound(source, 7)], batch_lock_key("intake.inbound"))
    assert again[0][0] == {"request_no": answers[7]["request_no"], "created": False}
    assert len(registrations(service, source)) == 12


def test_a_request_the_batch_cannot_keep_is_refused_alone_and_the_others_registered_once(service: _Service) -> None:
    source = f"iot-{uuid.uuid4().hex[:8]}"
    items = [inbound(source, i) for i in range(5)]
    items[2] = inbound(source, 2, "NOPE")  # no such property
    before = redone()
    outcomes = run_batch(service, register, items, batch_lock_key("intake.inbound"))
    assert redone() == before + 1
    assert outcomes[2][1][0] is DomainError
    assert [o[0]["created"] for i, o in enumerate(outcomes) if i != 2] == [True] * 4
    numbers = [no for no, _ in registrations(service, source)]
    assert len(numbers) == 4 and len({parse_request_no(n).seq for n in numbers}) == 4


def report(source: str, i: int, **fields: Any) -> dict[str, Any]:
    # JH keeps no unit list, so a building of this run's own keeps earlier runs' reports out of its duplicates.
    body = {**INBOUND_EXAMPLE, "source": source, "external_id": f"r-{i}", "channel": "online", "property_id": "JH",
            "building": None, "area": None, "channel_details": {}, **fields}
    return load_inbound(body)


def test_a_batch_writes_its_requests_and_contacts_in_one_statement_each(service: _Service) -> None:
    source = f"app-{uuid.uuid4().hex[:8]}"
    building = uuid.uuid4().hex[:4].upper()
    items = [report(source, i, unit=f"{building}-{1101 + i}", reporter={"kind": "resident", "phone": f"1390000{i:04d}"},
                    description="咨询停车费") for i in range(10)]
    sent = count_batch_statements(service.uow.store, words=3)
    try:
        outcomes = run_batch(service, register, items, batch_lock_key("intake.inbound"))
    finally:
        del service.uow.store.batch_uow  # the class's own again
    assert [o[1] for o in outcomes] == [None] * 10, outcomes[0][1]
    assert [o[0]["created"] for o in outcomes] == [True] * 10
    assert sent.count("INSERT INTO REQUESTS") == 1 and sent.count("INSERT INTO CONTACTS") == 1
    with service.uow.store.pool.connection() as conn:
        phones = conn.execute("SELECT c.phone FROM contacts c JOIN requests r USING (request_no) "
                              "WHERE r.source = %s ORDER BY 1", (source,)).fetchall()
    assert [p[0] for p in phones] == [f"1390000{i:04d}" for i in range(10)]


def test_a_repeat_report_in_the_same_batch_is_linked_to_the_first_one(service: _Service) -> None:
    source = f"app-{uuid.uuid4().hex[:8]}"
    building = uuid.uuid4().hex[:4].upper()
    unit, phone = f"{building}-1507", f"137{uuid.uuid4().int % 10**8:08d}"
    items = [report(source, 1, unit=unit, description="卫生间水管漏水"),
             report(source, 2, unit=f"{building}-0902", reporter={"kind": "resident", "phone": phone},
                    description="电梯异响"),
             report(source, 3, unit=unit, description="卫生间水管还在漏水"),
             report(source, 4, unit=f"{building}-1002", reporter={"kind": "resident", "phone": phone},
                    description="咨询装修手续")]
    before = redone()
    answers = [o[0] for o in run_batch(service, register, items, batch_lock_key("intake.inbound"))]
    assert redone() == before
    assert answers[2]["duplicate_of"] == answers[0]["request_no"]
    assert answers[2]["duplicate_reason"] == "same_unit_and_class"
    assert answers[3]["duplicate_of"] == answers[1]["request_no"] and answers[3]["duplicate_reason"] == "same_caller"
    with service.uow.store.pool.connection() as conn:
        stored = dict(conn.execute("SELECT request_no, duplicate_of FROM requests WHERE source = %s",
                                   (source,)).fetchall())
    assert stored[answers[2]["request_no"]] == answers[0]["request_no"]


def test_reports_of_one_place_in_one_batch_form_one_incident(service: _Service) -> None:
    source = f"app-{uuid.uuid4().hex[:8]}"
    place = f"6栋地下车库-{uuid.uuid4().hex[:6]}"
    items = [report(source, i, property_id="LY", area=place, description="水管爆裂，地面全是水") for i in range(4)]
    answers = [o[0] for o in run_batch(service, register, items, batch_lock_key("intake.inbound"))]
    assert [a["incident_id"] is None for a in answers] == [True, True, False, False]
    assert answers[2]["incident_id"] == answers[3]["incident_id"]
    assert [a["incident_children_count"] for a in answers[2:]] == [3, 4]
    with service.uow.store.pool.connection() as conn:
        members = {r[0] for r in conn.execute("SELECT request_no FROM requests WHERE incident_id = %s",
                                              (answers[2]["incident_id"],)).fetchall()}
    assert members == {a["request_no"] for a in answers}


def read_ahead_statements(sent: list[str]) -> tuple[int, int]:
    """How many duplicate reads and cluster reads a batch sent (each statement reads for one or many requests)."""
    return sent.count("SELECT K.I, D.*"), sent.count("SELECT K.I, C.*")


def test_a_batch_reads_its_duplicates_and_clusters_in_one_statement_each(service: _Service) -> None:
    source = f"app-{uuid.uuid4().hex[:8]}"
    building = uuid.uuid4().hex[:4].upper()
    # Each in a building and an area of its own: nothing clusters (an incident would make later reads fresh).
    items = [report(source, i, building=f"{building}{i:02d}", unit=f"{building}-{1101 + i}", area=f"{building}-{i}号门",
                    reporter={"kind": "resident", "phone": f"1380000{i:04d}"}, description="卫生间水管漏水")
             for i in range(10)]
    sent = count_batch_statements(service.uow.store, words=3)
    try:
        outcomes = run_batch(service, register, items, batch_lock_key("intake.inbound"))
    finally:
        del service.uow.store.batch_uow
    assert [o[1] for o in outcomes] == [None] * 10, outcomes[0][1]
    # One read of each kind for the ten (one per request before): all ten have a unit, a phone and a place.
    assert read_ahead_statements(sent) == (1, 1)


def test_a_batch_finds_earlier_batches_reports_as_one_by_one_reads_did(service: _Service) -> None:
    source = f"app-{uuid.uuid4().hex[:8]}"
    building = uuid.uuid4().hex[:4].upper()
    unit, phone = f"{building}-1507", f"136{uuid.uuid4().int % 10**8:08d}"
    place = f"{building}号楼地下车库"
    first = [report(source, 1, unit=unit, description="卫生间水管漏水"),
             report(source, 2, unit=f"{building}-0902", reporter={"kind": "resident", "phone": phone},
                    description="电梯异响"),
             report(source, 3, property_id="LY", area=place, description="水管爆裂，地面全是水")]
    earlier = [o[0] for o in run_batch(service, register, first, batch_lock_key("intake.inbound"))]
    then = [report(source, 4, description="咨询停车费", unit=f"{building}-0101"),
            report(source, 5, unit=unit, description="卫生间水管还在漏水"),
            report(source, 6, unit=f"{building}-1002", reporter={"kind": "resident", "phone": phone},
                   description="咨询装修手续"),
            *[report(source, 7 + i, property_id="LY", area=place, description="水管爆裂，地面全是水")
              for i in range(3)]]
    sent = count_batch_statements(service.uow.store, words=3)
    before = redone()
    try:
        answers = [o[0] for o in run_batch(service, register, then, batch_lock_key("intake.inbound"))]
    finally:
        del service.uow.store.batch_uow
    assert redone() == before
    assert answers[0]["duplicate_of"] is None
    assert (answers[1]["duplicate_of"], answers[1]["duplicate_reason"]) == (earlier[0]["request_no"],
                                                                            "same_unit_and_class")
    assert (answers[2]["duplicate_of"], answers[2]["duplicate_reason"]) == (earlier[1]["request_no"], "same_caller")
    # The earlier batch's report and this batch's first make two: the third report forms the incident (read
    # again under the cluster's lock) and the fourth joins it (its read ahead is from before the incident).
    assert [a["incident_id"] is None for a in answers[3:]] == [True, False, False]
    assert answers[4]["incident_id"] == answers[5]["incident_id"]
    assert [a["incident_children_count"] for a in answers[4:]] == [3, 4]
    duplicates, clusters = read_ahead_statements(sent)
    assert duplicates == 1  # read ahead for all, nothing read again
    # Ahead for all; the third again under the lock; the fourth for itself, before and under the lock.
    assert clusters == 1 + 1 + 2


def test_a_read_the_preview_guessed_wrong_is_made_by_the_registration_itself(service: _Service,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    source = f"app-{uuid.uuid4().hex[:8]}"
    building = uuid.uuid4().hex[:4].upper()
    unit = f"{building}-1507"
    run_batch(service, register, [report(source, 1, unit=unit, description="卫生间水管漏水")],
              batch_lock_key("intake.inbound"))
    preview = handlers._preview
    monkeypatch.setattr(handlers, "_preview", lambda uow, cmd, classifier, day: dataclasses.replace(
        p, unit=f"{building}-0000") if (p := preview(uow, cmd, classifier, day)) else None)
    sent = count_batch_statements(service.uow.store, words=3)
    try:
        answers = [o[0] for o in run_batch(service, register, [report(source, 2, unit=unit,
                                                                       description="卫生间水管还在漏水")],
                                           batch_lock_key("intake.inbound"))]
    finally:
        del service.uow.store.batch_uow
    assert answers[0]["duplicate_of"] is not None and answers[0]["duplicate_reason"] == "same_unit_and_class"
    assert read_ahead_statements(sent)[0] == 2, sent  # the wrong guess's, then its own
