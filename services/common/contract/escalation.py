"""Events published by escalation (exchange `escalation.events`, routing key = event type)."""
from __future__ import annotations

from marshmallow import fields, validate  # noqa: F401

from services.common.contract.registry import DataSchema, event_schema  # noqa: F401

PRODUCER = "escalation"

CLOCKS = [
    "acknowledge", "first_response", "supervisor_answer", "on_site", "resolution", "plan",
    "complaint_reply", "return_visit", "revisit_fix", "letter_confirmation", "handover",
]


@event_schema(
    "ClockStarted",
    producer=PRODUCER,
    description="An SLA clock started for a request under the request's frozen policy.",
    example={"clock_id": "9d0d7f0e-2c53-4a39-b7b5-0a0c3c0f2d11", "request_no": "LY-20261129-000042",
             "clock": "resolution", "policy_version": 1, "target_seconds": 86400,
             "started_at": "2026-11-29T04:00:00+00:00", "deadline": "2026-11-30T04:00:00+00:00",
             "calendar_fallback": False},
)
class ClockStartedSchema(DataSchema):
    clock_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    clock = fields.String(required=True, validate=validate.OneOf(CLOCKS))
    policy_version = fields.Integer(required=True)
    target_seconds = fields.Integer(required=True, validate=validate.Range(min=1))
    started_at = fields.AwareDateTime(required=True)
    deadline = fields.AwareDateTime(required=True)
    calendar_fallback = fields.Boolean(load_default=False)
    # Added later, optional so that older producers' events still load.
    warn_at = fields.AwareDateTime(allow_none=True, load_default=None)
    rule = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=80))


_CLOCK_EXAMPLE = {"clock_id": "9d0d7f0e-2c53-4a39-b7b5-0a0c3c0f2d11", "request_no": "LY-20261129-000042",
                  "clock": "resolution"}


class _ClockSchema(DataSchema):
    clock_id = fields.UUID(required=True)
    request_no = fields.String(required=True, validate=validate.Length(min=1, max=40))
    clock = fields.String(required=True, validate=validate.OneOf(CLOCKS))


@event_schema(
    "ClockPaused",
    producer=PRODUCER,
    description="A clock stopped with a reason (waiting for the resident, for parts, no access); every pause is kept.",
    example={**_CLOCK_EXAMPLE, "reason": "waiting_parts", "paused_at": "2026-11-29T05:00:00+00:00"},
)
class ClockPausedSchema(_ClockSchema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))
    paused_at = fields.AwareDateTime(required=True)


@event_schema(
    "ClockResumed",
    producer=PRODUCER,
    description="A paused clock runs again; its deadline moved by exactly the paused time.",
    example={**_CLOCK_EXAMPLE, "reason": "waiting_parts", "paused_at": "2026-11-29T05:00:00+00:00",
             "resumed_at": "2026-11-29T05:40:00+00:00", "paused_seconds": 2400, "total_paused_seconds": 2400,
             "deadline": "2026-11-30T04:40:00+00:00"},
)
class ClockResumedSchema(_ClockSchema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))
    paused_at = fields.AwareDateTime(required=True)
    resumed_at = fields.AwareDateTime(required=True)
    paused_seconds = fields.Integer(required=True, validate=validate.Range(min=0))
    total_paused_seconds = fields.Integer(required=True, validate=validate.Range(min=0))
    deadline = fields.AwareDateTime(required=True)


@event_schema(
    "ClockWarned",
    producer=PRODUCER,
    description="A clock reached the policy's warning share of its target (default 80%) while still open.",
    example={**_CLOCK_EXAMPLE, "warned_at": "2026-11-30T00:12:00+00:00", "deadline": "2026-11-30T04:00:00+00:00",
             "elapsed_seconds": 69120, "target_seconds": 86400},
)
class ClockWarnedSchema(_ClockSchema):
    warned_at = fields.AwareDateTime(required=True)
    deadline = fields.AwareDateTime(required=True)
    elapsed_seconds = fields.Integer(required=True, validate=validate.Range(min=0))
    target_seconds = fields.Integer(required=True, validate=validate.Range(min=1))


@event_schema(
    "ClockBreached",
    producer=PRODUCER,
    description="A clock passed its deadline while open; the escalation ladder starts climbing.",
    example={**_CLOCK_EXAMPLE, "breached_at": "2026-11-30T04:00:00+00:00", "deadline": "2026-11-30T04:00:00+00:00",
             "target_seconds": 86400},
)
class ClockBreachedSchema(_ClockSchema):
    breached_at = fields.AwareDateTime(required=True)
    deadline = fields.AwareDateTime(required=True)
    target_seconds = fields.Integer(required=True, validate=validate.Range(min=1))


@event_schema(
    "ClockMet",
    producer=PRODUCER,
    description="The fact a clock waits for happened; elapsed running time excludes paused time.",
    example={**_CLOCK_EXAMPLE, "met_at": "2026-11-29T10:00:00+00:00", "elapsed_seconds": 19200,
             "paused_seconds": 2400, "target_seconds": 86400, "deadline": "2026-11-30T04:40:00+00:00",
             "on_time": True},
)
class ClockMetSchema(_ClockSchema):
    met_at = fields.AwareDateTime(required=True)
    elapsed_seconds = fields.Integer(required=True, validate=validate.Range(min=0))
    paused_seconds = fields.Integer(required=True, validate=validate.Range(min=0))
    target_seconds = fields.Integer(required=True, validate=validate.Range(min=1))
    deadline = fields.AwareDateTime(required=True)
    on_time = fields.Boolean(required=True)


@event_schema(
    "ClockRetargeted",
    producer=PRODUCER,
    description="A reclassification changed a clock's target under its frozen policy; running time carried over.",
    example={**_CLOCK_EXAMPLE, "policy_version": 1, "previous_target_seconds": 86400, "target_seconds": 10800,
             "elapsed_seconds": 5400, "previous_deadline": "2026-11-30T04:00:00+00:00",
             "deadline": "2026-11-29T07:00:00+00:00", "retargeted_at": "2026-11-29T05:30:00+00:00",
             "reason": "reclassified", "rule": "emergency", "calendar_fallback": False},
)
class ClockRetargetedSchema(_ClockSchema):
    policy_version = fields.Integer(required=True, validate=validate.Range(min=1))
    previous_target_seconds = fields.Integer(required=True, validate=validate.Range(min=1))
    target_seconds = fields.Integer(required=True, validate=validate.Range(min=1))
    elapsed_seconds = fields.Integer(required=True, validate=validate.Range(min=0))
    previous_deadline = fields.AwareDateTime(required=True)
    deadline = fields.AwareDateTime(required=True)
    retargeted_at = fields.AwareDateTime(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))
    rule = fields.String(required=True, validate=validate.Length(min=1, max=80))
    calendar_fallback = fields.Boolean(load_default=False)


@event_schema(
    "ClockCancelled",
    producer=PRODUCER,
    description="A clock was stopped without being met: the request was cancelled or the clock no longer applies.",
    example={**_CLOCK_EXAMPLE, "clock": "complaint_reply", "cancelled_at": "2026-11-29T05:30:00+00:00",
             "reason": "reclassified: the complaint_reply clock no longer applies"},
)
class ClockCancelledSchema(_ClockSchema):
    cancelled_at = fields.AwareDateTime(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))


@event_schema(
    "RequestEscalated",
    producer=PRODUCER,
    description="A request was escalated to a rung of the ladder, after a breach or because a condition rule fired.",
    example={"escalation_id": "5b7e0c7a-0c53-5d52-9a0e-7d5f0b3c2a11", "request_no": "LY-20261129-000042",
             "rung": "cs_supervisor", "rung_index": 1, "reason": "resolution clock breached", "source": "breach",
             "rule": None, "clock_id": "9d0d7f0e-2c53-4a39-b7b5-0a0c3c0f2d11", "clock": "resolution",
             "escalated_at": "2026-11-30T04:30:00+00:00"},
)
class RequestEscalatedSchema(DataSchema):
    escalation_id = fields.UUID(required=True)
    request_no = fields.String(required=True, validate=validate.Length(min=1, max=40))
    rung = fields.String(required=True, validate=validate.Length(min=1, max=40))
    rung_index = fields.Integer(required=True, validate=validate.Range(min=0))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=400))
    source = fields.String(required=True, validate=validate.OneOf(["breach", "condition"]))
    rule = fields.String(allow_none=True, load_default=None)
    clock_id = fields.UUID(allow_none=True, load_default=None)
    clock = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(CLOCKS))
    escalated_at = fields.AwareDateTime(required=True)


@event_schema(
    "EscalationAcknowledged",
    producer=PRODUCER,
    description="Someone at a rung took charge of an escalation; the ladder stops climbing.",
    example={"escalation_id": "5b7e0c7a-0c53-5d52-9a0e-7d5f0b3c2a11", "request_no": "LY-20261129-000042",
             "rung": "cs_supervisor", "rung_index": 1, "acknowledged_by": "staff-wang",
             "acknowledged_at": "2026-11-30T04:41:00+00:00"},
)
class EscalationAcknowledgedSchema(DataSchema):
    escalation_id = fields.UUID(required=True)
    request_no = fields.String(required=True, validate=validate.Length(min=1, max=40))
    rung = fields.String(required=True, validate=validate.Length(min=1, max=40))
    rung_index = fields.Integer(required=True, validate=validate.Range(min=0))
    acknowledged_by = fields.String(required=True, validate=validate.Length(min=1, max=80))
    acknowledged_at = fields.AwareDateTime(required=True)
