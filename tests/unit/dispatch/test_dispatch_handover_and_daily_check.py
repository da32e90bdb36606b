from __future__ import annotations

from datetime import date, datetime, time, timedelta, UTC
from uuid import UUID, uuid4

import pytest
from dispatch_helpers import DAY, make_order

from services.common.domain import DomainError, InvalidTransition
from services.dispatch.domain.daily_check import daily_check, next_check_at
from services.dispatch.domain.handover import ShiftHandover, sla_state
from services.dispatch.domain.routing import Route

HO_ID = UUID("8d0e6a43-1f3b-4c51-9d7e-2b7c4a9f0e11")
SHIFT_CHANGE = datetime(2026, 11, 29, 14, 0, tzinfo=UTC)  # 22:00 local


def _orders():
    def mk(no, **kw):
        return make_order(request_no=f"LY-20261129-{no:06d}", wo_id=uuid4(), **kw)

    breached = mk(1, due_at=DAY + timedelta(hours=3))
    breached.assign("tech-li", strategy="least_loaded", reason="r", by="system", now=DAY)
    ok = mk(2, due_at=DAY + timedelta(hours=24))
    resolved = mk(3, due_at=DAY + timedelta(hours=24))
    resolved.assign("tech-li", strategy="least_loaded", reason="r", by="system", now=DAY)
    resolved.accept("tech-li", now=DAY)
    resolved.depart(by="tech-li", now=DAY)
    resolved.arrive(by="tech-li", now=DAY)
    resolved.resolve("done", by="tech-li", now=DAY + timedelta(hours=1))
    cancelled = mk(4)
    cancelled.cancel(reason="重复报修", by="agent-007", now=DAY)
    other_dept = mk(5, route=Route("cleaning", "technician", "cleaning", "x"))
    other_property = mk(6, property_id="HX")
    return breached, ok, resolved, cancelled, other_dept, other_property


def test_sla_state_reads_the_resolution_deadline():
    wo = make_order(due_at=DAY + timedelta(hours=10))
    assert sla_state(wo, DAY + timedelta(hours=7)) == "ok"
    assert sla_state(wo, DAY + timedelta(hours=8)) == "at_risk"
    assert sla_state(wo, DAY + timedelta(hours=10)) == "breached"
    assert sla_state(make_order(), DAY) == "unknown"


def test_handover_lists_unfinished_orders_of_the_department_most_urgent_first():
    breached, ok, *_ = _orders()
    handover, event = ShiftHandover.publish(
        id=HO_ID, property_id="LY", department="engineering", orders=_orders() + (ok, breached),
        incoming_shift="night", outgoing_shift="day", shift_date=date(2026, 11, 29), now=SHIFT_CHANGE,
        incoming_lead="tech-wang",
    )
    states = [(i["request_no"], i["sla_state"]) for i in event.items]
    assert states[:1] == [("LY-20261129-000001", "breached")]
    assert {no for no, _ in states} == {"LY-20261129-000001", "LY-20261129-000002"}
    assert event.ack_due_at == SHIFT_CHANGE + timedelta(minutes=30)
    assert event.event_type == "ShiftHandoverPublished"


def test_handover_is_acknowledged_once_by_the_incoming_lead():
    handover, _ = ShiftHandover.publish(id=HO_ID, property_id="LY", department="engineering", orders=_orders(),
                                        incoming_shift="night", shift_date=date(2026, 11, 29), now=SHIFT_CHANGE,
                                        incoming_lead="tech-wang")
    with pytest.raises(DomainError) as exc:
        handover.acknowledge(by="tech-li", now=SHIFT_CHANGE + timedelta(minutes=5))
    assert exc.value.code == "not_incoming_lead"
    event = handover.acknowledge(by="tech-wang", now=SHIFT_CHANGE + timedelta(minutes=6))
    assert (event.event_type, event.item_count) == ("ShiftHandoverAcknowledged", 2)
    with pytest.raises(InvalidTransition):
        handover.acknowledge(by="tech-wang", now=SHIFT_CHANGE + timedelta(minutes=7))
    assert handover.check_overdue(now=SHIFT_CHANGE + timedelta(hours=1)) is None


def test_an_unacknowledged_handover_is_reported_once_when_due():
    handover, _ = ShiftHandover.publish(id=HO_ID, property_id="LY", department="engineering", orders=(),
                                        incoming_shift="night", shift_date=date(2026, 11, 29), now=SHIFT_CHANGE)
    assert handover.check_overdue(now=SHIFT_CHANGE + timedelta(minutes=29)) is None
    event = handover.check_overdue(now=SHIFT_CHANGE + timedelta(minutes=30))
    assert event is not None and event.event_type == "ShiftHandoverUnacknowledged"
    assert handover.check_overdue(now=SHIFT_CHANGE + timedelta(minutes=31)) is None


def test_daily_check_counts_done_open_overdue_per_department_with_the_open_list():
    at_six = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)  # 18:00 local
    report = daily_check(_orders(), property_id="LY", now=at_six)
    eng = {d.department: d for d in report.departments}["engineering"]
    assert (eng.done, eng.open, eng.overdue, eng.cancelled) == (1, 2, 1, 1)
    assert [o["request_no"] for o in eng.open_orders] == ["LY-20261129-000001", "LY-20261129-000002"]
    assert eng.open_orders[0]["overdue"] is True
    cleaning = {d.department: d for d in report.departments}["cleaning"]
    assert (cleaning.done, cleaning.open) == (0, 1)
    event = report.to_event(uuid4())
    assert event.day == "2026-11-29" and event.totals == {"done": 1, "open": 3, "overdue": 1, "cancelled": 1}


def test_daily_check_carries_over_yesterdays_open_work_but_not_yesterdays_done_work():
    tomorrow_six = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    eng = {d.department: d for d in daily_check(_orders(), property_id="LY", now=tomorrow_six).departments}
    assert (eng["engineering"].done, eng["engineering"].open, eng["engineering"].cancelled) == (0, 2, 0)


def test_the_daily_check_runs_at_1800_shanghai_by_default_and_is_configurable():
    assert next_check_at(DAY) == datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    assert next_check_at(datetime(2026, 11, 29, 10, 0, tzinfo=UTC)) == \
        datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert next_check_at(DAY, check_time=time(17, 30)) == datetime(2026, 11, 29, 9, 30, tzinfo=UTC)
