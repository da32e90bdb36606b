"""Events published by intake (exchange `intake.events`, routing key = event type)."""
from __future__ import annotations

from marshmallow import fields, validate  # noqa: F401

from services.common.contract.registry import DataSchema, event_schema  # noqa: F401

PRODUCER = "intake"

CATEGORIES = [
    "emergency_medical", "repair", "complaint", "consultation", "security_incident", "disaster", "other",
]
CHANNELS = ["phone", "visit", "letter", "online", "email", "patrol", "iot", "call_centre"]
PRIORITIES = ["emergency", "urgent", "normal", "planned"]
SUBCATEGORIES = [
    "plumbing", "electrical", "lift", "door_window", "roof_wall_leak", "public_facility", "gas", "other",
    "facility", "service_attitude", "service_quality", "sudden_event",
    "theft", "fight", "robbery", "poisoning", "traffic_accident",
    "typhoon", "flood", "fire",
]
VALIDITIES = ["valid", "help_seeking", "enquiry", "venting"]
ACK_METHODS = ["phone", "sms", "app", "in_person", "letter"]
LETTER_KINDS = ["report", "complaint", "praise", "work"]
LETTER_ROUTES = ["request", "cs_assistant", "praise_register", "admin"]
REQUEST_REF = {"request_no": "LY-20261129-000042", "property_id": "LY"}
LETTER_ID = "9b2f8c1e-4d3a-4f6b-8e2d-1c5a7b9d0e11"
INCIDENT_ID = "5d0c6a8e-2b1f-4c3d-9e8a-7f6b5c4d3e21"


@event_schema(
    "RequestRegistered",
    producer=PRODUCER,
    description="A resident's request was registered once, numbered, classified and given its first-contact owner.",
    example={
        "request_no": "LY-20261129-000042",
        "property_id": "LY",
        "building": "3",
        "unit": "3-1502",
        "area": None,
        "channel": "phone",
        "source": "desk",
        "external_id": None,
        "category": "repair",
        "subcategory": "plumbing",
        "priority": "urgent",
        "emergency": False,
        "complaint_valid": None,
        "paid_service": False,
        "owner_agent": "agent-007",
        "reporter_kind": "resident",
        "reporter_phone_masked": "138****1234",
        "description": "厨房水管漏水",
        "registered_at": "2026-11-29T04:00:00+00:00",
    },
)
class RequestRegisteredSchema(DataSchema):
    request_no = fields.String(required=True, validate=validate.Length(min=1, max=40))
    property_id = fields.String(required=True, validate=validate.Length(min=1, max=20))
    building = fields.String(allow_none=True, load_default=None)
    unit = fields.String(allow_none=True, load_default=None)
    area = fields.String(allow_none=True, load_default=None)
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    source = fields.String(required=True)
    external_id = fields.String(allow_none=True, load_default=None)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    subcategory = fields.String(allow_none=True, load_default=None)
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    emergency = fields.Boolean(required=True)
    complaint_valid = fields.Boolean(allow_none=True, load_default=None)
    paid_service = fields.Boolean(load_default=False)
    owner_agent = fields.String(required=True)
    reporter_kind = fields.String(required=True)
    reporter_phone_masked = fields.String(allow_none=True, load_default=None)
    description = fields.String(required=True, validate=validate.Length(max=4000))
    registered_at = fields.AwareDateTime(required=True)
    # Optional additions (load_default): older producers and consumers keep working without them.
    validity = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(VALIDITIES))
    confidence = fields.Float(allow_none=True, load_default=None, validate=validate.Range(min=0, max=1))
    matched_terms = fields.List(fields.String(), load_default=list)
    channel_details = fields.Dict(keys=fields.String(), load_default=dict)
    acknowledgement_required = fields.Boolean(load_default=False)
    duplicate_of = fields.String(allow_none=True, load_default=None)
    incident_id = fields.UUID(allow_none=True, load_default=None)
    vip = fields.Boolean(load_default=False)
    compensation_demanded = fields.Boolean(load_default=False)


class _RequestEventSchema(DataSchema):
    request_no = fields.String(required=True, validate=validate.Length(min=1, max=40))
    property_id = fields.String(required=True, validate=validate.Length(min=1, max=20))


@event_schema(
    "RequestClassified",
    producer=PRODUCER,
    description="The automatic classification of a newly registered request: class, subclass, priority, the "
                "emergency fast-path flag, complaint validity, confidence and the dictionary terms matched.",
    example={**REQUEST_REF, "category": "repair", "subcategory": "lift", "priority": "emergency", "emergency": True,
             "complaint_valid": None, "validity": None, "confidence": 1.0, "matched_terms": ["电梯", "困人"],
             "owner_agent": "agent-007", "classified_at": "2026-11-29T04:00:00+00:00"},
)
class RequestClassifiedSchema(_RequestEventSchema):
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    subcategory = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(SUBCATEGORIES))
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    emergency = fields.Boolean(required=True)
    complaint_valid = fields.Boolean(allow_none=True, load_default=None)
    validity = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(VALIDITIES))
    confidence = fields.Float(required=True, validate=validate.Range(min=0, max=1))
    matched_terms = fields.List(fields.String(), required=True)
    owner_agent = fields.String(required=True)
    classified_at = fields.AwareDateTime(required=True)


@event_schema(
    "RequestReclassified",
    producer=PRODUCER,
    description="An agent overrode the classification; the previous values and the reason are carried, the "
                "automatic verdict is kept on the request.",
    example={**REQUEST_REF, "previous_category": "consultation", "previous_subcategory": None,
             "previous_priority": "normal", "previous_emergency": False, "category": "repair",
             "subcategory": "plumbing", "priority": "urgent", "emergency": False, "complaint_valid": None,
             "validity": None, "reason": "住户补充：水管已经在漏水", "reclassified_by": "agent-007",
             "owner_agent": "agent-007", "reclassified_at": "2026-11-29T04:03:00+00:00"},
)
class RequestReclassifiedSchema(_RequestEventSchema):
    previous_category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    previous_subcategory = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(SUBCATEGORIES))
    previous_priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    previous_emergency = fields.Boolean(required=True)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    subcategory = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(SUBCATEGORIES))
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    emergency = fields.Boolean(required=True)
    complaint_valid = fields.Boolean(allow_none=True, load_default=None)
    validity = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(VALIDITIES))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
    reclassified_by = fields.String(required=True)
    owner_agent = fields.String(required=True)
    reclassified_at = fields.AwareDateTime(required=True)


@event_schema(
    "RequestAcknowledged",
    producer=PRODUCER,
    description="The resident was told the request was received: how, and the time promised. A later one revises "
                "the promise.",
    example={**REQUEST_REF, "channel": "online", "how": "sms", "promised_at": "2026-11-29T05:00:00+00:00",
             "acknowledged_by": "agent-007", "owner_agent": "agent-007",
             "acknowledged_at": "2026-11-29T04:05:00+00:00"},
)
class RequestAcknowledgedSchema(_RequestEventSchema):
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    how = fields.String(required=True, validate=validate.OneOf(ACK_METHODS))
    promised_at = fields.AwareDateTime(required=True)
    acknowledged_by = fields.String(required=True)
    owner_agent = fields.String(required=True)
    acknowledged_at = fields.AwareDateTime(required=True)


@event_schema(
    "RequestAnsweredAtDesk",
    producer=PRODUCER,
    description="A consultation answered on the spot and closed at intake (a RequestClosed with closed_reason "
                "answered_at_desk follows); it still counts in every statistic.",
    example={**REQUEST_REF, "category": "consultation", "answer": "物业费可在APP缴费页面或前台刷卡缴纳",
             "answered_by": "agent-007", "owner_agent": "agent-007", "answered_at": "2026-11-29T04:02:00+00:00"},
)
class RequestAnsweredAtDeskSchema(_RequestEventSchema):
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    answer = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    answered_by = fields.String(required=True)
    owner_agent = fields.String(required=True)
    answered_at = fields.AwareDateTime(required=True)


@event_schema(
    "ConsultationReferred",
    producer=PRODUCER,
    description="A consultation the desk could not answer goes on as a normal-priority request (to the "
                "customer-service supervisor).",
    example={**REQUEST_REF, "priority": "normal", "note": "涉及维修基金使用，需主管答复", "referred_by": "agent-007",
             "owner_agent": "agent-007", "referred_at": "2026-11-29T04:02:00+00:00"},
)
class ConsultationReferredSchema(_RequestEventSchema):
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    note = fields.String(required=True, validate=validate.Length(min=1, max=1000))
    referred_by = fields.String(required=True)
    owner_agent = fields.String(required=True)
    referred_at = fields.AwareDateTime(required=True)


@event_schema(
    "DuplicateLinked",
    producer=PRODUCER,
    description="A request was linked to an earlier probable duplicate (same unit and class within 24 h, or the "
                "same caller); shown to the agent, not merged.",
    example={**REQUEST_REF, "request_no": "LY-20261129-000043", "duplicate_of": "LY-20261129-000042",
             "reason": "same_unit_and_class", "owner_agent": "agent-007",
             "linked_at": "2026-11-29T04:10:00+00:00"},
)
class DuplicateLinkedSchema(_RequestEventSchema):
    duplicate_of = fields.String(required=True, validate=validate.Length(min=1, max=40))
    reason = fields.String(required=True, validate=validate.OneOf(["same_unit_and_class", "same_caller", "agent"]))
    owner_agent = fields.String(required=True)
    linked_at = fields.AwareDateTime(required=True)


@event_schema(
    "IncidentClustered",
    producer=PRODUCER,
    description="Several reports of one problem (same building or area, same subclass, within the window) were "
                "grouped under a parent incident, or one more joined it. request_no is the report that formed or "
                "grew it; children_count is the incident's size.",
    example={"incident_id": INCIDENT_ID, "request_no": "LY-20261129-000045", "property_id": "LY",
             "building": "3", "area": None, "category": "repair", "subcategory": "plumbing",
             "request_nos": ["LY-20261129-000042", "LY-20261129-000044", "LY-20261129-000045"],
             "new_request_nos": ["LY-20261129-000042", "LY-20261129-000044", "LY-20261129-000045"],
             "children_count": 3, "first_reported_at": "2026-11-29T04:00:00+00:00",
             "clustered_at": "2026-11-29T04:20:00+00:00"},
)
class IncidentClusteredSchema(_RequestEventSchema):
    incident_id = fields.UUID(required=True)
    building = fields.String(allow_none=True, load_default=None)
    area = fields.String(allow_none=True, load_default=None)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    subcategory = fields.String(required=True, validate=validate.OneOf(SUBCATEGORIES))
    request_nos = fields.List(fields.String(), required=True, validate=validate.Length(min=1))
    new_request_nos = fields.List(fields.String(), required=True)
    children_count = fields.Integer(required=True, validate=validate.Range(min=1))
    first_reported_at = fields.AwareDateTime(required=True)
    clustered_at = fields.AwareDateTime(required=True)


@event_schema(
    "RequestCancelled",
    producer=PRODUCER,
    description="A request was cancelled (with the reason) before being closed.",
    example={**REQUEST_REF, "reason": "住户来电取消，已自行处理", "cancelled_by": "agent-007",
             "owner_agent": "agent-007", "cancelled_at": "2026-11-29T04:30:00+00:00"},
)
class RequestCancelledSchema(_RequestEventSchema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
    cancelled_by = fields.String(required=True)
    owner_agent = fields.String(required=True)
    cancelled_at = fields.AwareDateTime(required=True)


@event_schema(
    "OwnershipHandedOver",
    producer=PRODUCER,
    description="First-contact ownership (首问负责制) moved by an explicit handover with a reason.",
    example={**REQUEST_REF, "from_agent": "agent-007", "to_agent": "agent-012", "reason": "交接班",
             "handed_over_by": "agent-007", "handed_over_at": "2026-11-29T10:00:00+00:00"},
)
class OwnershipHandedOverSchema(_RequestEventSchema):
    from_agent = fields.String(required=True)
    to_agent = fields.String(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
    handed_over_by = fields.String(required=True)
    handed_over_at = fields.AwareDateTime(required=True)


@event_schema(
    "RequestClosed",
    producer=PRODUCER,
    description="A request was closed at intake (closed_reason e.g. resolved, answered_at_desk); clocks stop.",
    example={**REQUEST_REF, "category": "repair", "closed_reason": "resolved", "closed_by": "agent-007",
             "owner_agent": "agent-007", "closed_at": "2026-11-29T08:00:00+00:00"},
)
class RequestClosedSchema(_RequestEventSchema):
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    closed_reason = fields.String(required=True, validate=validate.Length(min=1, max=200))
    closed_by = fields.String(required=True)
    owner_agent = fields.String(required=True)
    closed_at = fields.AwareDateTime(required=True)


# --- staff actions whose facts start or stop escalation's clocks -------------------------------------------------
# Free text (reason, answer, plan, response, reply) is the staff's, with phone numbers and the reporter's name masked.

@event_schema(
    "SupervisorCalledIn",
    producer=PRODUCER,
    description="The agent could not settle the request and called in the department supervisor "
                "(解决不了的应向部门主管汇报后在10分钟内给予回复): starts the supervisor_answer clock (10 min by "
                "default). The agent stays the first-contact owner.",
    example={**REQUEST_REF, "category": "consultation", "supervisor": "cs-supervisor-01",
             "reason": "涉及维修基金使用，需主管答复", "called_by": "agent-007", "owner_agent": "agent-007",
             "called_at": "2026-11-29T04:02:00+00:00"},
)
class SupervisorCalledInSchema(_RequestEventSchema):
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    supervisor = fields.String(required=True, validate=validate.Length(min=1, max=64))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
    called_by = fields.String(required=True)
    owner_agent = fields.String(required=True)
    called_at = fields.AwareDateTime(required=True)


@event_schema(
    "SupervisorAnswered",
    producer=PRODUCER,
    description="The supervisor called in answered: stops the supervisor_answer clock. called_at is the call it "
                "answers.",
    example={**REQUEST_REF, "supervisor": "cs-supervisor-01", "answer": "维修基金需业委会签字，已告知住户办理流程",
             "answered_by": "cs-supervisor-01", "owner_agent": "agent-007",
             "called_at": "2026-11-29T04:02:00+00:00", "answered_at": "2026-11-29T04:09:00+00:00"},
)
class SupervisorAnsweredSchema(_RequestEventSchema):
    supervisor = fields.String(required=True, validate=validate.Length(min=1, max=64))
    answer = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    answered_by = fields.String(required=True)
    owner_agent = fields.String(required=True)
    called_at = fields.AwareDateTime(required=True)
    answered_at = fields.AwareDateTime(required=True)


@event_schema(
    "RequestMarkedComplex",
    producer=PRODUCER,
    description="A complex problem (复杂问题需在48小时内给出解决方案): starts the plan clock (48 h by default). "
                "Marked once.",
    example={**REQUEST_REF, "category": "repair", "reason": "外墙渗水，需勘查后确定维修方案",
             "marked_by": "agent-007", "owner_agent": "agent-007", "marked_at": "2026-11-29T04:30:00+00:00"},
)
class RequestMarkedComplexSchema(_RequestEventSchema):
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
    marked_by = fields.String(required=True)
    owner_agent = fields.String(required=True)
    marked_at = fields.AwareDateTime(required=True)


@event_schema(
    "PlanGiven",
    producer=PRODUCER,
    description="The solution plan of a request marked complex: stops the plan clock. marked_at is when it was "
                "marked complex.",
    example={**REQUEST_REF, "plan": "周三上午工程部搭架勘查，周五前完成外墙防水修补", "given_by": "eng-supervisor-02",
             "owner_agent": "agent-007", "marked_at": "2026-11-29T04:30:00+00:00",
             "given_at": "2026-11-30T02:00:00+00:00"},
)
class PlanGivenSchema(_RequestEventSchema):
    plan = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    given_by = fields.String(required=True)
    owner_agent = fields.String(required=True)
    marked_at = fields.AwareDateTime(required=True)
    given_at = fields.AwareDateTime(required=True)


@event_schema(
    "FirstResponseGiven",
    producer=PRODUCER,
    description="Staff gave the resident a first response (每次求助响应时间不超过30分钟): stops the first_response "
                "clock (so does the work order's assignment). Given once.",
    example={**REQUEST_REF, "category": "repair", "response": "已联系工程部，师傅30分钟内上门",
             "responded_by": "agent-007", "owner_agent": "agent-007",
             "responded_at": "2026-11-29T04:05:00+00:00"},
)
class FirstResponseGivenSchema(_RequestEventSchema):
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    response = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    responded_by = fields.String(required=True)
    owner_agent = fields.String(required=True)
    responded_at = fields.AwareDateTime(required=True)


@event_schema(
    "ComplaintReplied",
    producer=PRODUCER,
    description="A complaint was replied to (答复时间最长不应超过一周): stops the complaint_reply clock (so does its "
                "investigation work order's resolution, or a reply letter sent). Only for a complaint, once.",
    example={**REQUEST_REF, "category": "complaint", "complaint_valid": True,
             "reply": "已约谈保洁班长，加强3栋楼道每日清扫并安排主管抽查", "replied_by": "cs-assistant-02",
             "owner_agent": "agent-007", "replied_at": "2026-11-30T08:00:00+00:00"},
)
class ComplaintRepliedSchema(_RequestEventSchema):
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    complaint_valid = fields.Boolean(allow_none=True, load_default=None)
    reply = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    replied_by = fields.String(required=True)
    owner_agent = fields.String(required=True)
    replied_at = fields.AwareDateTime(required=True)


class _LetterEventSchema(DataSchema):
    letter_id = fields.UUID(required=True)
    property_id = fields.String(required=True, validate=validate.Length(min=1, max=20))
    request_no = fields.String(allow_none=True, load_default=None)


@event_schema(
    "LetterLogged",
    producer=PRODUCER,
    description="A letter (来函) was logged with its kind and routed: report -> a request, complaint -> the "
                "customer-service assistant, praise -> the praise register, work -> the admin department.",
    example={"letter_id": LETTER_ID, "property_id": "LY", "kind": "complaint", "received_date": "2026-11-28",
             "routed_to": "cs_assistant", "subject": "关于地下车库照明不足的投诉", "sender_phone_masked": "138****1234",
             "logged_by": "agent-007", "logged_at": "2026-11-29T01:00:00+00:00", "request_no": None},
)
class LetterLoggedSchema(_LetterEventSchema):
    kind = fields.String(required=True, validate=validate.OneOf(LETTER_KINDS))
    received_date = fields.String(required=True, validate=validate.Regexp(r"^\d{4}-\d{2}-\d{2}$"))
    routed_to = fields.String(required=True, validate=validate.OneOf(LETTER_ROUTES))
    subject = fields.String(required=True, validate=validate.Length(min=1, max=500))
    sender_phone_masked = fields.String(allow_none=True, load_default=None)
    logged_by = fields.String(required=True)
    logged_at = fields.AwareDateTime(required=True)


@event_schema(
    "LetterComplaintDecided",
    producer=PRODUCER,
    description="The customer-service assistant decided whether a complaint letter becomes a tracked complaint.",
    example={"letter_id": LETTER_ID, "property_id": "LY", "tracked": True, "reason": "涉及保洁服务质量，需跟踪",
             "decided_by": "assistant-02", "decided_at": "2026-11-29T02:00:00+00:00", "request_no": None},
)
class LetterComplaintDecidedSchema(_LetterEventSchema):
    tracked = fields.Boolean(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
    decided_by = fields.String(required=True)
    decided_at = fields.AwareDateTime(required=True)


@event_schema(
    "LetterPraiseRecorded",
    producer=PRODUCER,
    description="A praise letter was recorded against the staff member and/or department praised; feedback "
                "counts it.",
    example={"letter_id": LETTER_ID, "property_id": "LY", "staff_id": "tech-li", "department": "engineering",
             "received_date": "2026-11-28", "subject": "感谢李师傅半夜上门修水管", "recorded_by": "agent-007",
             "recorded_at": "2026-11-29T02:00:00+00:00", "request_no": None},
)
class LetterPraiseRecordedSchema(_LetterEventSchema):
    staff_id = fields.String(allow_none=True, load_default=None)
    department = fields.String(allow_none=True, load_default=None)
    received_date = fields.String(required=True, validate=validate.Regexp(r"^\d{4}-\d{2}-\d{2}$"))
    subject = fields.String(required=True, validate=validate.Length(min=1, max=500))
    recorded_by = fields.String(required=True)
    recorded_at = fields.AwareDateTime(required=True)
