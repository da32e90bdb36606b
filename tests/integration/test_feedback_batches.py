"""Feedback's fast batch of events (real Postgres, feedback's schema): the registrations of a batch are written in
one statement, and an assignment later in the same batch still finds its request; so are its clocks' verdicts."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.common import metrics
from services.common.contract.registry import load_envelope, spec_for
from services.common.db import make_pool, migrate
from services.common.nameko_ext import NotReady, UowFactory, batch_lock_key, run_batch
from services.feedback.service_layer import handlers
from tests.support import PoolStore, count_batch_statements, db_url


class _Service:
    def __init__(self, store: PoolStore) -> None:
        self.uow = UowFactory(store)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def service(infra: None) -> Iterator[_Service]:
    migrate(db_url("feedback"), Path("services/feedback/migrations"), "feedback")
    pool = make_pool(db_url("feedback"), "feedback", 3, "test-feedback-batches")
    try:
        yield _Service(PoolStore(pool, "feedback"))
    finally:
        pool.close()


def on_event(svc: _Service, envelope: dict[str, Any]) -> Any:
    # Registrations and assignments read no settings (return-visit decisions do).
    return handlers.on_event(svc.uow(), envelope, None)  # type: ignore[arg-type]


def envelope(producer: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return load_envelope({"event_id": str(uuid.uuid4()), "event_type": event_type, "version": 1,
                          "producer": producer, "occurred_at": datetime.now(UTC).isoformat(),
                          "correlation_id": "c-1", "request_no": data["request_no"], "data": data})


def registered(no: str) -> dict[str, Any]:
    return envelope("intake", "RequestRegistered", {
        "request_no": no, "property_id": "LY", "building": "3", "unit": "3-1502", "area": None, "channel": "phone",
        "source": "desk", "external_id": None, "category": "repair", "subcategory": "plumbing", "priority": "normal",
        "emergency": False, "complaint_valid": None, "validity": None, "paid_service": False,
        "owner_agent": "agent-007", "reporter_kind": "resident", "description": "测试",
        "registered_at": datetime.now(UTC).isoformat()})


def assigned(no: str) -> dict[str, Any]:
    return envelope("dispatch", "WorkOrderAssigned", {
        "work_order_id": str(uuid.uuid4()), "request_no": no, "property_id": "LY", "department": "engineering",
        "technician_id": "tech-li", "strategy": "least_loaded", "assigned_at": datetime.now(UTC).isoformat(),
        "night": False})


def redone() -> float:
    return metrics.BATCHES_REDONE.labels("feedback")._value.get()


def departments(svc: _Service, numbers: list[str]) -> dict[str, str | None]:
    with svc.uow.store.pool.connection() as conn:
        rows = conn.execute("SELECT request_no, department FROM requests WHERE request_no = ANY(%s)",
                            (numbers,)).fetchall()
    return dict(rows)  # type: ignore[arg-type]


def test_a_pack_of_registrations_is_written_in_one_statement_and_its_assignments_find_them(
        service: _Service) -> None:
    numbers = [f"LY-20260101-{uuid.uuid4().hex[:6]}" for _ in range(10)]
    # As the relays deliver them: a pack of registrations, then a pack of assignments.
    items = [registered(n) for n in numbers] + [assigned(n) for n in numbers]
    sent = count_batch_statements(service.uow.store, words=3)
    try:
        outcomes = run_batch(service, on_event, items, batch_lock_key("feedback.events"))
    finally:
        del service.uow.store.batch_uow  # the class's own again
    assert [o[1] for o in outcomes] == [None] * 20, outcomes
    assert sent.count("INSERT INTO REQUESTS") == 1
    assert departments(service, numbers) == {n: "engineering" for n in numbers}


def test_interleaved_registrations_and_assignments_each_find_their_request(service: _Service) -> None:
    numbers = [f"LY-20260101-{uuid.uuid4().hex[:6]}" for _ in range(4)]
    items = [e for n in numbers for e in (registered(n), assigned(n))]
    outcomes = run_batch(service, on_event, items, batch_lock_key("feedback.events"))
    assert [o[1] for o in outcomes] == [None] * 8, outcomes
    assert departments(service, numbers) == {n: "engineering" for n in numbers}


def test_an_assignment_ahead_of_its_registration_waits_and_the_batch_keeps_the_rest(service: _Service) -> None:
    early, other = (f"LY-20260101-{uuid.uuid4().hex[:6]}" for _ in range(2))
    outcomes = run_batch(service, on_event, [registered(other), assigned(early), assigned(other)],
                         batch_lock_key("feedback.events"))
    assert outcomes[1][1] is not None and outcomes[1][1][0] is NotReady
    assert [outcomes[0][1], outcomes[2][1]] == [None, None]
    assert departments(service, [early, other]) == {other: "engineering"}


def clock_event(event_type: str, clock_id: str, no: str, **fields: Any) -> dict[str, Any]:
    data = {**spec_for(event_type, 1).example, "clock_id": clock_id, "request_no": no, **fields}
    return envelope("escalation", event_type, data)


def outcomes_of(svc: _Service, clock_ids: list[str]) -> dict[str, str]:
    with svc.uow.store.pool.connection() as conn:
        rows = conn.execute("SELECT clock_id::text, outcome FROM clock_outcomes WHERE clock_id::text = ANY(%s)",
                            (clock_ids,)).fetchall()
    return dict(rows)  # type: ignore[arg-type]


def test_a_pack_of_clock_verdicts_is_written_in_one_statement(service: _Service) -> None:
    clocks = [str(uuid.uuid4()) for _ in range(10)]
    items = [clock_event("ClockMet", c, f"LY-20260101-{c[:6]}", on_time=i % 2 == 0) for i, c in enumerate(clocks)]
    sent = count_batch_statements(service.uow.store, words=3)
    before = redone()
    try:
        outcomes = run_batch(service, on_event, items, batch_lock_key("feedback.events"))
    finally:
        del service.uow.store.batch_uow
    assert [o[1] for o in outcomes] == [None] * 10, outcomes
    assert redone() == before
    assert sent.count("INSERT INTO CLOCK_OUTCOMES") == 1
    assert outcomes_of(service, clocks) == {c: "met" if i % 2 == 0 else "breached" for i, c in enumerate(clocks)}


def test_a_breach_then_a_late_stop_of_one_clock_in_one_batch_stays_breached(service: _Service) -> None:
    clock, other = str(uuid.uuid4()), str(uuid.uuid4())
    items = [clock_event("ClockBreached", clock, "LY-20260101-000001"),
             clock_event("ClockMet", other, "LY-20260101-000002", on_time=True),
             clock_event("ClockMet", clock, "LY-20260101-000001", on_time=False)]
    before = redone()
    outcomes = run_batch(service, on_event, items, batch_lock_key("feedback.events"))
    assert [o[1] for o in outcomes] == [None] * 3, outcomes
    assert redone() == before + 1  # one statement cannot touch a row twice: the batch went round message by message
    assert outcomes_of(service, [clock, other]) == {clock: "breached", other: "met"}
