"""Events published by feedback (exchange `feedback.events`, routing key = event type)."""
from __future__ import annotations

from marshmallow import fields, validate  # noqa: F401

from services.common.contract.registry import DataSchema, event_schema  # noqa: F401

PRODUCER = "feedback"

@event_schema(
    "ReturnVisitScheduled",
    producer=PRODUCER,
    description="A return visit (回访) is owed for a resolved request: always for valid complaints and paid services, "
                "otherwise by a reproducible sample.",
    example={"visit_id": "0b8e5f4a-7c1d-4d7e-9a2b-3c4d5e6f7a8b", "request_no": "LY-20261129-000042",
             "reason": "sampled", "due_at": "2026-12-02T06:00:00+00:00",
             "scheduled_at": "2026-11-29T06:00:01+00:00"},
)
class ReturnVisitScheduledSchema(DataSchema):
    visit_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    reason = fields.String(required=True, validate=validate.OneOf(["valid_complaint", "paid_service", "sampled"]))
    due_at = fields.AwareDateTime(required=True)
    scheduled_at = fields.AwareDateTime(required=True)


SATISFACTION_LEVELS = ["satisfied", "basically_satisfied", "unsatisfied"]
VISIT_METHODS = ["phone", "on_site"]
REVIEWER_ROLES = ["property_manager", "property_department_head", "cs_supervisor", "department_manager", "lawyer"]
SURVEY_SERVICES = ["power", "water", "security", "cleaning", "greening", "repairs"]

VISIT_EXAMPLE = {"visit_id": "0b8e5f4a-7c1d-4d7e-9a2b-3c4d5e6f7a8b", "request_no": "LY-20261129-000042"}
LETTER_EXAMPLE = {"letter_id": "5a3e1c2d-9b8f-4e7a-8c6d-1f2e3d4c5b6a", "request_no": "LY-20261129-000042"}


@event_schema(
    "ReturnVisitAttemptFailed",
    producer=PRODUCER,
    description="The resident could not be reached for a return visit; the next attempt is planned by the retry "
                "schedule.",
    example={**VISIT_EXAMPLE, "attempt": 1, "method": "phone", "attempted_by": "agent-007",
             "failed_at": "2026-11-30T02:00:00+00:00", "next_attempt_at": "2026-11-30T04:00:00+00:00",
             "note": "无人接听"},
)
class ReturnVisitAttemptFailedSchema(DataSchema):
    visit_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    attempt = fields.Integer(required=True, validate=validate.Range(min=1))
    method = fields.String(required=True, validate=validate.OneOf(VISIT_METHODS))
    attempted_by = fields.String(required=True)
    failed_at = fields.AwareDateTime(required=True)
    next_attempt_at = fields.AwareDateTime(required=True)
    note = fields.String(load_default="", validate=validate.Length(max=2000))


@event_schema(
    "ReturnVisitFailed",
    producer=PRODUCER,
    description="The return visit failed: the resident stayed unreachable after every scheduled retry.",
    example={**VISIT_EXAMPLE, "reason": "unreachable", "attempts": 4, "failed_at": "2026-12-02T02:00:00+00:00"},
)
class ReturnVisitFailedSchema(DataSchema):
    visit_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    reason = fields.String(required=True, validate=validate.OneOf(["unreachable"]))
    attempts = fields.Integer(required=True, validate=validate.Range(min=1))
    failed_at = fields.AwareDateTime(required=True)


@event_schema(
    "ReturnVisitDone",
    producer=PRODUCER,
    description="The return visit was made (by phone or on site); stops escalation's return-visit clock.",
    example={**VISIT_EXAMPLE, "method": "phone", "visited_by": "agent-007", "done_at": "2026-11-30T02:00:00+00:00",
             "on_time": True, "follow_up_raised": False},
)
class ReturnVisitDoneSchema(DataSchema):
    visit_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    method = fields.String(required=True, validate=validate.OneOf(VISIT_METHODS))
    visited_by = fields.String(required=True)
    done_at = fields.AwareDateTime(required=True)
    on_time = fields.Boolean(required=True)
    follow_up_raised = fields.Boolean(required=True)


@event_schema(
    "SatisfactionRecorded",
    producer=PRODUCER,
    description="The resident's satisfaction with a resolved request, recorded on its return visit.",
    example={**VISIT_EXAMPLE, "property_id": "LY", "department": "engineering", "level": "basically_satisfied",
             "score": 4, "method": "on_site", "fee_checked": True, "resident_signed": True,
             "comments": "维修及时,下次希望提前电话", "recorded_at": "2026-11-30T02:00:00+00:00"},
)
class SatisfactionRecordedSchema(DataSchema):
    visit_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    property_id = fields.String(required=True)
    department = fields.String(allow_none=True, load_default=None)
    level = fields.String(required=True, validate=validate.OneOf(SATISFACTION_LEVELS))
    score = fields.Integer(required=True, validate=validate.Range(min=1, max=5))
    method = fields.String(required=True, validate=validate.OneOf(VISIT_METHODS))
    fee_checked = fields.Boolean(required=True)
    resident_signed = fields.Boolean(allow_none=True, load_default=None)
    comments = fields.String(load_default="", validate=validate.Length(max=4000))
    recorded_at = fields.AwareDateTime(required=True)


@event_schema(
    "FollowUpRaised",
    producer=PRODUCER,
    description="A return visit found the resident unsatisfied or a problem remaining: dispatch must open a linked "
                "work order, reaching maintenance by due_at (24 h); idempotency key follow_up_id.",
    example={"follow_up_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", **VISIT_EXAMPLE,
             "work_order_id": "3f1c1d2e-8a8b-4e57-9a53-6f1f5a2b9c10", "property_id": "LY", "building": "3",
             "unit": "3-1502", "subcategory": "plumbing", "department": "engineering", "reason": "problem_found",
             "description": "接头处仍有渗水", "raised_at": "2026-11-30T02:00:00+00:00",
             "due_at": "2026-12-01T02:00:00+00:00"},
)
class FollowUpRaisedSchema(DataSchema):
    follow_up_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    visit_id = fields.UUID(required=True)
    work_order_id = fields.UUID(allow_none=True, load_default=None)
    property_id = fields.String(required=True)
    building = fields.String(allow_none=True, load_default=None)
    unit = fields.String(allow_none=True, load_default=None)
    subcategory = fields.String(allow_none=True, load_default=None)
    department = fields.String(allow_none=True, load_default=None)
    reason = fields.String(required=True, validate=validate.OneOf(["unsatisfied", "problem_found"]))
    description = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    raised_at = fields.AwareDateTime(required=True)
    due_at = fields.AwareDateTime(required=True)


@event_schema(
    "AuditFindingRecorded",
    producer=PRODUCER,
    description="A supervisor re-checked a return visit in the monthly audit (all paid services, a sample of the "
                "rest).",
    example={"audit_id": "1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "period": "2026-11", **VISIT_EXAMPLE,
             "supervisor_id": "sup-wang", "selection_reason": "paid_service", "outcome": "confirmed",
             "notes": "", "recorded_at": "2026-12-03T03:00:00+00:00"},
)
class AuditFindingRecordedSchema(DataSchema):
    audit_id = fields.UUID(required=True)
    period = fields.String(required=True, validate=validate.Regexp(r"^\d{4}-\d{2}$"))
    visit_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    supervisor_id = fields.String(required=True)
    selection_reason = fields.String(required=True, validate=validate.OneOf(["paid_service", "sampled"]))
    outcome = fields.String(required=True, validate=validate.OneOf(["confirmed", "discrepancy", "unreachable"]))
    notes = fields.String(load_default="", validate=validate.Length(max=4000))
    recorded_at = fields.AwareDateTime(required=True)


@event_schema(
    "ReplyLetterDrafted",
    producer=PRODUCER,
    description="A version of a reply letter (回函) was drafted; a revision resets its reviews.",
    example={**LETTER_EXAMPLE, "letter_version": 1, "template_id": "complaint-reply-v1", "drafted_by": "cc-zhao",
             "drafted_at": "2026-11-30T02:00:00+00:00",
             "required_reviewers": ["property_manager", "property_department_head", "cs_supervisor",
                                    "department_manager"]},
)
class ReplyLetterDraftedSchema(DataSchema):
    letter_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    letter_version = fields.Integer(required=True, validate=validate.Range(min=1))
    template_id = fields.String(allow_none=True, load_default=None)
    drafted_by = fields.String(required=True)
    drafted_at = fields.AwareDateTime(required=True)
    required_reviewers = fields.List(fields.String(validate=validate.OneOf(REVIEWER_ROLES)), required=True)


@event_schema(
    "ReplyLetterReviewed",
    producer=PRODUCER,
    description="A required reviewer approved, or asked changes to, a version of a reply letter.",
    example={**LETTER_EXAMPLE, "letter_version": 1, "role": "cs_supervisor", "reviewer_id": "sup-wang",
             "decision": "approved", "comments": "", "reviewed_at": "2026-11-30T05:00:00+00:00",
             "pending_roles": ["department_manager"]},
)
class ReplyLetterReviewedSchema(DataSchema):
    letter_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    letter_version = fields.Integer(required=True, validate=validate.Range(min=1))
    role = fields.String(required=True, validate=validate.OneOf(REVIEWER_ROLES))
    reviewer_id = fields.String(required=True)
    decision = fields.String(required=True, validate=validate.OneOf(["approved", "changes_requested"]))
    comments = fields.String(load_default="", validate=validate.Length(max=4000))
    reviewed_at = fields.AwareDateTime(required=True)
    pending_roles = fields.List(fields.String(validate=validate.OneOf(REVIEWER_ROLES)), required=True)


@event_schema(
    "ReplyLetterApproved",
    producer=PRODUCER,
    description="The marketing manager approved a fully reviewed reply letter version for sending.",
    example={**LETTER_EXAMPLE, "letter_version": 1, "approved_by": "mkt-chen",
             "approved_at": "2026-11-30T08:00:00+00:00"},
)
class ReplyLetterApprovedSchema(DataSchema):
    letter_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    letter_version = fields.Integer(required=True, validate=validate.Range(min=1))
    approved_by = fields.String(required=True)
    approved_at = fields.AwareDateTime(required=True)


@event_schema(
    "ReplyLetterSent",
    producer=PRODUCER,
    description="The approved reply letter was sent by registered mail (tracking number) or online; the phone "
                "confirmation is due by confirmation_due_at (escalation's letter-confirmation clock).",
    example={**LETTER_EXAMPLE, "letter_version": 1, "method": "registered_mail", "tracking_no": "XA123456789CN",
             "sent_by": "cc-zhao", "sent_at": "2026-12-01T02:00:00+00:00",
             "confirmation_due_at": "2026-12-04T02:00:00+00:00"},
)
class ReplyLetterSentSchema(DataSchema):
    letter_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    letter_version = fields.Integer(required=True, validate=validate.Range(min=1))
    method = fields.String(required=True, validate=validate.OneOf(["registered_mail", "online"]))
    tracking_no = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=60))
    sent_by = fields.String(required=True)
    sent_at = fields.AwareDateTime(required=True)
    confirmation_due_at = fields.AwareDateTime(required=True)


@event_schema(
    "ReplyLetterConfirmed",
    producer=PRODUCER,
    description="The phone call after sending: whether the resident received the letter (if not, it is sent again).",
    example={**LETTER_EXAMPLE, "confirmed_by": "cc-zhao", "confirmed_at": "2026-12-04T01:00:00+00:00",
             "received": True, "on_time": True, "notes": ""},
)
class ReplyLetterConfirmedSchema(DataSchema):
    letter_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    confirmed_by = fields.String(required=True)
    confirmed_at = fields.AwareDateTime(required=True)
    received = fields.Boolean(required=True)
    on_time = fields.Boolean(required=True)
    notes = fields.String(load_default="", validate=validate.Length(max=4000))


@event_schema(
    "ReplyLetterArchived",
    producer=PRODUCER,
    description="The reply letter and all its versions were archived by the customer centre; notify_roles are told.",
    example={**LETTER_EXAMPLE, "versions": 2, "archived_by": "cc-zhao", "archived_at": "2026-12-04T03:00:00+00:00",
             "notify_roles": ["marketing_vp", "general_manager"]},
)
class ReplyLetterArchivedSchema(DataSchema):
    letter_id = fields.UUID(required=True)
    request_no = fields.String(required=True)
    versions = fields.Integer(required=True, validate=validate.Range(min=1))
    archived_by = fields.String(required=True)
    archived_at = fields.AwareDateTime(required=True)
    notify_roles = fields.List(fields.String(), load_default=list)


@event_schema(
    "PraiseRecorded",
    producer=PRODUCER,
    description="A praise letter or compliment recorded against a staff member (within a department) or a department.",
    example={"praise_id": "2e4f6a8b-1c3d-4e5f-8a7b-9c0d1e2f3a4b", "property_id": "LY", "target_kind": "staff",
             "staff_id": "tech-li", "department": "engineering", "channel": "letter",
             "summary": "半夜上门修水管,态度很好", "received_at": "2026-11-30T01:00:00+00:00",
             "recorded_by": "cc-zhao", "recorded_at": "2026-11-30T02:00:00+00:00",
             "request_no": "LY-20261129-000042", "letter_id": "LTR-20261130-0003"},
)
class PraiseRecordedSchema(DataSchema):
    praise_id = fields.UUID(required=True)
    property_id = fields.String(required=True)
    target_kind = fields.String(required=True, validate=validate.OneOf(["staff", "department"]))
    staff_id = fields.String(allow_none=True, load_default=None)
    department = fields.String(required=True)
    channel = fields.String(required=True)
    summary = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    received_at = fields.AwareDateTime(required=True)
    recorded_by = fields.String(required=True)
    recorded_at = fields.AwareDateTime(required=True)
    request_no = fields.String(allow_none=True, load_default=None)
    letter_id = fields.String(allow_none=True, load_default=None)


class SurveyServiceResultSchema(DataSchema):
    service = fields.String(required=True, validate=validate.OneOf(SURVEY_SERVICES))
    responses = fields.Integer(required=True, validate=validate.Range(min=0))
    satisfied = fields.Integer(required=True, validate=validate.Range(min=0))
    basically_satisfied = fields.Integer(required=True, validate=validate.Range(min=0))
    unsatisfied = fields.Integer(required=True, validate=validate.Range(min=0))
    satisfaction_rate = fields.Float(allow_none=True, load_default=None)
    mean_score = fields.Float(allow_none=True, load_default=None)


@event_schema(
    "SatisfactionSurveyClosed",
    producer=PRODUCER,
    description="A periodic satisfaction survey of all households closed, with its per-service results.",
    example={"survey_id": "8f7e6d5c-4b3a-4921-8f0e-1d2c3b4a5968", "property_id": "LY", "period": "2026",
             "households_total": 1200, "responses": 2, "response_rate": 0.0017,
             "results": [{"service": "water", "responses": 2, "satisfied": 1, "basically_satisfied": 0,
                          "unsatisfied": 1, "satisfaction_rate": 0.5, "mean_score": 3.0}],
             "closed_at": "2026-12-20T10:00:00+00:00", "request_no": None},
)
class SatisfactionSurveyClosedSchema(DataSchema):
    survey_id = fields.UUID(required=True)
    property_id = fields.String(required=True)
    period = fields.String(required=True)
    households_total = fields.Integer(required=True, validate=validate.Range(min=1))
    responses = fields.Integer(required=True, validate=validate.Range(min=0))
    response_rate = fields.Float(required=True)
    results = fields.List(fields.Nested(SurveyServiceResultSchema), required=True)
    closed_at = fields.AwareDateTime(required=True)
    request_no = fields.String(allow_none=True, load_default=None)


@event_schema(
    "SurveyActionRecorded",
    producer=PRODUCER,
    description="An improvement action a satisfaction survey led to, owned by a department.",
    example={"survey_id": "8f7e6d5c-4b3a-4921-8f0e-1d2c3b4a5968", "action_id": "6b5a4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d",
             "property_id": "LY", "service": "water", "description": "二次供水水箱每季度清洗并公示水质报告",
             "owner_department": "engineering", "recorded_at": "2026-12-21T02:00:00+00:00",
             "due_at": "2027-03-31T08:00:00+00:00", "request_no": None},
)
class SurveyActionRecordedSchema(DataSchema):
    survey_id = fields.UUID(required=True)
    action_id = fields.UUID(required=True)
    property_id = fields.String(required=True)
    service = fields.String(required=True, validate=validate.OneOf(SURVEY_SERVICES))
    description = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    owner_department = fields.String(required=True)
    recorded_at = fields.AwareDateTime(required=True)
    due_at = fields.AwareDateTime(allow_none=True, load_default=None)
    request_no = fields.String(allow_none=True, load_default=None)


@event_schema(
    "MonthlyReportPublished",
    producer=PRODUCER,
    description="The month's service report was published (figures in the API as JSON, CSV and HTML); headline rates "
                "here for dashboards.",
    example={"report_id": "4c3b2a19-0f8e-4d7c-b6a5-948372615041", "period": "2026-11", "property_id": "LY",
             "generated_at": "2026-12-01T01:00:00+00:00", "requests_total": 412, "return_visit_rate": 0.9821,
             "satisfaction_rate": 0.955, "valid_complaint_rate": 0.0042, "praise_total": 7, "request_no": None},
)
class MonthlyReportPublishedSchema(DataSchema):
    report_id = fields.UUID(required=True)
    period = fields.String(required=True, validate=validate.Regexp(r"^\d{4}-\d{2}$"))
    property_id = fields.String(allow_none=True, load_default=None)
    generated_at = fields.AwareDateTime(required=True)
    requests_total = fields.Integer(required=True, validate=validate.Range(min=0))
    return_visit_rate = fields.Float(allow_none=True, load_default=None)
    satisfaction_rate = fields.Float(allow_none=True, load_default=None)
    valid_complaint_rate = fields.Float(allow_none=True, load_default=None)
    praise_total = fields.Integer(required=True, validate=validate.Range(min=0))
    request_no = fields.String(allow_none=True, load_default=None)
