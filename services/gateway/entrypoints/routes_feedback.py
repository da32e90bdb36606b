"""HTTP routes served by the feedback service (through RPC). Mixed into GatewayService.

Changes are `staff`, reads `read`. Reports in CSV or HTML are answered as such (text/csv, text/html), not as JSON.
"""
from __future__ import annotations

from typing import Any

from marshmallow import fields, validate
from werkzeug.wrappers import Request, Response

from services.common.contract.feedback import REVIEWER_ROLES, SATISFACTION_LEVELS, SURVEY_SERVICES, VISIT_METHODS
from services.common.contract.inbound import Bool, StrictSchema, Text, code
from services.gateway.entrypoints.http_api import ApiBase, jsonable, route, validated

# Years 2000-2099: a report outside them has no data and year 0 is no date at all.
PERIOD = r"^20\d{2}-(0[1-9]|1[0-2])$"
QUARTER = r"^20\d{2}-Q[1-4]$"
FORMATS = ["json", "csv", "html"]
REPORT_TYPES = ("application/json", "text/csv", "text/html")


class UnreachableBody(StrictSchema):
    method = fields.String(required=True, validate=validate.OneOf(VISIT_METHODS))
    by = code(40, required=True)
    note = Text(load_default="", validate=validate.Length(max=2000))


class CompleteVisitBody(StrictSchema):
    method = fields.String(required=True, validate=validate.OneOf(VISIT_METHODS))
    visited_by = code(40, required=True)
    level = fields.String(required=True, validate=validate.OneOf(SATISFACTION_LEVELS))
    score = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=5))
    fee_checked = Bool(required=True)
    resident_signed = Bool(load_default=None, allow_none=True)
    comments = Text(load_default="", validate=validate.Length(max=4000))
    problem_found = Bool(load_default=False)
    problem_description = Text(load_default="", validate=validate.Length(max=4000))


class DueQuery(StrictSchema):
    due_before = fields.AwareDateTime(load_default=None)
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000))


class DraftLetterBody(StrictSchema):
    template_id = code(60, required=True)
    values = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=60)),
                         values=Text(validate=validate.Length(max=4000)), load_default=dict)
    department = code(40, required=True)
    concerns_property = Bool(load_default=True)
    legal = Bool(load_default=False)
    by = code(40, required=True)


class ReviseLetterBody(StrictSchema):
    body = Text(required=True, validate=validate.Length(min=1, max=20000))
    by = code(40, required=True)
    note = Text(load_default="", validate=validate.Length(max=2000))


class ReviewLetterBody(StrictSchema):
    role = fields.String(required=True, validate=validate.OneOf(REVIEWER_ROLES))
    reviewer_id = code(40, required=True)
    decision = fields.String(required=True, validate=validate.OneOf(["approved", "changes_requested"]))
    comments = Text(load_default="", validate=validate.Length(max=4000))
    version = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1))


class ApproveLetterBody(StrictSchema):
    approver_id = code(40, required=True)
    approver_role = code(40, load_default="marketing_manager")


class SendLetterBody(StrictSchema):
    method = fields.String(required=True, validate=validate.OneOf(["registered_mail", "online"]))
    tracking_no = Text(load_default=None, allow_none=True, validate=validate.Length(min=1, max=60))
    by = code(40, required=True)


class ConfirmLetterBody(StrictSchema):
    by = code(40, required=True)
    received = Bool(load_default=True)
    notes = Text(load_default="", validate=validate.Length(max=4000))


class ByBody(StrictSchema):
    by = code(40, required=True)


class PraiseBody(StrictSchema):
    property_id = code(20, required=True)
    department = code(40, required=True)
    staff_id = code(40, load_default=None, allow_none=True)
    channel = fields.String(required=True, validate=validate.OneOf(
        ["letter", "phone", "visit", "online", "email", "banner", "return_visit"]))
    summary = Text(required=True, validate=validate.Length(min=1, max=4000))
    received_at = fields.AwareDateTime(load_default=None, allow_none=True)
    recorded_by = code(40, required=True)
    request_no = code(40, load_default=None, allow_none=True)


class AuditBody(StrictSchema):
    period = fields.String(required=True, validate=validate.Regexp(PERIOD, error="YYYY-MM"))
    supervisor_id = code(40, required=True)


class FindingBody(StrictSchema):
    visit_id = fields.UUID(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(["confirmed", "discrepancy", "unreachable"]))
    notes = Text(load_default="", validate=validate.Length(max=4000))
    supervisor_id = code(40, required=True)


class SurveyBody(StrictSchema):
    property_id = code(20, required=True)
    period = code(20, required=True)
    households_total = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1))


class RatingBody(StrictSchema):
    level = fields.String(required=True, validate=validate.OneOf(SATISFACTION_LEVELS))
    score = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=5))


class SurveyAnswerBody(StrictSchema):
    unit = code(40, required=True)
    ratings = fields.Dict(keys=fields.String(validate=validate.OneOf(SURVEY_SERVICES)),
                          values=fields.Nested(RatingBody), required=True, validate=validate.Length(min=1))
    comments = Text(load_default="", validate=validate.Length(max=4000))


class SurveyActionBody(StrictSchema):
    service = fields.String(required=True, validate=validate.OneOf(SURVEY_SERVICES))
    description = Text(required=True, validate=validate.Length(min=1, max=4000))
    owner_department = code(40, required=True)
    due_at = fields.AwareDateTime(load_default=None, allow_none=True)


class MonthlyQuery(StrictSchema):
    period = fields.String(required=True, validate=validate.Regexp(PERIOD, error="YYYY-MM"))
    property_id = code(20, load_default=None)
    format = fields.String(load_default="json", validate=validate.OneOf(FORMATS))


class QuarterlyQuery(StrictSchema):
    quarter = fields.String(required=True, validate=validate.Regexp(QUARTER, error="YYYY-Qn"))
    property_id = code(20, load_default=None)
    format = fields.String(load_default="json", validate=validate.OneOf(FORMATS))
    min_occurrences = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=2, max=100))


LETTER_STEPS = {
    "revisions": ("revise", ReviseLetterBody),
    "reviews": ("review", ReviewLetterBody),
    "approve": ("approve", ApproveLetterBody),
    "send": ("send", SendLetterBody),
    "confirm": ("confirm", ConfirmLetterBody),
    "archive": ("archive", ByBody),
}


def _document(status: int, data: Any) -> Any:
    """A report in CSV or HTML comes back from feedback as {content_type, body}: answer it as that media type."""
    if isinstance(data, dict) and set(data) == {"content_type", "body"}:
        return Response(data["body"], status=status, content_type=data["content_type"])
    return status, data


class FeedbackRoutes(ApiBase):
    # -- return visits
    @route("POST", "/return-visits/<string:visit_id>/attempts", "staff", body=UnreachableBody,
           summary="Record that the resident could not be reached; the next retry follows the schedule")
    def visit_unreachable(self, request: Request, key: Any, visit_id: str, body: dict[str, Any]) -> Any:
        return self.call("feedback", "record_unreachable", visit_id, jsonable(validated(UnreachableBody, body)))

    @route("POST", "/return-visits/<string:visit_id>/complete", "staff", body=CompleteVisitBody,
           summary="Record the return visit with the resident's satisfaction (raises a follow-up when unsatisfied)")
    def visit_complete(self, request: Request, key: Any, visit_id: str, body: dict[str, Any]) -> Any:
        return self.call("feedback", "complete_visit", visit_id, jsonable(validated(CompleteVisitBody, body)))

    @route("GET", "/requests/<string:request_no>/return-visits", "read",
           summary="A request's return visits and the audit trail of its return-visit decisions")
    def request_return_visits(self, request: Request, key: Any, request_no: str) -> Any:
        return self.call("feedback", "request_visits", request_no)

    @route("GET", "/return-visits", "read", query=DueQuery, summary="Scheduled return visits due before a time")
    def return_visits_due(self, request: Request, key: Any, query: dict[str, Any]) -> Any:
        return self.call("feedback", "visits_due", jsonable(query))

    # -- reply letters
    @route("POST", "/requests/<string:request_no>/reply-letters", "staff", body=DraftLetterBody, ok_status=201,
           summary="Draft a reply letter (回函) to the request from a template")
    def letter_draft(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self.call("feedback", "draft_letter", request_no, jsonable(validated(DraftLetterBody, body)))

    @route("GET", "/requests/<string:request_no>/reply-letters", "read", summary="A request's reply letters")
    def request_letters(self, request: Request, key: Any, request_no: str) -> Any:
        return self.call("feedback", "request_letters", request_no)

    @route("GET", "/reply-letters/<string:letter_id>", "read", summary="A reply letter with every version and step")
    def letter_get(self, request: Request, key: Any, letter_id: str) -> Any:
        return self.call("feedback", "get_letter", letter_id)

    @route("POST", "/reply-letters/<string:letter_id>/revisions", "staff", body=ReviseLetterBody,
           summary="A new version of the letter (reviews and approval are taken again)")
    def letter_revise(self, request: Request, key: Any, letter_id: str, body: dict[str, Any]) -> Any:
        return self._letter(letter_id, "revisions", body)

    @route("POST", "/reply-letters/<string:letter_id>/reviews", "staff", body=ReviewLetterBody,
           summary="A required reviewer's decision on the current version")
    def letter_review(self, request: Request, key: Any, letter_id: str, body: dict[str, Any]) -> Any:
        return self._letter(letter_id, "reviews", body)

    @route("POST", "/reply-letters/<string:letter_id>/approve", "staff", body=ApproveLetterBody,
           summary="The marketing manager's approval of a fully reviewed letter (409 before)")
    def letter_approve(self, request: Request, key: Any, letter_id: str, body: dict[str, Any]) -> Any:
        return self._letter(letter_id, "approve", body)

    @route("POST", "/reply-letters/<string:letter_id>/send", "staff", body=SendLetterBody,
           summary="Send the approved letter by registered mail (tracking number) or online (409 before approval)")
    def letter_send(self, request: Request, key: Any, letter_id: str, body: dict[str, Any]) -> Any:
        return self._letter(letter_id, "send", body)

    @route("POST", "/reply-letters/<string:letter_id>/confirm", "staff", body=ConfirmLetterBody,
           summary="The phone confirmation after sending (not received: back to approved, to send again)")
    def letter_confirm(self, request: Request, key: Any, letter_id: str, body: dict[str, Any]) -> Any:
        return self._letter(letter_id, "confirm", body)

    @route("POST", "/reply-letters/<string:letter_id>/archive", "staff", body=ByBody,
           summary="Archive the confirmed letter with all its versions")
    def letter_archive(self, request: Request, key: Any, letter_id: str, body: dict[str, Any]) -> Any:
        return self._letter(letter_id, "archive", body)

    def _letter(self, letter_id: str, step: str, body: dict[str, Any]) -> Any:
        action, schema = LETTER_STEPS[step]
        return self.call("feedback", "letter_step", letter_id, action, jsonable(validated(schema, body)))

    # -- praise and audits
    @route("POST", "/praise", "staff", body=PraiseBody, ok_status=201,
           summary="Record a praise letter or compliment against a staff member or department")
    def praise_add(self, request: Request, key: Any, body: dict[str, Any]) -> Any:
        return self.call("feedback", "add_praise", jsonable(validated(PraiseBody, body)))

    @route("POST", "/audits", "staff", body=AuditBody, ok_status=201,
           summary="Start the month's supervisor audit of return visits (every paid service and a sample)")
    def audit_start(self, request: Request, key: Any, body: dict[str, Any]) -> Any:
        return self.call("feedback", "start_audit", jsonable(validated(AuditBody, body)))

    @route("GET", "/audits/<string:audit_id>", "read", summary="An audit: its sample, findings and what is left")
    def audit_get(self, request: Request, key: Any, audit_id: str) -> Any:
        return self.call("feedback", "get_audit", audit_id)

    @route("POST", "/audits/<string:audit_id>/findings", "staff", body=FindingBody,
           summary="Record the supervisor's finding on one sampled return visit")
    def audit_finding(self, request: Request, key: Any, audit_id: str, body: dict[str, Any]) -> Any:
        return self.call("feedback", "record_finding", audit_id, jsonable(validated(FindingBody, body)))

    # -- surveys
    @route("POST", "/surveys", "staff", body=SurveyBody, ok_status=201,
           summary="Open a satisfaction survey of all households of a property")
    def survey_open(self, request: Request, key: Any, body: dict[str, Any]) -> Any:
        return self.call("feedback", "open_survey", jsonable(validated(SurveyBody, body)))

    @route("GET", "/surveys/<string:survey_id>", "read", summary="A survey with its per-service results")
    def survey_get(self, request: Request, key: Any, survey_id: str) -> Any:
        return self.call("feedback", "get_survey", survey_id)

    @route("POST", "/surveys/<string:survey_id>/answers", "staff", body=SurveyAnswerBody,
           summary="A household's answer (answering again replaces it)")
    def survey_answer(self, request: Request, key: Any, survey_id: str, body: dict[str, Any]) -> Any:
        return self.call("feedback", "survey_step", survey_id, "answer", jsonable(validated(SurveyAnswerBody, body)))

    @route("POST", "/surveys/<string:survey_id>/close", "staff", summary="Close the survey and publish its results")
    def survey_close(self, request: Request, key: Any, survey_id: str) -> Any:
        return self.call("feedback", "survey_step", survey_id, "close", {})

    @route("POST", "/surveys/<string:survey_id>/actions", "staff", body=SurveyActionBody,
           summary="An improvement action the survey led to")
    def survey_action(self, request: Request, key: Any, survey_id: str, body: dict[str, Any]) -> Any:
        return self.call("feedback", "survey_step", survey_id, "action", jsonable(validated(SurveyActionBody, body)))

    # -- statistics
    @route("GET", "/reports/monthly", "read", query=MonthlyQuery, content_types=REPORT_TYPES,
           summary="The monthly service report as JSON, CSV (text/csv) or a self-contained HTML page")
    def report_monthly(self, request: Request, key: Any, query: dict[str, Any]) -> Any:
        return _document(*self.call("feedback", "monthly_report", jsonable(query)))

    @route("GET", "/reports/quarterly", "read", query=QuarterlyQuery, content_types=REPORT_TYPES,
           summary="The quarter's recurring problems, ranked, as JSON, CSV or HTML")
    def report_quarterly(self, request: Request, key: Any, query: dict[str, Any]) -> Any:
        return _document(*self.call("feedback", "quarterly_report", jsonable(query)))
