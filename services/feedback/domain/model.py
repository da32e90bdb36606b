"""The return visit (回访) aggregate and the supervisor's monthly audit of return visits.

Command methods change the aggregate, append their events to `self.events` (the service layer moves them to the
outbox in the same transaction) and also return them.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from collections.abc import Iterable
from uuid import UUID

from services.common.domain import DomainError, Event, InvalidTransition, utc
from services.feedback.domain.events import (
    AuditFindingRecorded,
    FollowUpRaised,
    ReturnVisitAttemptFailed,
    ReturnVisitDone,
    ReturnVisitFailed,
    ReturnVisitScheduled,
    SatisfactionRecorded,
)
from services.feedback.domain.policy import SATISFACTION_LEVELS, VISIT_METHODS, FeedbackPolicy
from services.feedback.domain.sampling import (
    AuditCandidate,
    AuditSelection,
    VisitDecision,
    audit_period,
    select_for_audit,
)

VISIT_STATES = ("scheduled", "done", "failed")
AUDIT_OUTCOMES = ("confirmed", "discrepancy", "unreachable")


def check_visit_transition(previous: str, current: str) -> None:
    """The return visit's whole lifecycle; anything not listed is refused."""
    match (previous, current):
        case ("scheduled", "scheduled"):  # an attempt failed, a retry is planned
            return
        case ("scheduled", "done") | ("scheduled", "failed"):
            return
        case _:
            raise InvalidTransition(f"a return visit cannot go from {previous} to {current}", current_state=previous)


@dataclass(frozen=True)
class VisitSubject:
    """What the visit is about, copied from the request and its work order so that a follow-up can be raised
    without asking the other services."""

    property_id: str
    building: str | None = None
    unit: str | None = None
    subcategory: str | None = None
    department: str | None = None
    work_order_id: UUID | None = None
    paid_service: bool = False


@dataclass(frozen=True)
class Attempt:
    number: int
    method: str
    by: str
    at: datetime
    reached: bool
    note: str = ""


@dataclass(frozen=True)
class VisitOutcome:
    """What the visitor records when the resident is reached."""

    method: str  # phone | on_site
    visited_by: str
    level: str  # satisfied | basically_satisfied | unsatisfied
    score: int  # 1..5
    fee_checked: bool
    resident_signed: bool | None = None  # on-site visits only
    comments: str = ""
    problem_found: bool = False
    problem_description: str = ""

    def validate(self, paid_service: bool) -> None:
        if self.method not in VISIT_METHODS:
            raise DomainError(f"visit method must be one of {', '.join(VISIT_METHODS)}", field="method")
        if not self.visited_by:
            raise DomainError("who made the visit is required", field="visited_by")
        if self.level not in SATISFACTION_LEVELS:
            raise DomainError(f"satisfaction must be one of {', '.join(SATISFACTION_LEVELS)}", field="level")
        if isinstance(self.score, bool) or not isinstance(self.score, int) or not 1 <= self.score <= 5:
            raise DomainError("score must be an integer from 1 to 5", field="score")
        if self.method == "on_site" and self.resident_signed is None:
            raise DomainError("an on-site visit records whether the resident signed", field="resident_signed")
        if self.method == "phone" and self.resident_signed is not None:
            raise DomainError("a phone visit has no signature", field="resident_signed")
        if paid_service and not self.fee_checked:
            # 000 §二.6: the visit checks what the resident was charged; for a paid service that is the point.
            raise DomainError("a paid service's return visit must check the fee", field="fee_checked")
        if self.problem_found and not self.problem_description.strip():
            raise DomainError("describe the problem found on the visit", field="problem_description")


@dataclass(frozen=True)
class FollowUp:
    follow_up_id: UUID
    reason: str
    description: str
    raised_at: datetime
    due_at: datetime
    work_order_id: UUID | None = None  # the new work order, once dispatch has made it
    reached_maintenance_at: datetime | None = None


@dataclass
class ReturnVisit:
    visit_id: UUID
    request_no: str
    reason: str
    subject: VisitSubject
    resolved_at: datetime
    scheduled_at: datetime
    due_at: datetime
    seed_id: str
    draw: float
    rate: float
    state: str = "scheduled"
    attempts: list[Attempt] = field(default_factory=list)
    next_attempt_at: datetime | None = None
    outcome: VisitOutcome | None = None
    done_at: datetime | None = None
    failed_at: datetime | None = None
    follow_up: FollowUp | None = None
    events: list[Event] = field(default_factory=list, compare=False, repr=False)

    # --- creation ---

    @classmethod
    def schedule(
        cls, decision: VisitDecision, subject: VisitSubject, *, now: datetime, visit_id: UUID | None = None
    ) -> ReturnVisit:
        """A visit for a decision that requires one; emits ReturnVisitScheduled."""
        if not decision.required or decision.reason is None or decision.due_at is None:
            raise DomainError(f"request {decision.request_no} was not selected for a return visit", field="decision")
        now = utc(now)
        visit = cls(
            visit_id=visit_id or uuid.uuid4(),
            request_no=decision.request_no,
            reason=decision.reason,
            subject=subject,
            resolved_at=decision.resolved_at,
            scheduled_at=now,
            due_at=decision.due_at,
            seed_id=decision.seed_id,
            draw=decision.draw,
            rate=decision.rate,
            next_attempt_at=now,
        )
        visit.events.append(ReturnVisitScheduled(visit.visit_id, visit.request_no, visit.reason, visit.due_at, now))
        return visit

    # --- commands ---

    def record_unreachable_attempt(
        self, *, method: str, by: str, now: datetime, policy: FeedbackPolicy, note: str = ""
    ) -> list[Event]:
        """The resident could not be reached: plan the next retry, or record the visit failed after the last one."""
        now = utc(now)
        if method not in VISIT_METHODS:
            raise DomainError(f"visit method must be one of {', '.join(VISIT_METHODS)}", field="method")
        failures = [a for a in self.attempts if not a.reached]
        retries_left = len(policy.retry_after) - len(failures)
        target = "scheduled" if retries_left > 0 else "failed"
        check_visit_transition(self.state, target)
        attempt = Attempt(len(self.attempts) + 1, method, by, now, reached=False, note=note)
        self.attempts.append(attempt)
        new: list[Event]
        if target == "scheduled":
            first_failure = failures[0].at if failures else now
            # Offsets count from the first failure so the schedule does not drift when a retry is made late.
            next_at = max(first_failure + policy.retry_after[len(failures)], now)
            self.next_attempt_at = next_at
            new = [ReturnVisitAttemptFailed(self.visit_id, self.request_no, attempt.number, method, by, now, next_at,
                                            note)]
        else:
            self.state = "failed"
            self.failed_at = now
            self.next_attempt_at = None
            new = [ReturnVisitFailed(self.visit_id, self.request_no, "unreachable", len(self.attempts), now)]
        self.events.extend(new)
        return new

    def complete(self, outcome: VisitOutcome, *, now: datetime, policy: FeedbackPolicy,
                 follow_up_id: UUID | None = None) -> list[Event]:
        """The resident was reached: record satisfaction, and raise a follow-up when unsatisfied or a problem
        was found (it must reach maintenance within `policy.follow_up_within`, 000 §二.7)."""
        now = utc(now)
        check_visit_transition(self.state, "done")
        outcome.validate(self.subject.paid_service)
        self.state = "done"
        self.done_at = now
        self.next_attempt_at = None
        self.outcome = outcome
        self.attempts.append(Attempt(len(self.attempts) + 1, outcome.method, outcome.visited_by, now, reached=True))
        s = self.subject
        new: list[Event] = [
            SatisfactionRecorded(self.visit_id, self.request_no, s.property_id, s.department, outcome.level,
                                 outcome.score, outcome.method, outcome.fee_checked, outcome.resident_signed,
                                 outcome.comments, now),
        ]
        if outcome.problem_found or outcome.level == "unsatisfied":
            reason = "problem_found" if outcome.problem_found else "unsatisfied"
            description = (outcome.problem_description if outcome.problem_found else outcome.comments).strip()
            if not description:
                description = "回访不满意,需重新处理"
            self.follow_up = FollowUp(follow_up_id or uuid.uuid4(), reason, description, now,
                                      now + policy.follow_up_within)
            f = self.follow_up
            new.append(FollowUpRaised(f.follow_up_id, self.request_no, self.visit_id, s.work_order_id, s.property_id,
                                      s.building, s.unit, s.subcategory, s.department, reason, description,
                                      f.raised_at, f.due_at))
        new.insert(0, ReturnVisitDone(self.visit_id, self.request_no, outcome.method, outcome.visited_by, now,
                                      on_time=now <= self.due_at, follow_up_raised=self.follow_up is not None))
        self.events.extend(new)
        return new

    def gives_up_at(self, policy: FeedbackPolicy) -> datetime | None:
        """When an unreached visit is recorded as failed if its last planned retry was never made: the last retry's
        planned time (counted from the first failure, like the retries) plus the policy's lapse."""
        failures = [a for a in self.attempts if not a.reached]
        if self.state != "scheduled" or not failures:
            return None
        last_retry = failures[0].at + (policy.retry_after[-1] if policy.retry_after else timedelta(0))
        return last_retry + policy.retry_lapse

    def record_lapsed(self, *, now: datetime, policy: FeedbackPolicy) -> list[Event]:
        """The last retry lapsed without the resident being reached: the visit failed (unreachable)."""
        now = utc(now)
        check_visit_transition(self.state, "failed")
        give_up = self.gives_up_at(policy)
        if give_up is None or now < give_up:
            raise DomainError(f"return visit {self.visit_id} still has retries to make", field="visit_id",
                              code="not_lapsed")
        self.state = "failed"
        self.failed_at = now
        self.next_attempt_at = None
        new: list[Event] = [ReturnVisitFailed(self.visit_id, self.request_no, "unreachable", len(self.attempts), now)]
        self.events.extend(new)
        return new

    def follow_up_reached_maintenance(self, work_order_id: UUID, *, now: datetime) -> bool:
        """Dispatch made the follow-up's work order; returns whether that was within the 24 h."""
        now = utc(now)
        if self.follow_up is None:
            raise DomainError(f"return visit {self.visit_id} raised no follow-up", field="follow_up_id")
        if self.follow_up.work_order_id is not None and self.follow_up.work_order_id != work_order_id:
            raise DomainError("the follow-up already has another work order", field="work_order_id")
        if self.follow_up.reached_maintenance_at is None:
            self.follow_up = replace(self.follow_up, work_order_id=work_order_id, reached_maintenance_at=now)
        assert self.follow_up.reached_maintenance_at is not None
        return self.follow_up.reached_maintenance_at <= self.follow_up.due_at

    # --- queries ---

    def is_overdue(self, now: datetime) -> bool:
        return self.state == "scheduled" and utc(now) > self.due_at

    def is_attempt_due(self, now: datetime) -> bool:
        return self.state == "scheduled" and self.next_attempt_at is not None and utc(now) >= self.next_attempt_at


# --- supervisor audit ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditFinding:
    visit_id: UUID
    request_no: str
    outcome: str
    notes: str
    supervisor_id: str
    recorded_at: datetime


@dataclass
class SupervisorAudit:
    """One month's re-check of return visits (003 篇3 §3.4): every paid service and a sample of the rest."""

    audit_id: UUID
    period: str
    supervisor_id: str
    selection: list[AuditSelection]
    started_at: datetime
    findings: dict[UUID, AuditFinding] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def start(cls, period: str, candidates: Iterable[AuditCandidate], *, supervisor_id: str, now: datetime,
              policy: FeedbackPolicy, audit_id: UUID | None = None) -> SupervisorAudit:
        audit_period(period)
        if not supervisor_id:
            raise DomainError("the audit needs its supervisor", field="supervisor_id")
        selection = select_for_audit(candidates, period, policy.audit_sampling)
        return cls(audit_id or uuid.uuid4(), period, supervisor_id, selection, utc(now))

    def record_finding(self, visit_id: UUID, *, outcome: str, notes: str, supervisor_id: str,
                       now: datetime) -> AuditFindingRecorded:
        now = utc(now)
        if outcome not in AUDIT_OUTCOMES:
            raise DomainError(f"finding must be one of {', '.join(AUDIT_OUTCOMES)}", field="outcome")
        chosen = next((s for s in self.selection if s.visit_id == visit_id), None)
        if chosen is None:
            raise DomainError(f"visit {visit_id} is not in the {self.period} audit sample", field="visit_id")
        if visit_id in self.findings:
            raise DomainError(f"visit {visit_id} already has a finding in this audit", field="visit_id",
                              code="duplicate")
        if outcome == "discrepancy" and not notes.strip():
            raise DomainError("a discrepancy needs notes saying what differed", field="notes")
        self.findings[visit_id] = AuditFinding(visit_id, chosen.request_no, outcome, notes, supervisor_id, now)
        event = AuditFindingRecorded(self.audit_id, self.period, visit_id, chosen.request_no, supervisor_id,
                                     chosen.reason, outcome, notes, now)
        self.events.append(event)
        return event

    @property
    def outstanding(self) -> list[AuditSelection]:
        return [s for s in self.selection if s.visit_id not in self.findings]

    @property
    def complete(self) -> bool:
        return not self.outstanding
