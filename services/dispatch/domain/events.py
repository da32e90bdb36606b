"""Domain events of dispatch. Each class name is the event type on `dispatch.events`; the marshmallow schema of the
same name lives in services/common/contract/dispatch.py. No resident names or phone numbers here, ever."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from services.common.domain import Event


@dataclass(frozen=True, kw_only=True)
class WorkOrderEvent(Event):
    work_order_id: UUID
    request_no: str
    property_id: str
    department: str


@dataclass(frozen=True, kw_only=True)
class WorkOrderCreated(WorkOrderEvent):
    category: str
    subcategory: str | None
    priority: str
    assign_to: str
    skill: str | None
    route_rule: str
    building: str | None
    unit: str | None
    area: str | None
    public_area: bool
    paid_service: bool
    created_at: datetime
    by: str
    follow_up_of: UUID | None = None  # the work order a return visit found unfinished (feedback's follow-up)


@dataclass(frozen=True, kw_only=True)
class WorkOrderAssigned(WorkOrderEvent):
    technician_id: str
    strategy: str
    assigned_at: datetime
    night: bool
    reason: str = ""
    by: str = "system"
    accept_by: datetime | None = None
    previous_technician_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class WorkOrderOffered(WorkOrderEvent):
    pool: list[str]
    offered_at: datetime
    night: bool
    accept_by: datetime | None = None
    by: str = "system"


@dataclass(frozen=True, kw_only=True)
class AssignmentDeclined(WorkOrderEvent):
    technician_id: str
    reason: str
    declined_at: datetime


@dataclass(frozen=True, kw_only=True)
class AssignmentTimedOut(WorkOrderEvent):
    technician_id: str | None  # None when a grab pool let the offer lapse
    pool: list[str]
    assigned_at: datetime
    accept_by: datetime
    timed_out_at: datetime


@dataclass(frozen=True, kw_only=True)
class WorkOrderAccepted(WorkOrderEvent):
    technician_id: str
    strategy: str
    accepted_at: datetime


@dataclass(frozen=True, kw_only=True)
class TechnicianEnRoute(WorkOrderEvent):
    technician_id: str
    departed_at: datetime
    by: str


@dataclass(frozen=True, kw_only=True)
class TechnicianArrived(WorkOrderEvent):
    technician_id: str
    arrived_at: datetime
    by: str


@dataclass(frozen=True, kw_only=True)
class TemporaryMeasureTaken(WorkOrderEvent):
    technician_id: str
    measure: str
    taken_at: datetime
    by: str


@dataclass(frozen=True, kw_only=True)
class WorkOrderPaused(WorkOrderEvent):
    reason: str
    paused_from: str
    paused_at: datetime
    by: str
    until: datetime | None = None
    note: str | None = None


@dataclass(frozen=True, kw_only=True)
class WorkOrderResumed(WorkOrderEvent):
    resumed_to: str
    reason: str
    resumed_at: datetime
    paused_seconds: int
    by: str


@dataclass(frozen=True, kw_only=True)
class AppointmentBooked(WorkOrderEvent):
    visit_at: datetime
    booked_at: datetime
    by: str
    note: str | None = None


@dataclass(frozen=True, kw_only=True)
class QuoteIssued(WorkOrderEvent):
    items: list[dict[str, Any]]
    total_cents: int
    issued_at: datetime
    by: str


@dataclass(frozen=True, kw_only=True)
class ConsentRecorded(WorkOrderEvent):
    total_cents: int
    method: str
    consented_at: datetime
    recorded_by: str


@dataclass(frozen=True, kw_only=True)
class WorkOrderResolved(WorkOrderEvent):
    technician_id: str
    resolved_at: datetime
    resolution: str
    paid_service: bool
    fee_cents: int
    materials: list[dict[str, Any]] = field(default_factory=list)
    by: str = ""


@dataclass(frozen=True, kw_only=True)
class ResidentAccepted(WorkOrderEvent):
    accepted_at: datetime
    by: str
    note: str | None = None


@dataclass(frozen=True, kw_only=True)
class ResidentRejected(WorkOrderEvent):
    rejected_at: datetime
    by: str
    reason: str
    rejection_count: int


@dataclass(frozen=True, kw_only=True)
class WorkOrderClosed(WorkOrderEvent):
    closed_at: datetime
    by: str


@dataclass(frozen=True, kw_only=True)
class WorkOrderCancelled(WorkOrderEvent):
    cancelled_from: str
    reason: str
    cancelled_at: datetime
    by: str


@dataclass(frozen=True, kw_only=True)
class ShiftHandoverPublished(Event):
    handover_id: UUID
    property_id: str
    department: str
    outgoing_shift: str | None
    incoming_shift: str
    shift_date: str  # local date (ISO) the incoming shift starts on
    incoming_lead: str | None
    published_at: datetime
    ack_due_at: datetime
    items: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class ShiftHandoverAcknowledged(Event):
    handover_id: UUID
    property_id: str
    department: str
    acknowledged_by: str
    acknowledged_at: datetime
    item_count: int


@dataclass(frozen=True, kw_only=True)
class ShiftHandoverUnacknowledged(Event):
    handover_id: UUID
    property_id: str
    department: str
    incoming_lead: str | None
    published_at: datetime
    ack_due_at: datetime
    detected_at: datetime


@dataclass(frozen=True, kw_only=True)
class DailyCheckPublished(Event):
    report_id: UUID
    property_id: str
    day: str  # local date (ISO)
    generated_at: datetime
    totals: dict[str, int]
    departments: list[dict[str, Any]]
