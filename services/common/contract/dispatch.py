"""Events published by dispatch (exchange `dispatch.events`, routing key = event type).

The data classes of the same names are in services/dispatch/domain/events.py. No resident name or phone number
appears in any of them.
"""
from __future__ import annotations

from marshmallow import fields, validate  # noqa: F401

from services.common.contract.registry import DataSchema, event_schema  # noqa: F401

PRODUCER = "dispatch"

DEPARTMENTS = ["engineering", "security", "cleaning", "greening", "customer_service", "finance", "admin", "contractor"]
WORK_ORDER_STATES = [
    "unassigned", "offered", "assigned", "accepted", "en_route", "on_site", "temporary_measure", "paused",
    "resolved", "resident_rejected", "resident_accepted", "closed", "cancelled",
]
PAUSE_REASONS = ["waiting_parts", "resident_absent", "no_entry_permission", "appointment_booked"]
ASSIGN_TO = ["technician", "duty_lead", "department"]
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"  # a local calendar date, carried as text
SLA_STATES = ["ok", "at_risk", "breached", "paused", "unknown"]

WORK_ORDER_EXAMPLE = {
    "work_order_id": "3f1c1d2e-8a8b-4e57-9a53-6f1f5a2b9c10",
    "request_no": "LY-20261129-000042",
    "property_id": "LY",
    "department": "engineering",
}


class WorkOrderEventSchema(DataSchema):
    """Fields every work-order event carries."""

    work_order_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    property_id = fields.String(required=True)
    department = fields.String(required=True)


@event_schema(
    "WorkOrderAssigned",
    producer=PRODUCER,
    description="A work order was assigned to a technician (or a duty lead) of a department.",
    example={**WORK_ORDER_EXAMPLE, "technician_id": "tech-li", "strategy": "least_loaded",
             "assigned_at": "2026-11-29T04:00:02+00:00", "night": False},
)
class WorkOrderAssignedSchema(DataSchema):
    work_order_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    property_id = fields.String(required=True)
    department = fields.String(required=True)
    technician_id = fields.String(required=True)
    strategy = fields.String(required=True)
    assigned_at = fields.AwareDateTime(required=True)
    night = fields.Boolean(required=True)
    # Added with the dispatch domain; optional so that the first revision's messages still load.
    reason = fields.String(load_default="")
    by = fields.String(load_default="system")
    accept_by = fields.AwareDateTime(allow_none=True, load_default=None)
    previous_technician_id = fields.String(allow_none=True, load_default=None)


@event_schema(
    "WorkOrderResolved",
    producer=PRODUCER,
    description="The technician resolved the work; fee and materials recorded for paid services.",
    example={**WORK_ORDER_EXAMPLE, "technician_id": "tech-li", "resolved_at": "2026-11-29T06:00:00+00:00",
             "resolution": "更换水管接头", "paid_service": False, "fee_cents": 0},
)
class WorkOrderResolvedSchema(DataSchema):
    work_order_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    property_id = fields.String(required=True)
    department = fields.String(required=True)
    technician_id = fields.String(required=True)
    resolved_at = fields.AwareDateTime(required=True)
    resolution = fields.String(required=True, validate=validate.Length(max=4000))
    paid_service = fields.Boolean(required=True)
    fee_cents = fields.Integer(required=True, validate=validate.Range(min=0))
    # Added with the dispatch domain; optional so that the first revision's messages still load.
    materials = fields.List(fields.Dict(), load_default=list)
    by = fields.String(load_default="")


@event_schema(
    "WorkOrderCreated",
    producer=PRODUCER,
    description="Dispatch opened a work order for a registered request and routed it to a department.",
    example={**WORK_ORDER_EXAMPLE, "category": "repair", "subcategory": "plumbing", "priority": "urgent",
             "assign_to": "technician", "skill": "plumbing", "route_rule": "repair/plumbing/*", "building": "3",
             "unit": "3-1502", "area": None, "public_area": False, "paid_service": False,
             "created_at": "2026-11-29T04:00:01+00:00", "by": "system"},
)
class WorkOrderCreatedSchema(WorkOrderEventSchema):
    category = fields.String(required=True)
    subcategory = fields.String(allow_none=True, load_default=None)
    priority = fields.String(required=True)
    assign_to = fields.String(required=True, validate=validate.OneOf(ASSIGN_TO))
    skill = fields.String(allow_none=True, load_default=None)
    route_rule = fields.String(required=True)
    building = fields.String(allow_none=True, load_default=None)
    unit = fields.String(allow_none=True, load_default=None)
    area = fields.String(allow_none=True, load_default=None)
    public_area = fields.Boolean(required=True)
    paid_service = fields.Boolean(required=True)
    created_at = fields.AwareDateTime(required=True)
    by = fields.String(required=True)
    # Optional addition: set on the linked work order opened for feedback's FollowUpRaised, so escalation can
    # stop the revisit_fix clock; absent (null) on every other work order.
    follow_up_of = fields.UUID(allow_none=True, load_default=None)


@event_schema(
    "WorkOrderOffered",
    producer=PRODUCER,
    description="抢单: the work order was offered to a pool of on-duty technicians; the first to grab it gets it.",
    example={**WORK_ORDER_EXAMPLE, "department": "cleaning", "pool": ["clean-chen", "clean-he", "clean-lin"],
             "offered_at": "2026-11-29T02:10:00+00:00", "night": False,
             "accept_by": "2026-11-29T02:20:00+00:00", "by": "system"},
)
class WorkOrderOfferedSchema(WorkOrderEventSchema):
    pool = fields.List(fields.String(), required=True, validate=validate.Length(min=1))
    offered_at = fields.AwareDateTime(required=True)
    night = fields.Boolean(required=True)
    accept_by = fields.AwareDateTime(allow_none=True, load_default=None)
    by = fields.String(required=True)


@event_schema(
    "AssignmentDeclined",
    producer=PRODUCER,
    description="The assigned technician declined the work order with a reason; it goes to the next candidate.",
    example={**WORK_ORDER_EXAMPLE, "technician_id": "tech-li", "reason": "正在处理3栋电梯困人",
             "declined_at": "2026-11-29T04:01:30+00:00"},
)
class AssignmentDeclinedSchema(WorkOrderEventSchema):
    technician_id = fields.String(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
    declined_at = fields.AwareDateTime(required=True)


@event_schema(
    "AssignmentTimedOut",
    producer=PRODUCER,
    description="An assignment (or a grab offer, technician_id null) was not accepted in time; "
                "it is offered to the next candidate.",
    example={**WORK_ORDER_EXAMPLE, "technician_id": "tech-li", "pool": [],
             "assigned_at": "2026-11-29T04:00:02+00:00", "accept_by": "2026-11-29T04:05:02+00:00",
             "timed_out_at": "2026-11-29T04:05:10+00:00"},
)
class AssignmentTimedOutSchema(WorkOrderEventSchema):
    technician_id = fields.String(allow_none=True, required=True)
    pool = fields.List(fields.String(), load_default=list)
    assigned_at = fields.AwareDateTime(required=True)
    accept_by = fields.AwareDateTime(required=True)
    timed_out_at = fields.AwareDateTime(required=True)


@event_schema(
    "WorkOrderAccepted",
    producer=PRODUCER,
    description="The technician accepted (or grabbed) the work order.",
    example={**WORK_ORDER_EXAMPLE, "technician_id": "tech-li", "strategy": "least_loaded",
             "accepted_at": "2026-11-29T04:02:00+00:00"},
)
class WorkOrderAcceptedSchema(WorkOrderEventSchema):
    technician_id = fields.String(required=True)
    strategy = fields.String(required=True)
    accepted_at = fields.AwareDateTime(required=True)


@event_schema(
    "TechnicianEnRoute",
    producer=PRODUCER,
    description="The technician set off for the site.",
    example={**WORK_ORDER_EXAMPLE, "technician_id": "tech-li", "departed_at": "2026-11-29T04:03:00+00:00",
             "by": "tech-li"},
)
class TechnicianEnRouteSchema(WorkOrderEventSchema):
    technician_id = fields.String(required=True)
    departed_at = fields.AwareDateTime(required=True)
    by = fields.String(required=True)


@event_schema(
    "TechnicianArrived",
    producer=PRODUCER,
    description="The technician is on site (stops escalation's on-site clock).",
    example={**WORK_ORDER_EXAMPLE, "technician_id": "tech-li", "arrived_at": "2026-11-29T04:12:00+00:00",
             "by": "tech-li"},
)
class TechnicianArrivedSchema(WorkOrderEventSchema):
    technician_id = fields.String(required=True)
    arrived_at = fields.AwareDateTime(required=True)
    by = fields.String(required=True)


@event_schema(
    "TemporaryMeasureTaken",
    producer=PRODUCER,
    description="Work that cannot be finished at once was made safe with a temporary measure.",
    example={**WORK_ORDER_EXAMPLE, "technician_id": "tech-li", "measure": "关闭分户水阀,漏点临时包扎",
             "taken_at": "2026-11-29T04:20:00+00:00", "by": "tech-li"},
)
class TemporaryMeasureTakenSchema(WorkOrderEventSchema):
    technician_id = fields.String(required=True)
    measure = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    taken_at = fields.AwareDateTime(required=True)
    by = fields.String(required=True)


@event_schema(
    "WorkOrderPaused",
    producer=PRODUCER,
    description="Work paused with a reason (escalation stops the clock); resumed later to the same state.",
    example={**WORK_ORDER_EXAMPLE, "reason": "waiting_parts", "paused_from": "on_site",
             "paused_at": "2026-11-29T04:25:00+00:00", "by": "tech-li", "until": None, "note": "等待阀门配件"},
)
class WorkOrderPausedSchema(WorkOrderEventSchema):
    reason = fields.String(required=True, validate=validate.OneOf(PAUSE_REASONS))
    paused_from = fields.String(required=True, validate=validate.OneOf(WORK_ORDER_STATES))
    paused_at = fields.AwareDateTime(required=True)
    by = fields.String(required=True)
    until = fields.AwareDateTime(allow_none=True, load_default=None)
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=2000))


@event_schema(
    "WorkOrderResumed",
    producer=PRODUCER,
    description="A paused work order resumed to the state it was paused from.",
    example={**WORK_ORDER_EXAMPLE, "resumed_to": "on_site", "reason": "waiting_parts",
             "resumed_at": "2026-11-29T05:05:00+00:00", "paused_seconds": 2400, "by": "tech-li"},
)
class WorkOrderResumedSchema(WorkOrderEventSchema):
    resumed_to = fields.String(required=True, validate=validate.OneOf(WORK_ORDER_STATES))
    reason = fields.String(required=True)
    resumed_at = fields.AwareDateTime(required=True)
    paused_seconds = fields.Integer(required=True, validate=validate.Range(min=0))
    by = fields.String(required=True)


@event_schema(
    "AppointmentBooked",
    producer=PRODUCER,
    description="A visit time agreed with the resident; the work order pauses until then.",
    example={**WORK_ORDER_EXAMPLE, "visit_at": "2026-11-30T02:00:00+00:00",
             "booked_at": "2026-11-29T04:30:00+00:00", "by": "tech-li", "note": "业主明早10点在家"},
)
class AppointmentBookedSchema(WorkOrderEventSchema):
    visit_at = fields.AwareDateTime(required=True)
    booked_at = fields.AwareDateTime(required=True)
    by = fields.String(required=True)
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=2000))


class QuoteLineSchema(DataSchema):
    code = fields.String(required=True)
    name = fields.String(required=True)
    quantity = fields.Integer(required=True, validate=validate.Range(min=1))
    unit_price_cents = fields.Integer(required=True, validate=validate.Range(min=0))
    amount_cents = fields.Integer(required=True, validate=validate.Range(min=0))


@event_schema(
    "QuoteIssued",
    producer=PRODUCER,
    description="有偿服务: a quote from the price list for private-unit work; the resident must consent before work.",
    example={**WORK_ORDER_EXAMPLE,
             "items": [{"code": "pipe_joint", "name": "更换水管接头", "quantity": 2, "unit_price_cents": 4000,
                        "amount_cents": 8000}],
             "total_cents": 8000, "issued_at": "2026-11-29T04:01:00+00:00", "by": "agent-007"},
)
class QuoteIssuedSchema(WorkOrderEventSchema):
    items = fields.List(fields.Nested(QuoteLineSchema), required=True, validate=validate.Length(min=1))
    total_cents = fields.Integer(required=True, validate=validate.Range(min=0))
    issued_at = fields.AwareDateTime(required=True)
    by = fields.String(required=True)


@event_schema(
    "ConsentRecorded",
    producer=PRODUCER,
    description="The resident agreed to the quote of total_cents (how: signature, phone, app, in person).",
    example={**WORK_ORDER_EXAMPLE, "total_cents": 8000, "method": "phone",
             "consented_at": "2026-11-29T04:01:40+00:00", "recorded_by": "agent-007"},
)
class ConsentRecordedSchema(WorkOrderEventSchema):
    total_cents = fields.Integer(required=True, validate=validate.Range(min=0))
    method = fields.String(required=True, validate=validate.OneOf(["signature", "phone", "app", "in_person"]))
    consented_at = fields.AwareDateTime(required=True)
    recorded_by = fields.String(required=True)


@event_schema(
    "ResidentAccepted",
    producer=PRODUCER,
    description="验收: the resident (or staff on their behalf) accepted the work.",
    example={**WORK_ORDER_EXAMPLE, "accepted_at": "2026-11-29T06:10:00+00:00", "by": "tech-li",
             "note": "住户签字确认"},
)
class ResidentAcceptedSchema(WorkOrderEventSchema):
    accepted_at = fields.AwareDateTime(required=True)
    by = fields.String(required=True)
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=2000))


@event_schema(
    "ResidentRejected",
    producer=PRODUCER,
    description="The resident rejected the work; it goes back to the technician.",
    example={**WORK_ORDER_EXAMPLE, "rejected_at": "2026-11-29T06:10:00+00:00", "by": "tech-li",
             "reason": "接头仍有渗水", "rejection_count": 1},
)
class ResidentRejectedSchema(WorkOrderEventSchema):
    rejected_at = fields.AwareDateTime(required=True)
    by = fields.String(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    rejection_count = fields.Integer(required=True, validate=validate.Range(min=1))


@event_schema(
    "WorkOrderClosed",
    producer=PRODUCER,
    description="The work order was closed after the resident's acceptance.",
    example={**WORK_ORDER_EXAMPLE, "closed_at": "2026-11-29T06:15:00+00:00", "by": "agent-007"},
)
class WorkOrderClosedSchema(WorkOrderEventSchema):
    closed_at = fields.AwareDateTime(required=True)
    by = fields.String(required=True)


@event_schema(
    "WorkOrderCancelled",
    producer=PRODUCER,
    description="The work order was cancelled from an open state, with a reason.",
    example={**WORK_ORDER_EXAMPLE, "cancelled_from": "assigned", "reason": "住户已自行修好",
             "cancelled_at": "2026-11-29T04:08:00+00:00", "by": "agent-007"},
)
class WorkOrderCancelledSchema(WorkOrderEventSchema):
    cancelled_from = fields.String(required=True, validate=validate.OneOf(WORK_ORDER_STATES))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    cancelled_at = fields.AwareDateTime(required=True)
    by = fields.String(required=True)


class HandoverItemSchema(DataSchema):
    work_order_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(WORK_ORDER_STATES))
    technician_id = fields.String(allow_none=True, load_default=None)
    priority = fields.String(required=True)
    building = fields.String(allow_none=True, load_default=None)
    unit = fields.String(allow_none=True, load_default=None)
    sla_state = fields.String(required=True, validate=validate.OneOf(SLA_STATES))
    due_at = fields.AwareDateTime(allow_none=True, load_default=None)
    pause_reason = fields.String(allow_none=True, load_default=None)
    appointment_at = fields.AwareDateTime(allow_none=True, load_default=None)


@event_schema(
    "ShiftHandoverPublished",
    producer=PRODUCER,
    description="交接班: the unfinished work orders of a department, with SLA state, for the incoming shift; "
                "escalation's handover clock runs until it is acknowledged.",
    example={"handover_id": "8d0e6a43-1f3b-4c51-9d7e-2b7c4a9f0e11", "property_id": "LY",
             "department": "engineering", "outgoing_shift": "day", "incoming_shift": "night",
             "shift_date": "2026-11-29", "incoming_lead": "tech-wang",
             "published_at": "2026-11-29T14:00:00+00:00", "ack_due_at": "2026-11-29T14:30:00+00:00",
             "items": [{"work_order_id": "3f1c1d2e-8a8b-4e57-9a53-6f1f5a2b9c10",
                        "request_no": "LY-20261129-000042", "state": "paused", "technician_id": "tech-li",
                        "priority": "urgent", "building": "3", "unit": "3-1502", "sla_state": "paused",
                        "due_at": "2026-11-30T04:00:00+00:00", "pause_reason": "waiting_parts",
                        "appointment_at": None}]},
)
class ShiftHandoverPublishedSchema(DataSchema):
    handover_id = fields.UUID(required=True)
    property_id = fields.String(required=True)
    department = fields.String(required=True, validate=validate.OneOf(DEPARTMENTS))
    outgoing_shift = fields.String(allow_none=True, load_default=None)
    incoming_shift = fields.String(required=True)
    shift_date = fields.String(required=True, validate=validate.Regexp(ISO_DATE))
    incoming_lead = fields.String(allow_none=True, load_default=None)
    published_at = fields.AwareDateTime(required=True)
    ack_due_at = fields.AwareDateTime(required=True)
    items = fields.List(fields.Nested(HandoverItemSchema), required=True)


@event_schema(
    "ShiftHandoverAcknowledged",
    producer=PRODUCER,
    description="The incoming shift's lead acknowledged the handover (stops the handover clock).",
    example={"handover_id": "8d0e6a43-1f3b-4c51-9d7e-2b7c4a9f0e11", "property_id": "LY",
             "department": "engineering", "acknowledged_by": "tech-wang",
             "acknowledged_at": "2026-11-29T14:06:00+00:00", "item_count": 1},
)
class ShiftHandoverAcknowledgedSchema(DataSchema):
    handover_id = fields.UUID(required=True)
    property_id = fields.String(required=True)
    department = fields.String(required=True, validate=validate.OneOf(DEPARTMENTS))
    acknowledged_by = fields.String(required=True)
    acknowledged_at = fields.AwareDateTime(required=True)
    item_count = fields.Integer(required=True, validate=validate.Range(min=0))


@event_schema(
    "ShiftHandoverUnacknowledged",
    producer=PRODUCER,
    description="A handover was still unacknowledged at its due time; escalation may climb on it.",
    example={"handover_id": "8d0e6a43-1f3b-4c51-9d7e-2b7c4a9f0e11", "property_id": "LY",
             "department": "engineering", "incoming_lead": "tech-wang",
             "published_at": "2026-11-29T14:00:00+00:00", "ack_due_at": "2026-11-29T14:30:00+00:00",
             "detected_at": "2026-11-29T14:30:05+00:00"},
)
class ShiftHandoverUnacknowledgedSchema(DataSchema):
    handover_id = fields.UUID(required=True)
    property_id = fields.String(required=True)
    department = fields.String(required=True, validate=validate.OneOf(DEPARTMENTS))
    incoming_lead = fields.String(allow_none=True, load_default=None)
    published_at = fields.AwareDateTime(required=True)
    ack_due_at = fields.AwareDateTime(required=True)
    detected_at = fields.AwareDateTime(required=True)


class OpenOrderSchema(DataSchema):
    work_order_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(WORK_ORDER_STATES))
    technician_id = fields.String(allow_none=True, load_default=None)
    priority = fields.String(required=True)
    due_at = fields.AwareDateTime(allow_none=True, load_default=None)
    overdue = fields.Boolean(required=True)


class DepartmentCheckSchema(DataSchema):
    department = fields.String(required=True, validate=validate.OneOf(DEPARTMENTS))
    done = fields.Integer(required=True, validate=validate.Range(min=0))
    open = fields.Integer(required=True, validate=validate.Range(min=0))
    overdue = fields.Integer(required=True, validate=validate.Range(min=0))
    cancelled = fields.Integer(required=True, validate=validate.Range(min=0))
    open_orders = fields.List(fields.Nested(OpenOrderSchema), required=True)


@event_schema(
    "DailyCheckPublished",
    producer=PRODUCER,
    description="每日派工完成情况检查 (default 18:00 Asia/Shanghai): done, open and overdue per department, "
                "with the open list.",
    example={"report_id": "5b9a3c0e-7d1f-4f0a-8e6b-0c2d4e6f8a10", "property_id": "LY", "day": "2026-11-29",
             "generated_at": "2026-11-29T10:00:00+00:00",
             "totals": {"done": 12, "open": 1, "overdue": 0, "cancelled": 1},
             "departments": [{"department": "engineering", "done": 9, "open": 1, "overdue": 0, "cancelled": 1,
                              "open_orders": [{"work_order_id": "3f1c1d2e-8a8b-4e57-9a53-6f1f5a2b9c10",
                                               "request_no": "LY-20261129-000042", "state": "paused",
                                               "technician_id": "tech-li", "priority": "urgent",
                                               "due_at": "2026-11-30T04:00:00+00:00", "overdue": False}]},
                             {"department": "cleaning", "done": 3, "open": 0, "overdue": 0, "cancelled": 0,
                              "open_orders": []}]},
)
class DailyCheckPublishedSchema(DataSchema):
    report_id = fields.UUID(required=True)
    property_id = fields.String(required=True)
    day = fields.String(required=True, validate=validate.Regexp(ISO_DATE))
    generated_at = fields.AwareDateTime(required=True)
    totals = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    departments = fields.List(fields.Nested(DepartmentCheckSchema), required=True)
