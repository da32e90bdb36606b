"""Every event feedback publishes. Field names match the schemas in services/common/contract/feedback.py.

No resident name or phone appears here: visits and letters are tied to the request number only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from services.common.domain import Event


# --- return visits ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReturnVisitScheduled(Event):
    # The published contract: these five fields exactly (the sampling draw stays on the visit record).
    visit_id: UUID
    request_no: str
    reason: str  # valid_complaint | paid_service | sampled
    due_at: datetime
    scheduled_at: datetime


@dataclass(frozen=True)
class ReturnVisitAttemptFailed(Event):
    visit_id: UUID
    request_no: str
    attempt: int
    method: str
    attempted_by: str
    failed_at: datetime
    next_attempt_at: datetime
    note: str = ""


@dataclass(frozen=True)
class ReturnVisitFailed(Event):
    visit_id: UUID
    request_no: str
    reason: str  # unreachable
    attempts: int
    failed_at: datetime


@dataclass(frozen=True)
class ReturnVisitDone(Event):
    visit_id: UUID
    request_no: str
    method: str
    visited_by: str
    done_at: datetime
    on_time: bool
    follow_up_raised: bool


@dataclass(frozen=True)
class SatisfactionRecorded(Event):
    visit_id: UUID
    request_no: str
    property_id: str
    department: str | None
    level: str
    score: int
    method: str
    fee_checked: bool
    resident_signed: bool | None
    comments: str
    recorded_at: datetime


@dataclass(frozen=True)
class FollowUpRaised(Event):
    """Dispatch turns this into a work order; escalation's revisit-fix clock runs until it has one."""

    follow_up_id: UUID
    request_no: str
    visit_id: UUID
    work_order_id: UUID | None
    property_id: str
    building: str | None
    unit: str | None
    subcategory: str | None
    department: str | None
    reason: str  # unsatisfied | problem_found
    description: str
    raised_at: datetime
    due_at: datetime


@dataclass(frozen=True)
class AuditFindingRecorded(Event):
    audit_id: UUID
    period: str
    visit_id: UUID
    request_no: str
    supervisor_id: str
    selection_reason: str  # paid_service | sampled
    outcome: str  # confirmed | discrepancy | unreachable
    notes: str
    recorded_at: datetime


# --- reply letters ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReplyLetterDrafted(Event):
    letter_id: UUID
    request_no: str
    letter_version: int
    template_id: str | None
    drafted_by: str
    drafted_at: datetime
    required_reviewers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReplyLetterReviewed(Event):
    letter_id: UUID
    request_no: str
    letter_version: int
    role: str
    reviewer_id: str
    decision: str  # approved | changes_requested
    comments: str
    reviewed_at: datetime
    pending_roles: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReplyLetterApproved(Event):
    letter_id: UUID
    request_no: str
    letter_version: int
    approved_by: str
    approved_at: datetime


@dataclass(frozen=True)
class ReplyLetterSent(Event):
    letter_id: UUID
    request_no: str
    letter_version: int
    method: str  # registered_mail | online
    tracking_no: str | None
    sent_by: str
    sent_at: datetime
    confirmation_due_at: datetime


@dataclass(frozen=True)
class ReplyLetterConfirmed(Event):
    letter_id: UUID
    request_no: str
    confirmed_by: str
    confirmed_at: datetime
    received: bool
    on_time: bool
    notes: str = ""


@dataclass(frozen=True)
class ReplyLetterArchived(Event):
    letter_id: UUID
    request_no: str
    versions: int
    archived_by: str
    archived_at: datetime
    notify_roles: list[str] = field(default_factory=list)


# --- praise, surveys, reports ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PraiseRecorded(Event):
    praise_id: UUID
    property_id: str
    target_kind: str  # staff | department
    staff_id: str | None
    department: str
    channel: str
    summary: str
    received_at: datetime
    recorded_by: str
    recorded_at: datetime
    request_no: str | None = None
    letter_id: str | None = None


@dataclass(frozen=True)
class SatisfactionSurveyClosed(Event):
    survey_id: UUID
    property_id: str
    period: str
    households_total: int
    responses: int
    response_rate: float
    results: list[dict[str, Any]]
    closed_at: datetime
    request_no: str | None = None


@dataclass(frozen=True)
class SurveyActionRecorded(Event):
    survey_id: UUID
    action_id: UUID
    property_id: str
    service: str
    description: str
    owner_department: str
    recorded_at: datetime
    due_at: datetime | None = None
    request_no: str | None = None


@dataclass(frozen=True)
class MonthlyReportPublished(Event):
    report_id: UUID
    period: str
    property_id: str | None
    generated_at: datetime
    requests_total: int
    return_visit_rate: float | None
    satisfaction_rate: float | None
    valid_complaint_rate: float | None
    praise_total: int
    request_no: str | None = None
