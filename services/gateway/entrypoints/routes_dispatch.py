"""HTTP routes served by the dispatch service (through RPC). Mixed into GatewayService.

Work-order steps are `POST /work-orders/{id}/<step>` with `by` (the staff id doing it) in the body; a step the
work order's state does not allow answers 409 naming the current state. Rosters are read and changed under
/technicians, /shifts, /on-call, /leads and /teams.
"""
from __future__ import annotations

from typing import Any

from marshmallow import fields, validate
from werkzeug.wrappers import Request

from services.common.contract.dispatch import DEPARTMENTS, PAUSE_REASONS
from services.common.contract.inbound import Bool, QueryBool, StrictSchema, Text, code
from services.gateway.entrypoints.http_api import ApiBase, jsonable, route, validated

CONSENT_METHODS = ["signature", "phone", "app", "in_person"]


class DispatchByBody(StrictSchema):
    by = code(40, required=True)


class DispatchTechnicianStepBody(StrictSchema):
    by = code(40, required=True)
    technician_id = code(40, load_default=None)


class DispatchDeclineBody(DispatchTechnicianStepBody):
    reason = Text(required=True, validate=validate.Length(min=1, max=500))


class DispatchReasonBody(DispatchByBody):
    reason = Text(required=True, validate=validate.Length(min=1, max=500))


class DispatchMeasureBody(DispatchByBody):
    measure = Text(required=True, validate=validate.Length(min=1, max=2000))


class DispatchPauseBody(DispatchByBody):
    reason = fields.String(required=True, validate=validate.OneOf(PAUSE_REASONS))
    until = fields.AwareDateTime(load_default=None)
    note = Text(load_default=None, validate=validate.Length(max=500))


class DispatchAppointmentBody(DispatchByBody):
    visit_at = fields.AwareDateTime(required=True)
    note = Text(load_default=None, validate=validate.Length(max=500))


class DispatchQuoteItem(StrictSchema):
    code = code(40, required=True)
    quantity = fields.Integer(required=True, validate=validate.Range(min=1, max=1000))


class DispatchQuoteBody(DispatchByBody):
    items = fields.List(fields.Nested(DispatchQuoteItem), required=True, validate=validate.Length(min=1, max=50))


class DispatchConsentBody(DispatchByBody):
    method = fields.String(required=True, validate=validate.OneOf(CONSENT_METHODS))


class DispatchMaterialBody(StrictSchema):
    name = Text(required=True, validate=validate.Length(min=1, max=100))
    quantity = fields.Integer(load_default=1, validate=validate.Range(min=1, max=10000))
    unit = Text(load_default="个", validate=validate.Length(min=1, max=10))
    amount_cents = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10_000_000))


class DispatchWorkOrderResolveBody(DispatchByBody):
    resolution = Text(required=True, validate=validate.Length(min=1, max=2000))
    fee_cents = fields.Integer(load_default=None, validate=validate.Range(min=0, max=10_000_000))
    materials = fields.List(fields.Nested(DispatchMaterialBody), load_default=list, validate=validate.Length(max=50))


class DispatchNoteBody(DispatchByBody):
    note = Text(load_default=None, validate=validate.Length(max=500))


class DispatchReassignBody(DispatchByBody):
    technician_id = code(40, required=True)
    reason = Text(required=True, validate=validate.Length(min=1, max=500))


class DispatchTechnicianBody(StrictSchema):
    property_id = code(20, required=True)
    department = fields.String(required=True, validate=validate.OneOf(DEPARTMENTS))
    display_name = Text(load_default=None, validate=validate.Length(max=60))
    skills = fields.List(code(40), load_default=list, validate=validate.Length(max=30))
    zones = fields.List(code(40), load_default=list, validate=validate.Length(max=50))
    absent = Bool(load_default=False)


class DispatchAbsentBody(StrictSchema):
    absent = Bool(required=True)


class DispatchShiftEntry(StrictSchema):
    technician_id = code(40, required=True)
    shift = code(20, required=True)
    date = fields.Date(load_default=None)  # none: a standing entry (every day)
    lead = Bool(load_default=False)
    remove = Bool(load_default=False)


class DispatchShiftsBody(StrictSchema):
    entries = fields.List(fields.Nested(DispatchShiftEntry), required=True, validate=validate.Length(min=1, max=500))


class DispatchTeamPersonBody(StrictSchema):
    property_id = code(20, required=True)
    department = fields.String(required=True, validate=validate.OneOf(DEPARTMENTS))
    technician_id = code(40, required=True)


class DispatchOnCallBody(DispatchTeamPersonBody):
    night = fields.Date(load_default=None)  # none: the standing on-call person


class DispatchTechnicianQuery(StrictSchema):
    property_id = code(20, load_default=None)
    department = fields.String(load_default=None, validate=validate.OneOf(DEPARTMENTS))


class DispatchHandoverQuery(DispatchTechnicianQuery):
    unacknowledged = QueryBool(load_default=False)


class DispatchDailyCheckQuery(StrictSchema):
    property_id = code(20, load_default=None)
    day = fields.Date(load_default=None)


class DispatchRoutes(ApiBase):
    # -- work orders -------------------------------------------------------------------------------------------
    def _step(self, work_order_id: str, action: str, schema: type[StrictSchema], body: dict[str, Any]) -> Any:
        return self.call("dispatch", "act", work_order_id, action, jsonable(validated(schema, body)))

    @route("GET", "/work-orders/<string:work_order_id>", "staff", summary="A work order with its full history")
    def wo_get(self, request: Request, key: Any, work_order_id: str) -> Any:
        return self.call("dispatch", "get_work_order", work_order_id)

    @route("GET", "/requests/<string:request_no>/work-orders", "staff",
           summary="The work orders of a request (the original, re-routed and follow-up ones)")
    def wo_list_for_request(self, request: Request, key: Any, request_no: str) -> Any:
        return self.call("dispatch", "request_work_orders", request_no)

    @route("POST", "/work-orders/<string:work_order_id>/accept", "staff", body=DispatchTechnicianStepBody,
           summary="The assignee accepts the work order (technician_id defaults to by)")
    def wo_accept(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "accept", DispatchTechnicianStepBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/grab", "staff", body=DispatchTechnicianStepBody,
           summary="抢单: take a work order offered to a pool; the first to grab it gets it")
    def wo_grab(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "grab", DispatchTechnicianStepBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/decline", "staff", body=DispatchDeclineBody,
           summary="The assignee declines with a reason; the next candidate gets it")
    def wo_decline(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "decline", DispatchDeclineBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/reassign", "staff", body=DispatchReassignBody,
           summary="Assign or reassign to a named technician, with a reason")
    def wo_reassign(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "reassign", DispatchReassignBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/depart", "staff", body=DispatchByBody,
           summary="The technician is on the way (en route)")
    def wo_depart(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "depart", DispatchByBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/arrive", "staff", body=DispatchByBody,
           summary="The technician arrived on site")
    def wo_arrive(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "arrive", DispatchByBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/temporary-measure", "staff", body=DispatchMeasureBody,
           summary="A temporary measure was taken; the permanent fix follows")
    def wo_temporary_measure(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "temporary_measure", DispatchMeasureBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/pause", "staff", body=DispatchPauseBody,
           summary="Pause with a reason (waiting for parts, resident absent, no permission to enter, appointment)")
    def wo_pause(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "pause", DispatchPauseBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/resume", "staff", body=DispatchByBody,
           summary="Resume a paused work order where it was")
    def wo_resume(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "resume", DispatchByBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/appointment", "staff", body=DispatchAppointmentBody,
           summary="Book the visit time agreed with the resident (pauses the work until then)")
    def wo_appointment(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "appointment", DispatchAppointmentBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/quote", "staff", body=DispatchQuoteBody,
           summary="有偿服务: quote price-list items for private-unit work")
    def wo_quote(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "quote", DispatchQuoteBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/consent", "staff", body=DispatchConsentBody,
           summary="Record the resident's consent to the quote")
    def wo_consent(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "consent", DispatchConsentBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/resolve", "staff", body=DispatchWorkOrderResolveBody,
           summary="Record the fix with materials and the fee (paid work: at most the consented quote)")
    def wo_resolve(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "resolve", DispatchWorkOrderResolveBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/resident-accept", "staff", body=DispatchNoteBody,
           summary="验收: the resident accepted the work")
    def wo_resident_accept(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "resident_accept", DispatchNoteBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/resident-reject", "staff", body=DispatchReasonBody,
           summary="The resident rejected the work, with the reason; it goes back to the technician")
    def wo_resident_reject(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "resident_reject", DispatchReasonBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/close", "staff", body=DispatchByBody,
           summary="Close an accepted work order (closes the request at intake)")
    def wo_close(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "close", DispatchByBody, body)

    @route("POST", "/work-orders/<string:work_order_id>/cancel", "staff", body=DispatchReasonBody,
           summary="Cancel a work order with a reason")
    def wo_cancel(self, request: Request, key: Any, work_order_id: str, body: dict[str, Any]) -> Any:
        return self._step(work_order_id, "cancel", DispatchReasonBody, body)

    # -- rosters -----------------------------------------------------------------------------------------------
    @route("GET", "/technicians", "staff", query=DispatchTechnicianQuery,
           summary="Technicians, by property and department")
    def roster_list_technicians(self, request: Request, key: Any, query: dict[str, Any]) -> Any:
        return self.call("dispatch", "list_technicians", jsonable(query))

    @route("GET", "/technicians/<string:technician_id>", "staff",
           summary="A technician with skills, zones, load, shifts and whether on duty now")
    def roster_get_technician(self, request: Request, key: Any, technician_id: str) -> Any:
        return self.call("dispatch", "get_technician", technician_id)

    @route("PUT", "/technicians/<string:technician_id>", "staff", body=DispatchTechnicianBody,
           summary="Create or change a technician (load is kept by dispatch)")
    def roster_put_technician(self, request: Request, key: Any, technician_id: str, body: dict[str, Any]) -> Any:
        return self.call("dispatch", "put_technician", technician_id, jsonable(validated(DispatchTechnicianBody, body)))

    @route("PUT", "/technicians/<string:technician_id>/absent", "staff", body=DispatchAbsentBody,
           summary="Mark a technician absent (leave, sick) or back; absent people are never assigned")
    def roster_put_absent(self, request: Request, key: Any, technician_id: str, body: dict[str, Any]) -> Any:
        return self.call("dispatch", "set_absent", technician_id, validated(DispatchAbsentBody, body)["absent"])

    @route("POST", "/shifts", "staff", body=DispatchShiftsBody,
           summary="Add (or with remove: true, remove) shift calendar entries; no date means every day")
    def roster_post_shifts(self, request: Request, key: Any, body: dict[str, Any]) -> Any:
        return self.call("dispatch", "add_shifts", jsonable(validated(DispatchShiftsBody, body))["entries"])

    @route("PUT", "/on-call", "staff", body=DispatchOnCallBody,
           summary="Set a department's night on-call person (standing, or for one night)")
    def roster_put_on_call(self, request: Request, key: Any, body: dict[str, Any]) -> Any:
        return self.call("dispatch", "set_on_call", jsonable(validated(DispatchOnCallBody, body)))

    @route("PUT", "/leads", "staff", body=DispatchTeamPersonBody, summary="Set a department's lead")
    def roster_put_lead(self, request: Request, key: Any, body: dict[str, Any]) -> Any:
        return self.call("dispatch", "set_lead", jsonable(validated(DispatchTeamPersonBody, body)))

    @route("GET", "/teams/<string:property_id>/<string:department>", "staff",
           summary="Who answers for a department now: on duty (with load), duty lead, on-call, lead")
    def roster_get_team(self, request: Request, key: Any, property_id: str, department: str) -> Any:
        return self.call("dispatch", "team", property_id, department)

    # -- handovers and daily checks ----------------------------------------------------------------------------
    @route("GET", "/handovers", "staff", query=DispatchHandoverQuery, summary="Shift handovers, newest first")
    def dispatch_list_handovers(self, request: Request, key: Any, query: dict[str, Any]) -> Any:
        return self.call("dispatch", "list_handovers", jsonable(query))

    @route("POST", "/handovers/<string:handover_id>/acknowledge", "staff", body=DispatchByBody,
           summary="The incoming lead acknowledges a shift handover")
    def dispatch_acknowledge_handover(self, request: Request, key: Any, handover_id: str, body: dict[str, Any]) -> Any:
        return self.call("dispatch", "acknowledge_handover", handover_id, validated(DispatchByBody, body)["by"])

    @route("GET", "/daily-checks", "staff", query=DispatchDailyCheckQuery,
           summary="Daily completion checks, newest first")
    def dispatch_list_daily_checks(self, request: Request, key: Any, query: dict[str, Any]) -> Any:
        return self.call("dispatch", "list_daily_checks", jsonable(query))
