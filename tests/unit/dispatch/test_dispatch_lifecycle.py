from __future__ import annotations

from datetime import timedelta

import pytest
from dispatch_helpers import DAY, last_event, make_order

from services.common.domain import DomainError, InvalidTransition
from services.dispatch.domain.model import STATES, check_transition

WORKING = {"accepted", "en_route", "on_site", "temporary_measure", "resident_rejected"}
REASSIGNABLE = {"offered", "assigned", "accepted", "en_route", "on_site", "temporary_measure", "paused",
                "resident_rejected"}
ALLOWED = {
    ("unassigned", "assigned"), ("unassigned", "offered"),
    ("offered", "accepted"), ("offered", "unassigned"),
    ("assigned", "accepted"), ("assigned", "unassigned"),
    ("accepted", "en_route"), ("en_route", "on_site"),
    ("on_site", "temporary_measure"), ("on_site", "resolved"),
    ("temporary_measure", "resolved"), ("temporary_measure", "en_route"), ("temporary_measure", "on_site"),
    ("resolved", "resident_accepted"), ("resolved", "resident_rejected"),
    ("resident_rejected", "en_route"), ("resident_rejected", "on_site"),
    ("resident_accepted", "closed"),
    *((s, "assigned") for s in REASSIGNABLE),
    *((s, "paused") for s in WORKING),
    *(("paused", s) for s in WORKING),
    *((s, "cancelled") for s in STATES if s not in ("closed", "cancelled")),
}
PAIRS = [(a, b) for a in STATES for b in STATES]


@pytest.mark.parametrize(("previous", "current"), [p for p in PAIRS if p in ALLOWED])
def test_allowed_transition(previous, current):
    check_transition(previous, current)


@pytest.mark.parametrize(("previous", "current"), [p for p in PAIRS if p not in ALLOWED])
def test_refused_transition_names_the_current_state(previous, current):
    with pytest.raises(InvalidTransition) as exc:
        check_transition(previous, current)
    assert exc.value.current_state == previous
    assert previous in exc.value.message


def t(minutes: int):
    return DAY + timedelta(minutes=minutes)


def test_a_repair_from_creation_to_closure_records_every_step_with_who_and_when():
    wo = make_order()
    wo.assign("tech-li", strategy="least_loaded", reason="least_loaded", by="system", now=t(0), accept_by=t(5))
    wo.accept("tech-li", now=t(2))
    wo.depart(by="tech-li", now=t(3))
    wo.arrive(by="tech-li", now=t(12))
    wo.take_temporary_measure("关闭分户水阀", by="tech-li", now=t(15))
    wo.resolve("更换水管接头", by="tech-li", now=t(60))
    wo.resident_accept(by="tech-li", now=t(65), note="住户签字")
    wo.close(by="agent-007", now=t(70))
    assert wo.state == "closed"
    assert [(h.from_state, h.to_state, h.by) for h in wo.history] == [
        ("", "unassigned", "system"), ("unassigned", "assigned", "system"), ("assigned", "accepted", "tech-li"),
        ("accepted", "en_route", "tech-li"), ("en_route", "on_site", "tech-li"),
        ("on_site", "temporary_measure", "tech-li"), ("temporary_measure", "resolved", "tech-li"),
        ("resolved", "resident_accepted", "tech-li"), ("resident_accepted", "closed", "agent-007"),
    ]
    assert [h.at for h in wo.history][-1] == t(70)
    assert [e.event_type for e in wo.pull_events()] == [
        "WorkOrderCreated", "WorkOrderAssigned", "WorkOrderAccepted", "TechnicianEnRoute", "TechnicianArrived",
        "TemporaryMeasureTaken", "WorkOrderResolved", "ResidentAccepted", "WorkOrderClosed",
    ]
    assert wo.events == [] and wo.version == 8


def test_an_invalid_step_is_refused_naming_the_current_state():
    wo = make_order()
    with pytest.raises(InvalidTransition) as exc:
        wo.resolve("done", by="tech-li", now=t(1))
    assert exc.value.current_state == "unassigned"
    assert wo.state == "unassigned" and len(wo.history) == 1


def test_pause_resumes_to_the_state_it_was_paused_from_with_the_paused_time():
    wo = make_order()
    wo.assign("tech-li", strategy="least_loaded", reason="r", by="system", now=t(0))
    wo.accept("tech-li", now=t(1))
    wo.depart(by="tech-li", now=t(2))
    wo.arrive(by="tech-li", now=t(10))
    wo.pause("waiting_parts", by="tech-li", now=t(20))
    with pytest.raises(InvalidTransition):
        wo.depart(by="tech-li", now=t(30))  # paused from on_site, cannot jump to en_route
    wo.resume(by="tech-li", now=t(60))
    assert wo.state == "on_site"
    resumed = last_event(wo)
    assert (resumed.event_type, resumed.resumed_to, resumed.paused_seconds) == ("WorkOrderResumed", "on_site", 2400)


def test_an_unknown_pause_reason_is_refused():
    wo = make_order()
    wo.assign("tech-li", strategy="least_loaded", reason="r", by="system", now=t(0))
    wo.accept("tech-li", now=t(1))
    with pytest.raises(DomainError) as exc:
        wo.pause("lunch", by="tech-li", now=t(2))
    assert exc.value.field == "reason"


def test_booking_an_appointment_pauses_and_rebooking_moves_the_visit():
    wo = make_order()
    wo.assign("tech-li", strategy="least_loaded", reason="r", by="system", now=t(0))
    wo.accept("tech-li", now=t(1))
    wo.book_appointment(t(24 * 60), by="tech-li", now=t(2), note="业主明天在家")
    assert (wo.state, wo.pause_reason, wo.paused_from) == ("paused", "appointment_booked", "accepted")
    wo.book_appointment(t(26 * 60), by="tech-li", now=t(3))
    assert wo.appointment is not None and wo.appointment.visit_at == t(26 * 60)
    assert [e.event_type for e in wo.events[-3:]] == ["WorkOrderPaused", "AppointmentBooked", "AppointmentBooked"]
    with pytest.raises(DomainError):
        wo.book_appointment(t(1), by="tech-li", now=t(4))


def test_decline_and_timeout_send_the_work_back_and_remember_who_missed_it():
    wo = make_order()
    wo.assign("tech-li", strategy="least_loaded", reason="r", by="system", now=t(0), accept_by=t(5))
    with pytest.raises(DomainError) as exc:
        wo.decline("tech-ma", reason="busy", now=t(1))
    assert exc.value.code == "not_assignee"
    wo.decline("tech-li", reason="正在处理电梯困人", now=t(1))
    wo.assign("tech-ma", strategy="least_loaded", reason="r", by="system", now=t(1), accept_by=t(6))
    with pytest.raises(DomainError) as early:
        wo.time_out(now=t(5))
    assert early.value.code == "not_timed_out"
    wo.time_out(now=t(6))
    assert wo.state == "unassigned" and wo.tried == {"tech-li", "tech-ma"}
    timed_out = last_event(wo)
    assert (timed_out.event_type, timed_out.technician_id, timed_out.accept_by) == ("AssignmentTimedOut",
                                                                                  "tech-ma", t(6))


def test_grab_first_one_wins_and_the_others_are_refused():
    wo = make_order()
    wo.offer(["clean-chen", "clean-he"], by="system", now=t(0), accept_by=t(10))
    with pytest.raises(DomainError) as outsider:
        wo.grab("clean-lin", now=t(1))
    assert outsider.value.code == "not_in_pool"
    wo.grab("clean-he", now=t(1))
    with pytest.raises(DomainError) as late:
        wo.grab("clean-chen", now=t(1))
    assert late.value.code == "already_taken" and "clean-he" in late.value.message
    assert (wo.state, wo.technician_id) == ("accepted", "clean-he")


def test_an_untaken_grab_offer_times_out_and_excludes_the_whole_pool():
    wo = make_order()
    wo.offer(["clean-chen", "clean-he"], by="system", now=t(0), accept_by=t(10))
    wo.time_out(now=t(10))
    event = last_event(wo)
    assert (event.technician_id, event.pool) == (None, ["clean-chen", "clean-he"])
    assert wo.tried == {"clean-chen", "clean-he"}


def test_reassign_needs_a_reason_and_names_the_previous_technician():
    wo = make_order()
    wo.assign("tech-li", strategy="least_loaded", reason="r", by="system", now=t(0))
    wo.accept("tech-li", now=t(1))
    with pytest.raises(DomainError):
        wo.reassign("tech-ma", reason="", by="lead-zhao", now=t(2))
    with pytest.raises(InvalidTransition):
        wo.assign("tech-ma", strategy="least_loaded", reason="r", by="system", now=t(2))
    wo.reassign("tech-ma", reason="李师傅病假", by="lead-zhao", now=t(2))
    event = last_event(wo)
    assert (wo.state, event.strategy, event.previous_technician_id, event.reason) == (
        "assigned", "manual", "tech-li", "李师傅病假")


def test_resident_rejection_sends_the_work_back_and_counts():
    wo = make_order()
    wo.assign("tech-li", strategy="least_loaded", reason="r", by="system", now=t(0))
    wo.accept("tech-li", now=t(1))
    wo.depart(by="tech-li", now=t(2))
    wo.arrive(by="tech-li", now=t(10))
    wo.resolve("更换接头", by="tech-li", now=t(30))
    wo.resident_reject(reason="仍有渗水", by="tech-li", now=t(35))
    wo.arrive(by="tech-li", now=t(36))
    wo.resolve("重新密封", by="tech-li", now=t(50))
    wo.resident_accept(by="tech-li", now=t(55))
    assert wo.rejections == 1 and wo.state == "resident_accepted"


def test_cancel_needs_a_reason_and_is_refused_once_closed():
    wo = make_order()
    with pytest.raises(DomainError):
        wo.cancel(reason=" ", by="agent-007", now=t(1))
    wo.cancel(reason="住户已自行修好", by="agent-007", now=t(1))
    assert last_event(wo).cancelled_from == "unassigned"
    with pytest.raises(InvalidTransition) as exc:
        wo.cancel(reason="again", by="agent-007", now=t(2))
    assert exc.value.current_state == "cancelled"
