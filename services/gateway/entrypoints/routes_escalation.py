"""HTTP routes served by the escalation service (through RPC). Mixed into GatewayService."""
from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, fields, validate
from werkzeug.wrappers import Request

from services.common.contract.inbound import StrictSchema, code
from services.gateway.entrypoints.http_api import ApiBase, jsonable, route, validated


class AtRiskQuery(StrictSchema):
    property_id = code(20, load_default=None)
    department = code(40, load_default=None)


class AcknowledgeBody(StrictSchema):
    by = code(80, load_default=None)


class PolicyVersionQuery(StrictSchema):
    version = fields.Integer(load_default=None, validate=validate.Range(min=1, max=1_000_000))


class PolicyBody(Schema):
    """An escalation policy document (services/escalation/policy.yml as JSON). The escalation service validates
    every rule and names the offending path; `version` is assigned by the service."""

    class Meta:
        unknown = INCLUDE

    description = fields.String(load_default="", validate=validate.Length(max=500))
    warning_share = fields.Float(validate=validate.Range(min=0, max=1, min_inclusive=False, max_inclusive=False))
    time_scale = fields.Float(validate=validate.Range(min=0, min_inclusive=False))
    ladder = fields.List(fields.Dict(), required=True, validate=validate.Length(min=1, max=20))
    clocks = fields.Dict(required=True)
    conditions = fields.List(fields.Dict(), load_default=list, validate=validate.Length(max=200))


_DAY = fields.String(validate=validate.Regexp(r"^\d{4}-\d{2}-\d{2}$", error="an ISO date YYYY-MM-DD"))


class CalendarYearBody(StrictSchema):
    year = fields.Integer(required=True, validate=validate.Range(min=1900, max=2200))
    holidays = fields.List(_DAY, required=True, validate=validate.Length(max=366))
    workdays = fields.List(_DAY, load_default=list, validate=validate.Length(max=366))
    version = fields.Integer(load_default=None, validate=validate.Range(min=1, max=1_000_000))
    source = fields.String(load_default="ops", validate=validate.Length(min=1, max=200))


class EscalationRoutes(ApiBase):
    @route("GET", "/requests/<string:request_no>/clocks", "read",
           summary="Every SLA clock of a request (target, deadline, elapsed, paused time, state, calendar "
                   "fallback) and its escalation history")
    def get_request_clocks(self, request: Request, key: Any, request_no: str) -> Any:
        return self.call("escalation", "request_clocks", request_no)

    @route("GET", "/clocks/at-risk", "read", query=AtRiskQuery,
           summary="Open clocks past their warning point or deadline now, by property and department")
    def get_clocks_at_risk(self, request: Request, key: Any, query: dict[str, Any]) -> Any:
        return self.call("escalation", "clocks_at_risk", query.get("property_id"), query.get("department"))

    @route("POST", "/escalations/<string:escalation_id>/acknowledge", "staff", body=AcknowledgeBody,
           summary="Take charge of an escalation: the ladder stops climbing")
    def acknowledge_escalation(self, request: Request, key: Any, escalation_id: str, body: dict[str, Any]) -> Any:
        loaded = validated(AcknowledgeBody, body)
        return self.call("escalation", "acknowledge_escalation", escalation_id, loaded.get("by") or key.client)

    @route("GET", "/policy", "read", query=PolicyVersionQuery,
           summary="The escalation policy (latest version, or ?version=N)")
    def get_policy(self, request: Request, key: Any, query: dict[str, Any]) -> Any:
        return self.call("escalation", "get_policy", query.get("version"))

    @route("GET", "/policy/versions", "read", summary="Every saved version of the escalation policy")
    def get_policy_versions(self, request: Request, key: Any) -> Any:
        return self.call("escalation", "policy_versions")

    @route("POST", "/policy", "admin", body=PolicyBody, ok_status=201,
           summary="Save a new version of the escalation policy; running clocks keep the version they started under")
    def post_policy(self, request: Request, key: Any, body: dict[str, Any]) -> Any:
        validated(PolicyBody, body)
        return self.call("escalation", "add_policy", body, key.client)

    @route("GET", "/calendar/years", "read", summary="Calendar years loaded by ops (holidays and make-up working days)")
    def get_calendar_years(self, request: Request, key: Any) -> Any:
        return self.call("escalation", "calendar_years")

    @route("POST", "/calendar/years", "admin", body=CalendarYearBody, ok_status=201,
           summary="Load (a new version of) a year's official holidays and make-up working days")
    def post_calendar_year(self, request: Request, key: Any, body: dict[str, Any]) -> Any:
        loaded = jsonable(validated(CalendarYearBody, body))
        if loaded.get("version") is None:
            loaded.pop("version", None)
        return self.call("escalation", "load_calendar_year", loaded, key.client)
