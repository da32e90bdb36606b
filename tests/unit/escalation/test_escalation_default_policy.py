"""Table-driven test of the default policy: start a clock, apply pauses and reclassifications, read the deadline."""
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml

from services.common.domain import DomainError
from services.escalation.domain.calendar import SHANGHAI, WorkingCalendar
from services.escalation.domain.clock import Clock, ClockState, start_clock
from services.escalation.domain.policy import DEFAULT_POLICY_DICT, ClockFacts, Policy, default_policy

POLICY = default_policy()
CAL = WorkingCalendar()
CID = UUID("9d0d7f0e-2c53-4a39-b7b5-0a0c3c0f2d11")


def sh(y, mo, d, h=10, mi=0):
    return datetime(y, mo, d, h, mi, tzinfo=SHANGHAI)


REPAIR = ClockFacts(category="repair", priority="normal", channel="phone", subcategory="plumbing")
EMERGENCY = replace(REPAIR, priority="emergency", emergency=True)
COMPLAINT = ClockFacts(category="complaint", priority="normal", channel="phone")

# (case, clock, facts, start, steps, expected deadline, expected target seconds, expected calendar fallback)
# steps: ("pause", at, reason) / ("resume", at) / ("reclassify", at, new facts)
CASES = [
    ("night emergency gets one hour on site", "on_site", EMERGENCY, sh(2026, 11, 29, 23, 30), [],
     sh(2026, 11, 30, 0, 30), 3600, False),
    ("early-morning emergency is still night", "on_site", EMERGENCY, sh(2026, 11, 30, 6, 59), [],
     sh(2026, 11, 30, 7, 59), 3600, False),
    ("day emergency gets fifteen minutes on site", "on_site", EMERGENCY, sh(2026, 11, 30, 7, 0), [],
     sh(2026, 11, 30, 7, 15), 900, False),
    ("ordinary repair gets two hours on site, day or night", "on_site", REPAIR, sh(2026, 11, 29, 23, 30), [],
     sh(2026, 11, 30, 1, 30), 7200, False),
    ("emergency resolution in three hours", "resolution", EMERGENCY, sh(2026, 11, 30), [],
     sh(2026, 11, 30, 13), 3 * 3600, False),
    ("ordinary resolution in 24 hours", "resolution", REPAIR, sh(2026, 11, 30), [], sh(2026, 12, 1), 86400, False),
    ("complaint the working day before National Day: capped at 7 calendar days", "complaint_reply", COMPLAINT,
     sh(2026, 9, 30), [], sh(2026, 10, 7), 7 * 86400, False),
    ("complaint two working days before National Day", "complaint_reply", COMPLAINT,
     sh(2026, 9, 29), [], sh(2026, 10, 6), 7 * 86400, False),
    ("complaint on 2026-12-30 without 2027 data falls back", "complaint_reply", COMPLAINT,
     sh(2026, 12, 30), [], sh(2027, 1, 5), 6 * 86400, True),
    ("a pause of 40 minutes moves the deadline by 40 minutes", "resolution", REPAIR, sh(2026, 11, 30),
     [("pause", sh(2026, 11, 30, 12), "waiting_parts"), ("resume", sh(2026, 11, 30, 12, 40))],
     sh(2026, 12, 1, 10, 40), 86400, False),
    ("reclassified to emergency half-way: 3 h from the start, already past", "resolution", REPAIR, sh(2026, 11, 30),
     [("reclassify", sh(2026, 11, 30, 22), EMERGENCY)], sh(2026, 11, 30, 13), 3 * 3600, False),
    ("reclassified to ordinary half-way: running time carries over", "resolution", EMERGENCY, sh(2026, 11, 30),
     [("reclassify", sh(2026, 11, 30, 11, 30), REPAIR)], sh(2026, 12, 1), 86400, False),
    ("pause then reclassification keep both the pause and the new target", "resolution", EMERGENCY,
     sh(2026, 11, 30), [("pause", sh(2026, 11, 30, 10, 30), "no_access"), ("resume", sh(2026, 11, 30, 11, 10)),
                        ("reclassify", sh(2026, 11, 30, 11, 30), REPAIR)],
     sh(2026, 12, 1, 10, 40), 86400, False),
    ("acknowledge for an online request", "acknowledge", replace(REPAIR, channel="online"), sh(2026, 11, 30), [],
     sh(2026, 11, 30, 10, 15), 900, False),
    ("first response in 30 minutes", "first_response", COMPLAINT, sh(2026, 11, 30), [],
     sh(2026, 11, 30, 10, 30), 1800, False),
    ("supervisor answers in 10 minutes", "supervisor_answer", COMPLAINT, sh(2026, 11, 30), [],
     sh(2026, 11, 30, 10, 10), 600, False),
    ("plan within 48 hours", "plan", REPAIR, sh(2026, 11, 30), [], sh(2026, 12, 2), 48 * 3600, False),
    ("return visit within 3 days", "return_visit", REPAIR, sh(2026, 11, 30), [], sh(2026, 12, 3), 3 * 86400, False),
    ("revisit fix within 24 hours", "revisit_fix", REPAIR, sh(2026, 11, 30), [], sh(2026, 12, 1), 86400, False),
    ("letter confirmation after 3 days", "letter_confirmation", COMPLAINT, sh(2026, 11, 30), [],
     sh(2026, 12, 3), 3 * 86400, False),
    ("handover acknowledged within 30 minutes", "handover", REPAIR, sh(2026, 11, 30, 8), [],
     sh(2026, 11, 30, 8, 30), 1800, False),
]


def target_of(policy: Policy, kind: str, facts: ClockFacts, start: datetime) -> int:
    resolved = policy.resolve(kind, facts, start, CAL)
    assert resolved is not None
    return resolved.target_seconds


@pytest.mark.parametrize("case, kind, facts, start, steps, deadline, target, fallback", CASES,
                         ids=[c[0] for c in CASES])
def test_default_policy(case, kind, facts, start, steps, deadline, target, fallback):
    clock = Clock.start(clock_id=CID, request_no="LY-1", kind=kind, policy=POLICY, facts=facts, started_at=start,
                        calendar=CAL)
    for step in steps:
        if step[0] == "pause":
            clock.pause(step[2], step[1])
        elif step[0] == "resume":
            clock.resume(step[1])
        else:
            clock.retarget(step[2], step[1], CAL)
    assert clock.deadline == deadline
    assert clock.target_seconds == target
    assert clock.calendar_fallback is fallback
    assert clock.policy_version == 1


def test_reclassified_half_way_to_emergency_breaches_at_once_with_elapsed_carried_over():
    clock = Clock.start(clock_id=CID, request_no="LY-1", kind="resolution", policy=POLICY, facts=REPAIR,
                        started_at=sh(2026, 11, 30), calendar=CAL)
    clock.pull_events()
    events: list[Any] = clock.retarget(EMERGENCY, sh(2026, 11, 30, 22), CAL)
    assert events[0].elapsed_seconds == 12 * 3600
    assert events[0].previous_target_seconds == 86400 and events[0].target_seconds == 3 * 3600
    fired = clock.fire_due(sh(2026, 11, 30, 22))
    assert [e.event_type for e in fired] == ["ClockWarned", "ClockBreached", "RequestEscalated"]
    assert clock.state is ClockState.BREACHED


def test_night_emergency_with_a_forty_minute_pause_warns_and_breaches_on_running_time():
    clock = Clock.start(clock_id=CID, request_no="LY-1", kind="on_site", policy=POLICY, facts=EMERGENCY,
                        started_at=sh(2026, 11, 29, 23, 0), calendar=CAL)
    clock.pause("no_access", sh(2026, 11, 29, 23, 10))
    assert clock.timers() == []
    clock.resume(sh(2026, 11, 29, 23, 50))
    timers = {t.kind: t.due_at for t in clock.timers()}
    assert timers["warning"] == sh(2026, 11, 30, 0, 28)  # 48 min running + 40 min paused
    assert timers["breach"] == sh(2026, 11, 30, 0, 40)


def test_acknowledge_applies_only_to_online_requests():
    args = dict(clock_id=CID, request_no="LY-1", kind="acknowledge", policy=POLICY, started_at=sh(2026, 11, 30),
                calendar=CAL)
    assert start_clock(facts=REPAIR, **args) is None
    assert start_clock(facts=replace(REPAIR, channel="online"), **args) is not None
    with pytest.raises(DomainError) as exc:
        Clock.start(facts=REPAIR, **args)
    assert exc.value.code == "clock_not_applicable"


def test_complaint_reply_does_not_apply_to_repairs_and_resolution_not_to_complaints():
    assert not POLICY.applies("complaint_reply", REPAIR, sh(2026, 11, 30))
    assert not POLICY.applies("resolution", COMPLAINT, sh(2026, 11, 30))


def test_the_policy_file_is_the_default_policy():
    path = Path(__file__).resolve().parents[3] / "services" / "escalation" / "policy.yml"
    assert yaml.safe_load(path.read_text(encoding="utf-8")) == DEFAULT_POLICY_DICT


def test_policy_round_trips_through_plain_data():
    assert Policy.from_dict(POLICY.to_dict()) == POLICY
    assert POLICY.with_version(2).version == 2


def test_a_running_clock_keeps_its_frozen_policy_when_a_new_version_is_saved():
    clock = Clock.start(clock_id=CID, request_no="LY-1", kind="resolution", policy=POLICY, facts=REPAIR,
                        started_at=sh(2026, 11, 30), calendar=CAL)
    d = POLICY.to_dict()
    d["version"] = 2
    d["clocks"]["resolution"] = [{"name": "all", "target": {"hours": 12}}]
    newer = Policy.from_dict(d)
    assert target_of(newer, "resolution", REPAIR, sh(2026, 11, 30)) == 12 * 3600
    clock.retarget(EMERGENCY, sh(2026, 11, 30, 11), CAL)
    clock.retarget(REPAIR, sh(2026, 11, 30, 11), CAL)
    assert clock.deadline == sh(2026, 12, 1)
    assert clock.policy_version == 1


def test_a_scaled_policy_turns_targets_and_waits_into_seconds():
    d = POLICY.to_dict()
    d["time_scale"] = 1 / 600  # 24 h -> 144 s, 30 min -> 3 s, 3 working days (capped at 7) -> 432 s
    scaled = Policy.from_dict(d)
    start = sh(2026, 11, 30)
    assert target_of(scaled, "resolution", REPAIR, start) == 144
    assert target_of(scaled, "complaint_reply", COMPLAINT, start) == 432
    assert scaled.scaled_ladder.rungs[0].wait_seconds == 3
    clock = Clock.start(clock_id=CID, request_no="LY-1", kind="resolution", policy=scaled, facts=REPAIR,
                        started_at=start, calendar=CAL)
    events = clock.fire_due(start + timedelta(seconds=144)) + clock.fire_due(start + timedelta(seconds=144 + 3))
    assert [(e.event_type, getattr(e, "rung", None)) for e in events] == [
        ("ClockWarned", None), ("ClockBreached", None), ("RequestEscalated", "front_desk"),
        ("RequestEscalated", "cs_supervisor")]


def test_explicit_second_targets_are_allowed_for_end_to_end_tests():
    d = POLICY.to_dict()
    d["clocks"]["first_response"] = [{"name": "e2e", "target": {"seconds": 5}}]
    d["ladder"] = [{"rung": r, "wait": {"seconds": 2}} for r in ("front_desk", "cs_supervisor", "cs_department",
                                                                  "manager", "leadership")]
    p = Policy.from_dict(d)
    assert target_of(p, "first_response", COMPLAINT, sh(2026, 11, 30)) == 5
    assert p.ladder.rungs[1].wait_seconds == 2


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(warning_share=1.5), "warning_share"),
    (lambda d: d.update(time_scale=0), "time_scale"),
    (lambda d: d["clocks"].update(teatime=[{"target": {"minutes": 5}}]), "clocks.teatime"),
    (lambda d: d["clocks"].update(plan=[{"target": {"fortnights": 1}}]), "clocks.plan[0].target"),
    (lambda d: d["clocks"].update(plan=[{"when": {"colour": ["red"]}, "target": {"hours": 1}}]), "clocks.plan[0].when"),
    (lambda d: d["clocks"].update(plan=[{"when": {"local_time": "25:00-07:00"}, "target": {"hours": 1}}]),
     "clocks.plan[0].when.local_time"),
    (lambda d: d["conditions"][0].update(rung="mayor"), "conditions[0].rung"),
    (lambda d: d["conditions"][0]["all"][0].update(fact="shoe_size"), "conditions[0].all[0].fact"),
    (lambda d: d["conditions"][0]["all"][0].update(op="~"), "conditions[0].all[0].op"),
    (lambda d: d.update(ladder=[]), "ladder"),
    (lambda d: d.update(colour="red"), "colour"),
])
def test_a_bad_policy_is_refused_naming_the_field(mutate, field):
    d = POLICY.to_dict()
    mutate(d)
    with pytest.raises(DomainError) as exc:
        Policy.from_dict(d)
    assert exc.value.field == field
    assert exc.value.code == "invalid_policy"


def test_only_the_complaint_reply_clock_reads_the_working_calendar() -> None:
    # Decides whether a clock start queries the calendar table: a 24x7 clock must not, a working-day one must.
    assert {k for k, _ in POLICY.clocks if POLICY.counts_working_days(k)} == {"complaint_reply"}
    assert not POLICY.counts_working_days("no_such_clock")
