"""HTTP routes served by the intake service (through RPC). Mixed into GatewayService.

Every action answers with the request's state and its first-contact owner (首问负责制). `by` is the agent acting.
"""
from __future__ import annotations

from typing import Any

from marshmallow import fields, validate
from werkzeug.wrappers import Request

from services.common.contract.inbound import Bool, PHONE, StrictSchema, Text, code
from services.common.contract.intake import (
    ACK_METHODS,
    CATEGORIES,
    LETTER_KINDS,
    LETTER_ROUTES,
    PRIORITIES,
    SUBCATEGORIES,
    VALIDITIES,
)
from services.gateway.entrypoints.http_api import ApiBase, jsonable, route, validated


def _reason(**kwargs: Any) -> Text:
    return Text(validate=validate.Length(min=2, max=500), **kwargs)


class IntakeAcknowledgeBody(StrictSchema):
    how = fields.String(required=True, validate=validate.OneOf(ACK_METHODS))
    promised_at = fields.AwareDateTime(required=True)
    by = code(64, required=True)


class IntakeReclassifyBody(StrictSchema):
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    subcategory = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(SUBCATEGORIES))
    priority = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(PRIORITIES))
    emergency = Bool(load_default=None, allow_none=True)
    validity = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(VALIDITIES))
    reason = _reason(required=True)
    by = code(64, required=True)


class IntakeAnswerBody(StrictSchema):
    answer = Text(required=True, validate=validate.Length(min=1, max=4000))
    by = code(64, required=True)


class IntakeReferBody(StrictSchema):
    note = Text(required=True, validate=validate.Length(min=2, max=1000))
    by = code(64, required=True)


class IntakeHandoverBody(StrictSchema):
    to_agent = code(64, required=True)
    reason = _reason(required=True)
    by = code(64, required=True)


class IntakeCancelBody(StrictSchema):
    reason = _reason(required=True)
    by = code(64, required=True)


class IntakeCloseBody(StrictSchema):
    reason = Text(load_default="resolved", validate=validate.Length(min=2, max=200))
    by = code(64, required=True)


class IntakeSupervisorBody(StrictSchema):
    supervisor = code(64, required=True)
    reason = _reason(required=True)
    by = code(64, required=True)


class IntakeSupervisorAnswerBody(StrictSchema):
    answer = Text(required=True, validate=validate.Length(min=1, max=4000))
    by = code(64, required=True)


class IntakeComplexBody(StrictSchema):
    reason = _reason(required=True)
    by = code(64, required=True)


class IntakePlanBody(StrictSchema):
    plan = Text(required=True, validate=validate.Length(min=2, max=4000))
    by = code(64, required=True)


class IntakeFirstResponseBody(StrictSchema):
    response = Text(required=True, validate=validate.Length(min=1, max=4000))
    by = code(64, required=True)


class IntakeComplaintReplyBody(StrictSchema):
    reply = Text(required=True, validate=validate.Length(min=2, max=4000))
    by = code(64, required=True)


class IntakeSenderSchema(StrictSchema):
    name = Text(validate=validate.Length(min=1, max=50), load_default=None, allow_none=True)
    phone = Text(validate=validate.Regexp(PHONE, error="not a Chinese mobile or landline number"),
                 load_default=None, allow_none=True)


class IntakeLetterBody(StrictSchema):
    letter_id = fields.UUID(load_default=None, allow_none=True)  # the client's id: a retried POST logs it once
    property_id = code(20, required=True)
    kind = fields.String(required=True, validate=validate.OneOf(LETTER_KINDS))
    received_date = fields.Date(required=True)
    subject = Text(required=True, validate=validate.Length(min=1, max=500))
    logged_by = code(64, required=True)
    sender = fields.Nested(IntakeSenderSchema, load_default=None, allow_none=True)
    praised_staff_id = code(64, load_default=None, allow_none=True)
    praised_department = code(64, load_default=None, allow_none=True)
    # Where the problem is and what it is, for a report (and a complaint the assistant may track).
    building = Text(validate=validate.Length(min=1, max=20), load_default=None, allow_none=True)
    unit = Text(validate=validate.Length(min=1, max=40), load_default=None, allow_none=True)
    area = Text(validate=validate.Length(min=1, max=100), load_default=None, allow_none=True)
    description = Text(validate=validate.Length(min=1, max=4000), load_default=None, allow_none=True)
    reporter_kind = fields.String(load_default="resident",
                                  validate=validate.OneOf(["resident", "tenant", "visitor", "staff", "system"]))


class IntakeDecideBody(StrictSchema):
    track = Bool(required=True)
    reason = _reason(required=True)
    by = code(64, required=True)
    subcategory = fields.String(load_default=None, allow_none=True,
                                validate=validate.OneOf(["facility", "service_attitude", "service_quality",
                                                         "sudden_event"]))
    building = Text(validate=validate.Length(min=1, max=20), load_default=None, allow_none=True)
    unit = Text(validate=validate.Length(min=1, max=40), load_default=None, allow_none=True)
    area = Text(validate=validate.Length(min=1, max=100), load_default=None, allow_none=True)
    description = Text(validate=validate.Length(min=1, max=4000), load_default=None, allow_none=True)


class IntakeLettersQuery(StrictSchema):
    routed_to = fields.String(validate=validate.OneOf(LETTER_ROUTES), load_default=None)
    status = code(30, load_default=None)
    kind = fields.String(validate=validate.OneOf(LETTER_KINDS), load_default=None)
    property_id = code(20, load_default=None)
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100000))
    page_size = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class IntakeRoutes(ApiBase):
    def _action(self, method: str, request_no: str, schema: type, body: dict[str, Any]) -> Any:
        return self.call("intake", method, request_no, jsonable(validated(schema, body)))

    @route("POST", "/requests/<string:request_no>/acknowledge", "staff", body=IntakeAcknowledgeBody,
           summary="Record that the resident was told the request was received: how, and the promised time")
    def intake_acknowledge(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self._action("acknowledge", request_no, IntakeAcknowledgeBody, body)

    @route("POST", "/requests/<string:request_no>/reclassify", "staff", body=IntakeReclassifyBody,
           summary="Override the classification (the automatic verdict is kept)")
    def intake_reclassify(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self._action("reclassify", request_no, IntakeReclassifyBody, body)

    @route("POST", "/requests/<string:request_no>/answer", "staff", body=IntakeAnswerBody,
           summary="Close a consultation answered at the desk, with the answer")
    def intake_answer_at_desk(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self._action("answer_at_desk", request_no, IntakeAnswerBody, body)

    @route("POST", "/requests/<string:request_no>/refer", "staff", body=IntakeReferBody,
           summary="A consultation the desk cannot answer goes on as a normal request")
    def intake_refer(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self._action("refer", request_no, IntakeReferBody, body)

    @route("POST", "/requests/<string:request_no>/handover", "staff", body=IntakeHandoverBody,
           summary="Hand first-contact ownership to another agent, with a reason")
    def intake_handover(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self._action("hand_over", request_no, IntakeHandoverBody, body)

    @route("POST", "/requests/<string:request_no>/cancel", "staff", body=IntakeCancelBody,
           summary="Cancel a request, with a reason")
    def intake_cancel(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self._action("cancel", request_no, IntakeCancelBody, body)

    @route("POST", "/requests/<string:request_no>/close", "staff", body=IntakeCloseBody,
           summary="Close a request at intake, with a reason")
    def intake_close(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self._action("close", request_no, IntakeCloseBody, body)

    # -- staff actions whose events start or stop SLA clocks (the escalation service keeps the clocks) --

    @route("POST", "/requests/<string:request_no>/supervisor", "staff", body=IntakeSupervisorBody,
           summary="Call in the department supervisor on a request the agent cannot settle: the supervisor's "
                   "answer is due within 10 minutes (409 while an earlier call is unanswered)")
    def intake_call_in_supervisor(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self._action("call_in_supervisor", request_no, IntakeSupervisorBody, body)

    @route("POST", "/requests/<string:request_no>/supervisor-answer", "staff", body=IntakeSupervisorAnswerBody,
           summary="Record the answer of the supervisor called in (409 when none was called in)")
    def intake_supervisor_answer(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self._action("supervisor_answer", request_no, IntakeSupervisorAnswerBody, body)

    @route("POST", "/requests/<string:request_no>/complex", "staff", body=IntakeComplexBody,
           summary="Mark a request a complex problem: its solution plan is due within 48 hours")
    def intake_mark_complex(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self._action("mark_complex", request_no, IntakeComplexBody, body)

    @route("POST", "/requests/<string:request_no>/plan", "staff", body=IntakePlanBody,
           summary="Give the solution plan of a complex request (409 when it is not marked complex)")
    def intake_give_plan(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self._action("give_plan", request_no, IntakePlanBody, body)

    @route("POST", "/requests/<string:request_no>/first-response", "staff", body=IntakeFirstResponseBody,
           summary="Record the first response given to the resident (stops the first-response clock)")
    def intake_first_response(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self._action("first_response", request_no, IntakeFirstResponseBody, body)

    @route("POST", "/requests/<string:request_no>/complaint-reply", "staff", body=IntakeComplaintReplyBody,
           summary="Record the reply to a complaint (409 for a request not classed complaint)")
    def intake_complaint_reply(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self._action("reply_to_complaint", request_no, IntakeComplaintReplyBody, body)

    @route("POST", "/letters", "staff", body=IntakeLetterBody, ok_status=201,
           summary="Log a letter (来函): a report becomes a request, a complaint goes to the assistant, praise is "
                   "recorded, work letters go to the admin department")
    def intake_log_letter(self, request: Request, key: Any, body: dict[str, Any]) -> Any:
        return self.call("intake", "log_letter", jsonable(validated(IntakeLetterBody, body)))

    @route("POST", "/letters/<string:letter_id>/decide", "staff", body=IntakeDecideBody,
           summary="The customer-service assistant decides whether a complaint letter is tracked")
    def intake_decide_letter(self, request: Request, key: Any, letter_id: str, body: dict[str, Any]) -> Any:
        return self.call("intake", "decide_letter", letter_id, jsonable(validated(IntakeDecideBody, body)))

    @route("GET", "/letters", "read", query=IntakeLettersQuery, summary="The letters registry, by queue (routed_to)")
    def intake_list_letters(self, request: Request, key: Any, query: dict[str, Any]) -> Any:
        return self.call("intake", "list_letters", query, "pii" in key.scopes)
