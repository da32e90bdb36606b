from dataclasses import replace
from datetime import datetime, timedelta, UTC
from uuid import UUID

import pytest

from services.common.domain import DomainError, InvalidTransition
from services.feedback.domain.events import (
    FollowUpRaised,
    ReturnVisitAttemptFailed,
    ReturnVisitDone,
    ReturnVisitFailed,
    ReturnVisitScheduled,
    SatisfactionRecorded,
)
from services.feedback.domain.model import ReturnVisit, SupervisorAudit, VisitOutcome, VisitSubject
from services.feedback.domain.policy import FeedbackPolicy, SamplingConfig
from services.feedback.domain.sampling import AuditCandidate, decide_return_visit

T0 = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
POLICY = FeedbackPolicy()
WO = UUID("3f1c1d2e-8a8b-4e57-9a53-6f1f5a2b9c10")
SUBJECT = VisitSubject(property_id="LY", building="3", unit="3-1502", subcategory="plumbing",
                       department="engineering", work_order_id=WO, paid_service=True)


def scheduled_visit(subject=SUBJECT):
    decision = decide_return_visit("LY-20261129-000042", complaint_valid=None, paid_service=subject.paid_service,
                                   resolved_at=T0, policy=POLICY)
    return ReturnVisit.schedule(decision, subject, now=T0 + timedelta(seconds=1), visit_id=UUID(int=7))


def phone_outcome(**kw):
    base = VisitOutcome(method="phone", visited_by="agent-007", level="satisfied", score=5, fee_checked=True)
    return replace(base, **kw)


def test_scheduling_emits_the_contract_event_with_the_due_date():
    v = scheduled_visit()
    assert v.events == [ReturnVisitScheduled(UUID(int=7), "LY-20261129-000042", "paid_service",
                                             T0 + timedelta(days=3), T0 + timedelta(seconds=1))]
    assert (v.seed_id, v.rate) == ("dev", 0.10)


def test_unselected_request_cannot_be_scheduled():
    decision = decide_return_visit("X-1", complaint_valid=None, paid_service=False, resolved_at=T0,
                                   policy=FeedbackPolicy(return_visit_sampling=SamplingConfig(rate=0.0)))
    with pytest.raises(DomainError):
        ReturnVisit.schedule(decision, SUBJECT, now=T0)


def test_unreachable_resident_is_retried_after_two_hours_next_day_and_two_days_then_failed():
    v = scheduled_visit()
    first = T0 + timedelta(hours=1)
    (e1,) = v.record_unreachable_attempt(method="phone", by="agent-007", now=first, policy=POLICY)
    assert isinstance(e1, ReturnVisitAttemptFailed) and e1.next_attempt_at == first + timedelta(hours=2)
    (e2,) = v.record_unreachable_attempt(method="phone", by="agent-007", now=first + timedelta(hours=2),
                                         policy=POLICY)
    assert e2.next_attempt_at == first + timedelta(days=1)
    (e3,) = v.record_unreachable_attempt(method="phone", by="agent-007", now=first + timedelta(days=1),
                                         policy=POLICY)
    assert e3.next_attempt_at == first + timedelta(days=2) and v.state == "scheduled"
    (e4,) = v.record_unreachable_attempt(method="on_site", by="agent-007", now=first + timedelta(days=2),
                                         policy=POLICY)
    assert e4 == ReturnVisitFailed(v.visit_id, v.request_no, "unreachable", 4, first + timedelta(days=2))
    assert v.state == "failed" and v.next_attempt_at is None
    with pytest.raises(InvalidTransition) as exc:
        v.complete(phone_outcome(), now=first + timedelta(days=2, hours=1), policy=POLICY)
    assert exc.value.current_state == "failed"


def test_satisfied_phone_visit_records_satisfaction_and_raises_no_follow_up():
    v = scheduled_visit()
    events = v.complete(phone_outcome(comments="很好"), now=T0 + timedelta(days=1), policy=POLICY)
    assert [type(e) for e in events] == [ReturnVisitDone, SatisfactionRecorded]
    done, sat = events
    assert done.on_time and not done.follow_up_raised
    assert (sat.level, sat.score, sat.fee_checked, sat.resident_signed, sat.department) == (
        "satisfied", 5, True, None, "engineering")
    with pytest.raises(InvalidTransition):
        v.complete(phone_outcome(), now=T0 + timedelta(days=1), policy=POLICY)


def test_unsatisfied_resident_reopens_the_request_with_a_follow_up_due_in_24_hours():
    v = scheduled_visit()
    now = T0 + timedelta(days=4)
    events = v.complete(phone_outcome(level="unsatisfied", score=2, comments="还在漏水"), now=now, policy=POLICY,
                        follow_up_id=UUID(int=99))
    done, _, follow = events
    assert not done.on_time and done.follow_up_raised
    assert follow == FollowUpRaised(UUID(int=99), "LY-20261129-000042", UUID(int=7), WO, "LY", "3", "3-1502",
                                    "plumbing", "engineering", "unsatisfied", "还在漏水", now,
                                    now + timedelta(hours=24))
    assert v.follow_up_reached_maintenance(UUID(int=100), now=now + timedelta(hours=3))
    with pytest.raises(DomainError):
        v.follow_up_reached_maintenance(UUID(int=101), now=now + timedelta(hours=4))


def test_problem_found_on_a_satisfied_on_site_visit_still_raises_a_follow_up():
    v = scheduled_visit()
    outcome = VisitOutcome(method="on_site", visited_by="sup-wang", level="basically_satisfied", score=4,
                           fee_checked=True, resident_signed=True, problem_found=True,
                           problem_description="接头处仍有渗水")
    events = v.complete(outcome, now=T0 + timedelta(days=2), policy=POLICY)
    follow = events[-1]
    assert isinstance(follow, FollowUpRaised)
    assert (follow.reason, follow.description) == ("problem_found", "接头处仍有渗水")
    late = v.follow_up_reached_maintenance(UUID(int=5), now=T0 + timedelta(days=3, hours=1))
    assert late is False


@pytest.mark.parametrize("kw, bad_field", [
    (dict(method="on_site"), "resident_signed"),
    (dict(resident_signed=True), "resident_signed"),
    (dict(score=6), "score"),
    (dict(level="happy"), "level"),
    (dict(fee_checked=False), "fee_checked"),
    (dict(problem_found=True), "problem_description"),
])
def test_incomplete_visit_records_are_refused_naming_the_field(kw, bad_field):
    v = scheduled_visit()
    with pytest.raises(DomainError) as exc:
        v.complete(phone_outcome(**kw), now=T0 + timedelta(days=1), policy=POLICY)
    assert exc.value.field == bad_field
    assert v.state == "scheduled"


def test_supervisor_audit_records_findings_only_for_selected_visits_once():
    cands = [AuditCandidate(UUID(int=1), "LY-1", True)] + [
        AuditCandidate(UUID(int=i), f"LY-{i}", False) for i in range(2, 200)]
    audit = SupervisorAudit.start("2026-11", cands, supervisor_id="sup-wang", now=T0, policy=POLICY,
                                  audit_id=UUID(int=500))
    assert any(s.visit_id == UUID(int=1) and s.reason == "paid_service" for s in audit.selection)
    chosen = {s.visit_id for s in audit.selection}
    not_chosen = next(c.visit_id for c in cands if c.visit_id not in chosen)
    with pytest.raises(DomainError):
        audit.record_finding(not_chosen, outcome="confirmed", notes="", supervisor_id="sup-wang", now=T0)
    e = audit.record_finding(UUID(int=1), outcome="confirmed", notes="", supervisor_id="sup-wang", now=T0)
    assert (e.selection_reason, e.request_no, e.period) == ("paid_service", "LY-1", "2026-11")
    with pytest.raises(DomainError):
        audit.record_finding(UUID(int=1), outcome="confirmed", notes="", supervisor_id="sup-wang", now=T0)
    assert not audit.complete and len(audit.outstanding) == len(audit.selection) - 1


def test_a_visit_whose_last_retry_lapsed_is_failed_unreachable_and_not_before():
    v = scheduled_visit()
    assert v.gives_up_at(POLICY) is None  # never tried: nothing to lapse
    first = T0 + timedelta(hours=1)
    v.record_unreachable_attempt(method="phone", by="agent-007", now=first, policy=POLICY)
    give_up = first + timedelta(days=2) + POLICY.retry_lapse
    assert v.gives_up_at(POLICY) == give_up
    with pytest.raises(DomainError):
        v.record_lapsed(now=give_up - timedelta(seconds=1), policy=POLICY)
    (e,) = v.record_lapsed(now=give_up, policy=POLICY)
    assert isinstance(e, ReturnVisitFailed) and (e.reason, e.attempts) == ("unreachable", 1)
    assert v.state == "failed" and v.gives_up_at(POLICY) is None
    with pytest.raises(InvalidTransition):
        v.record_lapsed(now=give_up, policy=POLICY)


def test_retry_lapse_is_configurable():
    p = FeedbackPolicy.from_mapping({"return_visit": {"retry_after_hours": [1], "retry_lapse_hours": 0.5}})
    assert p.retry_after == (timedelta(hours=1),) and p.retry_lapse == timedelta(minutes=30)
