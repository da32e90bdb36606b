"""Escalation's fast batch (adapters.repository._Batch): rows read once and written once per batch must leave
exactly what the same messages leave handled one at a time, each in its own transaction.

The scenario is built to make the batch's in-memory rows matter: several events of one request in one batch,
facts that overtake their clock (a stop before the start, a resume before its pause), a repeat repair whose first
repair is resolved earlier in the same batch, condition escalations, a cluster, a reopening, a reclassification and
a cancellation, a redelivered event. Real Postgres, escalation's own schema, the company's policy, a fixed clock.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.common.db import BatchUnitOfWork, UnitOfWork, make_pool, migrate
from services.common.nameko_ext import UowFactory, batch_lock_key, run_batch
from services.common import metrics
from services.escalation.entrypoints.service import read_policy_file
from services.escalation.service_layer import handlers
from tests.integration.test_escalation_helpers import envelope
from tests.support import db_url

BASE = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
NOW = BASE + timedelta(hours=2)


class _Store:
    service = "escalation"

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.pool, self.service, clock=lambda: NOW)

    def batch_uow(self) -> BatchUnitOfWork:
        return BatchUnitOfWork(self.pool, self.service, clock=lambda: NOW)


class _Service:
    def __init__(self, store: _Store, rt: handlers.Runtime) -> None:
        self.uow = UowFactory(store)  # type: ignore[arg-type]
        self.rt = rt


def handle(svc: _Service, env: dict[str, Any]) -> Any:
    return handlers.handle_event(svc.uow(), svc.rt, env)


@pytest.fixture(scope="module")
def service(infra: None) -> Iterator[_Service]:
    migrate(db_url("escalation"), Path("services/escalation/migrations"), "escalation")
    pool = make_pool(db_url("escalation"), "escalation", 2, "test-escalation-batches")
    store = _Store(pool)
    rt = handlers.Runtime()
    handlers.ensure_policy(store.uow(), rt, read_policy_file("services/escalation/policy.yml"), "test")
    try:
        yield _Service(store, rt)
    finally:
        pool.close()


def at(minutes: float) -> datetime:
    return BASE + timedelta(minutes=minutes)


def scenario(tag: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Messages for six requests of one run (`tag` keeps runs apart: request numbers and units)."""
    serial = uuid.uuid4().int % 10**5
    nos = [f"LY-20261125-{serial:05d}{i}" for i in range(6)]
    unit = f"{tag}-1502"
    r1, r2, r3, r4, r5, r6 = nos

    def env(event_type: str, no: str | None, minute: float, **data: Any) -> dict[str, Any]:
        body = envelope(event_type, no, **data)
        body["occurred_at"] = at(minute).isoformat()
        return body

    def registered(no: str, minute: float, **kw: Any) -> dict[str, Any]:
        values = {"property_id": "LY", "unit": unit, "channel": "phone", "category": "repair",
                  "subcategory": "plumbing", "priority": "normal", "emergency": False, "registered_at": at(minute),
                  **kw}
        return env("RequestRegistered", no, minute, **values)

    assigned_r1 = env("WorkOrderAssigned", r1, 2, assigned_at=at(2))
    messages = [
        registered(r1, 0),
        env("WorkOrderCreated", r1, 1),  # ignored: no return visit raised it
        assigned_r1,
        env("TechnicianArrived", r1, 9, arrived_at=at(9)),
        env("WorkOrderResolved", r1, 30, resolved_at=at(30)),
        assigned_r1,  # redelivered
        # the same unit and problem again after the first repair was resolved: a repeat repair
        registered(r2, 40),
        # a resume that overtakes its pause
        registered(r3, 0, unit=f"{tag}-0801"),
        env("WorkOrderAssigned", r3, 3, assigned_at=at(3)),
        env("WorkOrderResumed", r3, 20, resumed_at=at(20)),
        env("WorkOrderPaused", r3, 10, paused_at=at(10)),
        # an arrival that overtakes the assignment which starts its clock
        registered(r4, 1, unit=f"{tag}-0901"),
        env("TechnicianArrived", r4, 12, arrived_at=at(12)),
        env("WorkOrderAssigned", r4, 5, assigned_at=at(5)),
        # compensation demanded, a cluster around it, resolved and rejected twice
        registered(r5, 2, unit=f"{tag}-1001", compensation_demanded=True, category="complaint",
                   subcategory=None),
        env("IncidentClustered", None, 6, request_nos=[r5, r6], children_count=6),
        env("WorkOrderResolved", r5, 50, resolved_at=at(50)),
        env("ResidentRejected", r5, 60, rejection_count=2),
        # reclassified, then cancelled
        registered(r6, 3, unit=f"{tag}-1101", category="consultation", subcategory=None, priority="planned"),
        env("RequestReclassified", r6, 4, category="repair", subcategory="electrical", priority="urgent",
            emergency=False, reclassified_at=at(4)),
        env("RequestCancelled", r6, 70, cancelled_at=at(70)),
    ]
    return messages, nos


def state(nos: list[str], tag: str) -> dict[str, Any]:
    """What escalation keeps about these requests, with the run's own identifiers (numbers, units) taken out."""
    names = {no: f"R{i}" for i, no in enumerate(nos)} | {f'"{tag}-': '"T-'}

    def canon(value: Any) -> Any:
        text = json.dumps(value, default=str, sort_keys=True)
        for no, name in names.items():
            text = text.replace(no, name)
        out = json.loads(text)
        return _strip(out)

    with UnitOfWork(_POOL[0], "escalation") as uow:
        def q(sql: str) -> list[dict[str, Any]]:
            return [canon(r) for r in uow.execute(sql, (nos,)).fetchall()]

        return {
            "requests": q("SELECT * FROM requests WHERE request_no = ANY(%s) ORDER BY request_no"),
            "clocks": q("SELECT * FROM clocks WHERE request_no = ANY(%s) ORDER BY request_no, kind"),
            "deadlines": q("SELECT c.request_no, c.kind AS clock, d.kind, d.due_at, d.token, "
                           "d.fired_at IS NULL AS open FROM deadlines d JOIN clocks c USING (clock_id) "
                           "WHERE c.request_no = ANY(%s) ORDER BY 1, 2, 3, 4, 5"),
            "pending": q("SELECT request_no, clock, verb, at, reason FROM pending_facts WHERE request_no = ANY(%s) "
                         "ORDER BY 1, 4, 2, 3"),
            "fired": q("SELECT request_no, rule, fired_at FROM condition_fired WHERE request_no = ANY(%s) "
                       "ORDER BY 1, 2"),
            "escalations": q("SELECT * FROM escalations WHERE request_no = ANY(%s) ORDER BY request_no, rule, clock"),
            "request_timers": q("SELECT request_no, kind, ref, due_at, token, fired_at IS NULL AS open "
                                "FROM request_timers WHERE request_no = ANY(%s) ORDER BY 1, 2, 3, 5"),
            "timeline": q("SELECT request_no, event_type, data FROM timeline WHERE request_no = ANY(%s) "
                          "ORDER BY request_no, id"),
        }


_POOL: list[Any] = []
_IDS = {"clock_id", "escalation_id", "event_id", "id", "updated_at", "created_at", "correlation_id"}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _IDS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def counts() -> dict[tuple[Any, ...], int]:
    with UnitOfWork(_POOL[0], "escalation") as uow:
        rows = uow.execute("SELECT clock, outcome, category, priority, channel, property_id, sum(n) AS n "
                           "FROM verdict_counts GROUP BY 1, 2, 3, 4, 5, 6").fetchall()
        more = uow.execute("SELECT rung, reason, sum(n) AS n FROM escalation_counts GROUP BY 1, 2").fetchall()
    return {**{tuple(list(r.values())[:-1]): int(r["n"]) for r in rows},
            **{("escalation", r["rung"], r["reason"]): int(r["n"]) for r in more}}


def delta(before: dict[tuple[Any, ...], int], after: dict[tuple[Any, ...], int]) -> dict[tuple[Any, ...], int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def one_by_one(svc: _Service, messages: list[dict[str, Any]]) -> list[Any]:
    return [handle(svc, m) for m in messages]


def redone(svc: _Service) -> float:
    return metrics.BATCHES_REDONE.labels("escalation")._value.get()


@pytest.fixture
def pool(service: _Service) -> Iterator[None]:
    _POOL[:] = [service.uow.store.pool]
    yield


def test_a_fast_batch_leaves_what_the_messages_leave_one_at_a_time(service: _Service, pool: None) -> None:
    from services.common.contract.registry import load_envelope

    alone, alone_nos = scenario("3")
    batched, batched_nos = scenario("4")
    c0 = counts()
    results_alone = one_by_one(service, [load_envelope(json.loads(json.dumps(m))) for m in alone])
    c1 = counts()
    before = redone(service)
    outcomes = run_batch(service, handle, [load_envelope(json.loads(json.dumps(m))) for m in batched],
                         batch_lock_key("escalation.events"), 0)
    c2 = counts()
    assert redone(service) == before  # it stayed in fast mode: the batch cache did the work
    assert [o[1] for o in outcomes] == [None] * len(batched)
    assert [o[0] for o in outcomes] == results_alone
    assert results_alone.count("duplicate") == 1 and results_alone.count("ignored") == 1

    a, b = state(alone_nos, "3"), state(batched_nos, "4")
    for table in a:
        assert b[table] == a[table], table
    assert delta(c1, c2) == delta(c0, c1)
    # the scenario did what it is there for
    assert {r["rule"] for r in a["fired"]} >= {"repeat_repair", "compensation", "many_residents"}
    assert any(r["kind"] == "on_site" and r["state"] == "met" for r in a["clocks"] if r["request_no"] == "R3")
    assert not [p for p in a["pending"] if p["clock"] == "on_site"]  # the overtaking facts found their clock
    assert any(p["clock"] == "complaint_reply" for p in a["pending"])  # kept for a clock a repair never starts


def test_a_failing_message_sends_the_batch_round_again_carefully_with_the_same_outcome(service: _Service,
                                                                                     pool: None) -> None:
    from services.common.contract.registry import load_envelope

    messages, nos = scenario("5")
    orphan = envelope("WorkOrderAssigned", "LY-20261125-999999", assigned_at=at(1))  # never registered: not ready
    loaded = [load_envelope(json.loads(json.dumps(m))) for m in messages]
    loaded.insert(3, load_envelope(json.loads(json.dumps(orphan))))
    before = redone(service)
    outcomes = run_batch(service, handle, loaded, batch_lock_key("escalation.events"), 0)
    assert redone(service) == before + 1
    assert isinstance(outcomes[3][1][1], handlers.NotReady)
    assert all(o[1] is None for i, o in enumerate(outcomes) if i != 3)
    reference, reference_nos = scenario("6")
    one_by_one(service, [load_envelope(json.loads(json.dumps(m))) for m in reference])
    assert state(nos, "5") == state(reference_nos, "6")


def test_a_repeat_repair_resolved_before_the_batch_is_found_by_the_batch_read(service: _Service, pool: None) -> None:
    from services.common.contract.registry import load_envelope

    def loaded(body: dict[str, Any]) -> dict[str, Any]:
        return load_envelope(json.loads(json.dumps(body)))

    serial = uuid.uuid4().int % 10**5
    first, second, elsewhere = (f"LY-20261125-{serial:05d}{i}" for i in range(3))
    place: dict[str, Any] = {"property_id": "LY", "channel": "phone", "category": "repair", "subcategory": "plumbing",
             "priority": "normal", "emergency": False}
    one_by_one(service, [loaded(envelope("RequestRegistered", first, unit="7-0707", registered_at=at(0), **place)),
                         loaded(envelope("WorkOrderResolved", first, resolved_at=at(30)))])
    before = redone(service)
    run_batch(service, handle, [
        loaded(envelope("RequestRegistered", second, unit="7-0707", registered_at=at(60), **place)),
        loaded(envelope("RequestRegistered", elsewhere, unit="7-0808", registered_at=at(60), **place))],
        batch_lock_key("escalation.events"), 0)
    assert redone(service) == before
    with UnitOfWork(_POOL[0], "escalation") as uow:
        fired = {r["request_no"]: r["rule"] for r in uow.execute(
            "SELECT request_no, rule FROM condition_fired WHERE request_no = ANY(%s)",
            ([second, elsewhere],)).fetchall()}
        facts = uow.execute("SELECT facts FROM requests WHERE request_no = %s", (second,)).fetchone()
    assert fired == {second: "repeat_repair"}  # the other unit has no earlier repair
    assert facts is not None and facts["facts"]["previous_repair_at"] == at(30).isoformat()
