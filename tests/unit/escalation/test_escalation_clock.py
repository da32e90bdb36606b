from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from services.common.contract.registry import spec_for
from services.common.domain import InvalidTransition
from services.escalation.domain.calendar import SHANGHAI, WorkingCalendar
from services.escalation.domain.clock import Clock, ClockState, check_transition
from services.escalation.domain.policy import ClockFacts, default_policy

POLICY = default_policy()
CAL = WorkingCalendar()
CID = UUID("9d0d7f0e-2c53-4a39-b7b5-0a0c3c0f2d11")
REPAIR = ClockFacts(category="repair", priority="normal", channel="phone")
COMPLAINT = ClockFacts(category="complaint", priority="normal", channel="phone")
START = datetime(2026, 11, 30, 10, 0, tzinfo=SHANGHAI)


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def first_response() -> Clock:  # 30 min target: warning at 24 min, ladder waits 30 min
    return Clock.start(clock_id=CID, request_no="LY-1", kind="first_response", policy=POLICY, facts=REPAIR,
                       started_at=START, calendar=CAL)


def test_warning_fires_once_at_eighty_percent():
    clock = first_response()
    warning = next(t for t in clock.timers() if t.kind == "warning")
    assert warning.due_at == at(24)
    assert clock.fire("warning", warning.token, at(23)) == []  # not due yet
    events = clock.fire("warning", warning.token, at(24))
    assert [e.event_type for e in events] == ["ClockWarned"]
    assert clock.fire("warning", warning.token, at(25)) == []
    assert [t.kind for t in clock.timers()] == ["breach"]


def test_breach_climbs_the_ladder_rung_by_rung_until_acknowledged():
    clock = first_response()
    clock.fire_due(at(24))
    breach = clock.timers()[0]
    events: list[Any] = clock.fire("breach", breach.token, at(30))
    assert [e.event_type for e in events] == ["ClockBreached", "RequestEscalated"]
    assert events[1].rung == "front_desk" and events[1].reason == "first_response clock breached"
    assert clock.fire("breach", breach.token, at(30)) == []
    rung = clock.timers()[0]
    assert (rung.kind, rung.due_at) == ("rung", at(60))
    climbed: list[Any] = clock.fire("rung", rung.token, at(60))
    assert [(e.rung, e.rung_index) for e in climbed] == [("cs_supervisor", 1)]
    assert clock.fire("rung", rung.token, at(61)) == []
    acked: list[Any] = clock.acknowledge_escalation("staff-wang", at(70))
    assert [(e.event_type, e.rung, e.acknowledged_by) for e in acked] == [
        ("EscalationAcknowledged", "cs_supervisor", "staff-wang")]
    assert clock.timers() == []
    met: Any = clock.meet(at(80))[0]
    assert (met.on_time, met.elapsed_seconds) == (False, 80 * 60)


def test_an_unanswered_breach_reaches_leadership_and_stops_there():
    clock = first_response()
    events: list[Any] = clock.fire_due(at(30))
    for i in range(1, 8):
        events += clock.fire_due(at(30 + 30 * i))
    rungs = [e.rung for e in events if e.event_type == "RequestEscalated"]
    assert rungs == ["front_desk", "cs_supervisor", "cs_department", "manager", "leadership"]
    assert clock.timers() == []


def test_meeting_the_clock_stops_the_ladder():
    clock = first_response()
    clock.fire_due(at(31))
    clock.meet(at(40))
    assert clock.state is ClockState.MET
    assert clock.timers() == []
    assert clock.escalation is not None and not clock.escalation.active


def test_met_records_running_time_without_pauses():
    clock = first_response()
    clock.pause("waiting_resident", at(5))
    clock.resume(at(45))
    clock.pause("no_access", at(50))
    met: Any = clock.meet(at(55))[0]
    assert met.elapsed_seconds == 10 * 60
    assert met.paused_seconds == 45 * 60
    assert met.on_time is True
    assert [(p.reason, p.seconds()) for p in clock.pauses] == [("waiting_resident", 2400), ("no_access", 300)]


def test_a_stale_timer_after_a_pause_does_nothing_and_the_new_one_fires():
    clock = first_response()
    old_breach = next(t for t in clock.timers() if t.kind == "breach")
    clock.pause("waiting_parts", at(10))
    resumed: Any = clock.resume(at(50))[0]
    assert resumed.paused_seconds == 2400 and resumed.deadline == at(70)
    assert clock.fire("breach", old_breach.token, at(30)) == []
    new_breach = next(t for t in clock.timers() if t.kind == "breach")
    assert new_breach.due_at == at(70)
    assert [e.event_type for e in clock.fire("breach", new_breach.token, at(70))] == [
        "ClockBreached", "RequestEscalated"]


def test_ladder_waits_in_running_time_when_a_breached_clock_is_paused():
    clock = first_response()
    clock.fire_due(at(30))
    clock.pause("waiting_resident", at(40))
    assert clock.timers() == []
    clock.resume(at(50))
    assert clock.state is ClockState.BREACHED
    assert clock.timers()[0].due_at == at(70)


def test_redelivered_pause_resume_and_met_change_nothing():
    clock = first_response()
    assert clock.pause("a", at(1))
    assert clock.pause("b", at(2)) == []
    assert clock.resume(at(3))
    assert clock.resume(at(4)) == []
    assert clock.meet(at(5))
    assert clock.meet(at(6)) == []


def test_a_stopped_clock_refuses_to_pause_or_be_retargeted():
    clock = first_response()
    clock.meet(at(5))
    with pytest.raises(InvalidTransition):
        clock.pause("late", at(6))
    with pytest.raises(InvalidTransition):
        clock.retarget(REPAIR, at(6), CAL)
    with pytest.raises(InvalidTransition):
        clock.cancel("x", at(6))


@pytest.mark.parametrize("previous, current", [
    (ClockState.MET, ClockState.RUNNING), (ClockState.CANCELLED, ClockState.MET), (None, ClockState.PAUSED),
    (ClockState.BREACHED, ClockState.RUNNING), (ClockState.MET, ClockState.MET),
])
def test_the_transition_table_refuses(previous, current):
    with pytest.raises(InvalidTransition):
        check_transition(previous, current)


def test_reclassifying_a_complaint_into_a_repair_cancels_its_reply_clock():
    clock = Clock.start(clock_id=CID, request_no="LY-1", kind="complaint_reply", policy=POLICY, facts=COMPLAINT,
                        started_at=START, calendar=CAL)
    events = clock.retarget(REPAIR, at(60), CAL)
    assert [e.event_type for e in events] == ["ClockCancelled"]
    assert clock.state is ClockState.CANCELLED


def test_a_retarget_that_moves_the_warning_point_ahead_warns_again():
    emergency = ClockFacts(category="repair", priority="emergency", channel="phone", emergency=True)
    clock = Clock.start(clock_id=CID, request_no="LY-1", kind="resolution", policy=POLICY, facts=emergency,
                        started_at=START, calendar=CAL)
    assert [e.event_type for e in clock.fire_due(at(150))] == ["ClockWarned"]
    clock.retarget(REPAIR, at(160), CAL)
    warning = next(t for t in clock.timers() if t.kind == "warning")
    assert warning.due_at == START + timedelta(hours=24 * 0.8)


def test_clock_survives_a_round_trip_through_storage():
    clock = first_response()
    clock.pause("waiting_parts", at(5))
    clock.resume(at(15))
    clock.fire_due(at(40))
    clock.fire_due(at(70))
    again = Clock.from_dict(clock.to_dict(), POLICY)
    assert again.timers() == clock.timers()
    assert again.deadline == clock.deadline
    assert again.escalation is not None and again.escalation.rung == "cs_supervisor"
    token = clock.timers()[0].token
    assert again.fire("rung", token, at(200)) == clock.fire("rung", token, at(200))


def test_every_event_of_a_clock_validates_against_the_contract():
    clock = first_response()
    clock.pause("waiting_parts", at(5))
    clock.resume(at(15))
    clock.fire_due(at(40))
    clock.fire_due(at(80))
    clock.retarget(REPAIR, at(85), CAL)
    clock.acknowledge_escalation("staff-wang", at(90))
    clock.meet(at(95))
    other = first_response()
    other.cancel("request cancelled", at(1))
    events = clock.pull_events() + other.pull_events()
    kinds = {e.event_type for e in events}
    assert kinds == {"ClockStarted", "ClockPaused", "ClockResumed", "ClockWarned", "ClockBreached",
                     "RequestEscalated", "ClockRetargeted", "EscalationAcknowledged", "ClockMet", "ClockCancelled"}
    for e in events:
        schema = spec_for(e.event_type).schema()
        dumped = schema.dump(e.to_dict())
        assert schema.validate(dumped) == {}, e.event_type
        assert set(dumped) == set(e.to_dict()), e.event_type
