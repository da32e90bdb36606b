"""Events intake publishes. Field names match services/common/contract/intake.py one for one.

No resident's name or phone number ever appears here: only `reporter_phone_masked` (138****1234).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from services.common.domain import Event


@dataclass(frozen=True)
class RequestRegistered(Event):
    request_no: str
    property_id: str
    building: str | None
    unit: str | None
    area: str | None
    channel: str
    source: str
    external_id: str | None
    category: str
    subcategory: str | None
    priority: str
    emergency: bool
    complaint_valid: bool | None
    paid_service: bool
    owner_agent: str
    reporter_kind: str
    reporter_phone_masked: str | None
    description: str
    registered_at: datetime
    validity: str | None = None
    confidence: float | None = None
    matched_terms: list[str] = field(default_factory=list)
    channel_details: dict[str, Any] = field(default_factory=dict)
    acknowledgement_required: bool = False
    duplicate_of: str | None = None
    incident_id: UUID | None = None
    # Facts escalation's condition rules act on (a VIP or directed case, compensation demanded at intake).
    vip: bool = False
    compensation_demanded: bool = False


@dataclass(frozen=True)
class RequestClassified(Event):
    """The automatic verdict at registration (also carried by RequestRegistered, kept for consumers of this one)."""

    request_no: str
    property_id: str
    category: str
    subcategory: str | None
    priority: str
    emergency: bool
    complaint_valid: bool | None
    validity: str | None
    confidence: float
    matched_terms: list[str]
    owner_agent: str
    classified_at: datetime


@dataclass(frozen=True)
class RequestReclassified(Event):
    request_no: str
    property_id: str
    previous_category: str
    previous_subcategory: str | None
    previous_priority: str
    previous_emergency: bool
    category: str
    subcategory: str | None
    priority: str
    emergency: bool
    complaint_valid: bool | None
    validity: str | None
    reason: str
    reclassified_by: str
    owner_agent: str
    reclassified_at: datetime


@dataclass(frozen=True)
class RequestAcknowledged(Event):
    request_no: str
    property_id: str
    channel: str
    how: str
    promised_at: datetime
    acknowledged_by: str
    owner_agent: str
    acknowledged_at: datetime


@dataclass(frozen=True)
class RequestAnsweredAtDesk(Event):
    request_no: str
    property_id: str
    category: str
    answer: str
    answered_by: str
    owner_agent: str
    answered_at: datetime


@dataclass(frozen=True)
class ConsultationReferred(Event):
    """A consultation the desk could not answer: it goes on as a normal request."""

    request_no: str
    property_id: str
    priority: str
    note: str
    referred_by: str
    owner_agent: str
    referred_at: datetime


@dataclass(frozen=True)
class DuplicateLinked(Event):
    request_no: str
    property_id: str
    duplicate_of: str
    reason: str
    owner_agent: str
    linked_at: datetime


@dataclass(frozen=True)
class IncidentClustered(Event):
    """A parent incident formed or grew. `request_no` is the report that made it form or grow."""

    incident_id: UUID
    request_no: str
    property_id: str
    building: str | None
    area: str | None
    category: str
    subcategory: str
    request_nos: list[str]
    new_request_nos: list[str]
    children_count: int
    first_reported_at: datetime
    clustered_at: datetime


@dataclass(frozen=True)
class RequestCancelled(Event):
    request_no: str
    property_id: str
    reason: str
    cancelled_by: str
    owner_agent: str
    cancelled_at: datetime


@dataclass(frozen=True)
class OwnershipHandedOver(Event):
    request_no: str
    property_id: str
    from_agent: str
    to_agent: str
    reason: str
    handed_over_by: str
    handed_over_at: datetime


@dataclass(frozen=True)
class RequestClosed(Event):
    request_no: str
    property_id: str
    category: str
    closed_reason: str
    closed_by: str
    owner_agent: str
    closed_at: datetime


@dataclass(frozen=True)
class LetterLogged(Event):
    letter_id: UUID
    property_id: str
    kind: str
    received_date: str
    routed_to: str
    subject: str
    sender_phone_masked: str | None
    logged_by: str
    logged_at: datetime
    request_no: str | None = None


@dataclass(frozen=True)
class LetterComplaintDecided(Event):
    letter_id: UUID
    property_id: str
    tracked: bool
    reason: str
    decided_by: str
    decided_at: datetime
    request_no: str | None = None


@dataclass(frozen=True)
class LetterPraiseRecorded(Event):
    letter_id: UUID
    property_id: str
    staff_id: str | None
    department: str | None
    received_date: str
    subject: str
    recorded_by: str
    recorded_at: datetime
    request_no: str | None = None


# --- staff actions whose facts start or stop escalation's clocks (services/escalation/domain/mapping.py) ---------
# Free text in these (reason, answer, plan, response, reply) has phone numbers and the reporter's name masked.

@dataclass(frozen=True)
class SupervisorCalledIn(Event):
    """The agent could not settle the request and asked the department supervisor (10-minute answer)."""

    request_no: str
    property_id: str
    category: str
    supervisor: str
    reason: str
    called_by: str
    owner_agent: str
    called_at: datetime


@dataclass(frozen=True)
class SupervisorAnswered(Event):
    request_no: str
    property_id: str
    supervisor: str
    answer: str
    answered_by: str
    owner_agent: str
    called_at: datetime
    answered_at: datetime


@dataclass(frozen=True)
class RequestMarkedComplex(Event):
    """A complex problem: a solution plan is due (48 hours)."""

    request_no: str
    property_id: str
    category: str
    reason: str
    marked_by: str
    owner_agent: str
    marked_at: datetime


@dataclass(frozen=True)
class PlanGiven(Event):
    request_no: str
    property_id: str
    plan: str
    given_by: str
    owner_agent: str
    marked_at: datetime
    given_at: datetime


@dataclass(frozen=True)
class FirstResponseGiven(Event):
    request_no: str
    property_id: str
    category: str
    response: str
    responded_by: str
    owner_agent: str
    responded_at: datetime


@dataclass(frozen=True)
class ComplaintReplied(Event):
    request_no: str
    property_id: str
    category: str
    complaint_valid: bool | None
    reply: str
    replied_by: str
    owner_agent: str
    replied_at: datetime
