"""Shift handover (交接班): the unfinished work passed to the incoming shift, acknowledged by its lead.

The reception procedure has the outgoing clerk write unfinished matters in the handover record for the next shift to
carry on (服务中心交接班记录表); here that list is built from the work orders themselves, with each one's SLA state.
An unacknowledged handover past its due time becomes an event escalation can act on.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, UTC
from typing import Any
from collections.abc import Iterable, Mapping
from uuid import UUID

from services.common.domain import DomainError, InvalidTransition, utc
from services.dispatch.domain import events as ev
from services.dispatch.domain.model import WorkOrder

SLA_STATES = ("ok", "at_risk", "breached", "paused", "unknown")
DEFAULT_WARN_SHARE = 0.8  # escalation's default warning point
DEFAULT_ACK_MINUTES = 30  # escalation's handover clock


def sla_state(wo: WorkOrder, now: datetime, warn_share: float = DEFAULT_WARN_SHARE) -> str:
    """A dispatch-side reading of the resolution deadline; escalation keeps the authoritative clocks."""
    if wo.state == "paused":
        return "paused"
    if wo.due_at is None:
        return "unknown"
    if now >= wo.due_at:
        return "breached"
    if now >= wo.created_at + (wo.due_at - wo.created_at) * warn_share:
        return "at_risk"
    return "ok"


def handover_item(wo: WorkOrder, now: datetime, sla: Mapping[UUID, str] | None = None) -> dict[str, Any]:
    return {
        "work_order_id": wo.id,
        "request_no": wo.request_no,
        "state": wo.state,
        "technician_id": wo.technician_id,
        "priority": wo.priority,
        "building": wo.building,
        "unit": wo.unit,
        "sla_state": (sla or {}).get(wo.id) or sla_state(wo, now),
        "due_at": wo.due_at,
        "pause_reason": wo.pause_reason,
        "appointment_at": wo.appointment.visit_at if wo.appointment else None,
    }


_FAR = datetime.max.replace(tzinfo=UTC)
_SLA_ORDER = {"breached": 0, "at_risk": 1, "ok": 2, "paused": 3, "unknown": 4}


@dataclass
class ShiftHandover:
    id: UUID
    property_id: str
    department: str
    outgoing_shift: str | None
    incoming_shift: str
    shift_date: date
    incoming_lead: str | None
    published_at: datetime
    ack_due_at: datetime
    items: list[dict[str, Any]]
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    overdue_reported: bool = False

    @classmethod
    def publish(cls, *, id: UUID, property_id: str, department: str, orders: Iterable[WorkOrder],
                incoming_shift: str, shift_date: date, now: datetime, outgoing_shift: str | None = None,
                incoming_lead: str | None = None, sla: Mapping[UUID, str] | None = None,
                ack_minutes: float = DEFAULT_ACK_MINUTES) -> tuple[ShiftHandover, ev.ShiftHandoverPublished]:
        """The handover of `department` at `property_id` for the shift starting now. Only unfinished work orders of
        that department and property are listed, the most urgent first. `sla` may carry escalation's own states."""
        now = utc(now)
        selected = [o for o in orders
                    if o.property_id == property_id and o.department == department and o.is_unfinished]
        items = sorted((handover_item(o, now, sla) for o in selected),
                       key=lambda i: (_SLA_ORDER.get(i["sla_state"], 9), i["due_at"] or _FAR, i["request_no"]))
        handover = cls(id, property_id, department, outgoing_shift, incoming_shift, shift_date, incoming_lead, now,
                       now + timedelta(minutes=ack_minutes), items)
        event = ev.ShiftHandoverPublished(
            handover_id=id, property_id=property_id, department=department, outgoing_shift=outgoing_shift,
            incoming_shift=incoming_shift, shift_date=shift_date.isoformat(), incoming_lead=incoming_lead,
            published_at=now, ack_due_at=handover.ack_due_at, items=items,
        )
        return handover, event

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    def acknowledge(self, *, by: str, now: datetime) -> ev.ShiftHandoverAcknowledged:
        if self.acknowledged:
            raise InvalidTransition(f"handover already acknowledged by {self.acknowledged_by}",
                                    current_state="acknowledged")
        if self.incoming_lead is not None and by != self.incoming_lead:
            raise DomainError(f"the incoming lead {self.incoming_lead} acknowledges this handover, not {by}",
                              field="by", code="not_incoming_lead")
        now = utc(now)
        self.acknowledged_by, self.acknowledged_at = by, now
        return ev.ShiftHandoverAcknowledged(handover_id=self.id, property_id=self.property_id,
                                            department=self.department, acknowledged_by=by, acknowledged_at=now,
                                            item_count=len(self.items))

    def check_overdue(self, *, now: datetime) -> ev.ShiftHandoverUnacknowledged | None:
        """Once, when the acknowledgement is late: the event escalation climbs on."""
        now = utc(now)
        if self.acknowledged or self.overdue_reported or now < self.ack_due_at:
            return None
        self.overdue_reported = True
        return ev.ShiftHandoverUnacknowledged(handover_id=self.id, property_id=self.property_id,
                                              department=self.department, incoming_lead=self.incoming_lead,
                                              published_at=self.published_at, ack_due_at=self.ack_due_at,
                                              detected_at=now)
