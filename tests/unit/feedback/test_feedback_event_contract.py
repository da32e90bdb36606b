"""Every event the feedback domain emits must serialise through its registered schema unchanged in meaning."""
from datetime import datetime, timedelta, UTC
from uuid import UUID

from services.common.contract.registry import all_specs, dump_data, spec_for
from services.common.domain import Event
from services.feedback.domain import events as ev
from services.feedback.domain.letters import LetterTemplate, ReplyLetter
from services.feedback.domain.model import ReturnVisit, SupervisorAudit, VisitOutcome, VisitSubject
from services.feedback.domain.policy import FeedbackPolicy
from services.feedback.domain.praise import record_praise
from services.feedback.domain.sampling import AuditCandidate, decide_return_visit
from services.feedback.domain.statistics import monthly_report
from services.feedback.domain.surveys import SatisfactionSurvey, ServiceRating

T0 = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
P = FeedbackPolicy()


def emitted() -> list[Event]:
    out: list[Event] = []
    d = decide_return_visit("LY-1", complaint_valid=True, paid_service=False, resolved_at=T0, policy=P)
    v = ReturnVisit.schedule(d, VisitSubject("LY", unit="3-1502"), now=T0)
    v.record_unreachable_attempt(method="phone", by="a", now=T0, policy=P)
    v.complete(VisitOutcome("on_site", "a", "unsatisfied", 1, True, resident_signed=False, comments="差"), now=T0,
               policy=P)
    out += v.events
    v2 = ReturnVisit.schedule(d, VisitSubject("LY"), now=T0)
    for _ in range(4):
        v2.record_unreachable_attempt(method="phone", by="a", now=T0, policy=P)
    out += v2.events
    audit = SupervisorAudit.start("2026-11", [AuditCandidate(UUID(int=1), "LY-1", True)], supervisor_id="s",
                                  now=T0, policy=P)
    out.append(audit.record_finding(UUID(int=1), outcome="confirmed", notes="", supervisor_id="s", now=T0))
    letter = ReplyLetter.draft(request_no="LY-1", department="eng", template=LetterTemplate("t", "t", "hi"),
                               values={}, author="a", now=T0, concerns_property=False, legal=True)
    for role in letter.required_roles:
        letter.review(role=role, reviewer_id="r", decision="approved", now=T0)
    letter.approve(approver_id="m", approver_role="marketing_manager", now=T0)
    letter.send(method="online", sent_by="a", now=T0, policy=P)
    letter.confirm(confirmed_by="a", now=T0)
    letter.archive(archived_by="a", now=T0)
    out += letter.events
    out.append(record_praise(property_id="LY", department="eng", channel="letter", summary="好", received_at=T0,
                             recorded_by="a", now=T0)[1])
    s = SatisfactionSurvey.open(property_id="LY", period="2026", households_total=10, now=T0, policy=P)
    s.answer(unit="1", ratings={"water": ServiceRating("satisfied", 5)}, now=T0)
    s.close(now=T0)
    s.record_action(service="water", description="洗水箱", owner_department="eng", now=T0,
                    due_at=T0 + timedelta(days=30))
    out += s.events
    out.append(monthly_report("2026-11", requests=[], households={"LY": 10}, policy=P, generated_at=T0)
               .published(UUID(int=2), now=T0))
    return out


def test_every_emitted_event_dumps_through_its_schema_keeping_every_field():
    events = emitted()
    for e in events:
        data = dump_data(e.event_type, e.to_dict())
        assert set(data) == set(e.to_dict()), e.event_type
        spec_for(e.event_type).schema().load(data)


def test_every_feedback_event_class_has_a_schema_and_every_schema_an_event():
    classes = {name for name, obj in vars(ev).items()
               if isinstance(obj, type) and issubclass(obj, Event) and obj is not Event}
    schemas = {s.event_type for s in all_specs() if s.producer == "feedback"}
    assert classes == schemas
    assert {e.event_type for e in emitted()} == classes


def test_return_visit_scheduled_keeps_its_published_fields():
    fields = set(spec_for("ReturnVisitScheduled").schema().fields)
    assert fields == {"visit_id", "request_no", "reason", "due_at", "scheduled_at"}
