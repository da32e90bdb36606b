"""Staff actions on a request whose events start or stop escalation's clocks: a supervisor called in and answering
(10 minutes), a complex problem and its plan (48 hours), the first response, the reply to a complaint."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common import rpc as answers
from services.common.contract.registry import dump_data, spec_for
from services.common.domain import InvalidTransition
from services.escalation.domain.mapping import Verb, actions_for
from services.intake.domain import events as ev
from services.intake.domain.classification import Classification
from services.intake.domain.model import ActionRefused, InvalidRequest, Reporter, Request, without_contact

NOW = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=7)
PLUMBING = Classification("repair", "plumbing", "urgent", False, 0.9, ("水管", "爆了"))
COMPLAINT = Classification("complaint", "service_quality", "normal", False, 0.8, ("投诉",), validity="valid")


def register(classification: Classification = PLUMBING) -> Request:
    req = Request.register(
        request_no="LY-20261129-000042", property_id="LY", channel="phone",
        description="3栋1502厨房水管爆了，水漫到客厅", reporter=Reporter.create("resident", "张三", "13812341234"),
        classification=classification, registered_by="agent-007", now=NOW, building="3", unit="3-1502")
    req.events.clear()
    return req


def loaded(event: Any) -> dict[str, Any]:
    """The event as the bus carries it: dumped and loaded with intake's contract schema."""
    data = dump_data(event.event_type, event.to_dict())
    return spec_for(event.event_type).schema().load(data)


def refusal(action: Any) -> dict[str, Any]:
    """The RPC answer a refused action becomes (what the gateway turns into the HTTP status)."""
    return answers.answer(action)()


# --- a supervisor called in: 解决不了的应向部门主管汇报后在10分钟内给予回复 ---

def test_calling_in_a_supervisor_records_who_why_and_when_and_keeps_the_owner():
    req = register()
    event = req.call_in_supervisor(supervisor="cs-supervisor-01", reason="涉及维修基金，需主管答复", by="agent-007",
                                   now=NOW)
    assert isinstance(event, ev.SupervisorCalledIn) and req.events == [event]
    assert (event.supervisor, event.called_by, event.owner_agent, event.called_at) == (
        "cs-supervisor-01", "agent-007", "agent-007", NOW)
    assert req.pending_supervisor_call is not None and req.owner_agent == "agent-007" and req.status == "registered"
    assert loaded(event)["called_at"] == NOW


def test_the_supervisors_answer_stops_the_call_and_names_the_call_it_answers():
    req = register()
    req.call_in_supervisor(supervisor="cs-supervisor-01", reason="需主管答复", by="agent-007", now=NOW)
    event = req.record_supervisor_answer(answer="已告知住户办理流程", by="cs-supervisor-01", now=LATER)
    assert isinstance(event, ev.SupervisorAnswered)
    assert (event.supervisor, event.called_at, event.answered_at, event.answered_by) == (
        "cs-supervisor-01", NOW, LATER, "cs-supervisor-01")
    assert req.pending_supervisor_call is None and req.supervisor_calls[-1].answer == "已告知住户办理流程"
    assert loaded(event)["answered_at"] == LATER


def test_a_supervisor_never_called_in_cannot_answer():
    req = register()
    with pytest.raises(ActionRefused) as err:
        req.record_supervisor_answer(answer="好的", by="cs-supervisor-01", now=NOW)
    assert err.value.code == "no_supervisor_called" and "no supervisor was called in" in err.value.message
    assert req.events == [] and req.supervisor_calls == []
    answer = refusal(lambda: register().record_supervisor_answer(answer="好的", by="cs-supervisor-01", now=NOW))
    assert answer["status"] == 409 and answer["code"] == "no_supervisor_called"
    assert "supervisor" in answer["errors"] and answer["errors"]["current_state"] == ["registered"]


def test_a_supervisor_answers_a_call_once():
    req = register()
    req.call_in_supervisor(supervisor="cs-supervisor-01", reason="需主管答复", by="agent-007", now=NOW)
    req.record_supervisor_answer(answer="已答复", by="cs-supervisor-01", now=LATER)
    with pytest.raises(ActionRefused) as err:
        req.record_supervisor_answer(answer="再答一次", by="cs-supervisor-01", now=LATER)
    assert "already answered" in err.value.message


def test_a_second_supervisor_is_not_called_in_while_the_first_has_not_answered():
    req = register()
    req.call_in_supervisor(supervisor="cs-supervisor-01", reason="需主管答复", by="agent-007", now=NOW)
    with pytest.raises(ActionRefused) as err:
        req.call_in_supervisor(supervisor="cs-supervisor-02", reason="再找一位", by="agent-007", now=LATER)
    assert err.value.code == "supervisor_pending" and "cs-supervisor-01" in err.value.message
    req.record_supervisor_answer(answer="已答复", by="cs-supervisor-01", now=LATER)
    again = req.call_in_supervisor(supervisor="cs-supervisor-02", reason="住户又提出新问题", by="agent-007", now=LATER)
    assert again.supervisor == "cs-supervisor-02" and len(req.supervisor_calls) == 2


def test_calling_in_names_every_bad_field_and_the_agent_is_not_their_own_supervisor():
    req = register()
    with pytest.raises(InvalidRequest) as err:
        req.call_in_supervisor(supervisor="", reason="", by="bad agent", now=NOW)
    assert {"supervisor", "reason", "by"} <= set(err.value.errors)
    with pytest.raises(InvalidRequest) as err:
        req.call_in_supervisor(supervisor="agent-007", reason="自己找自己", by="agent-007", now=NOW)
    assert set(err.value.errors) == {"supervisor"}
    assert req.events == [] and req.supervisor_calls == []


# --- a complex problem: 复杂问题需在48小时内给出解决方案 ---

def test_a_complex_problem_is_marked_once_with_a_reason():
    req = register()
    event = req.mark_complex(reason="外墙渗水，需勘查后定方案", by="agent-007", now=NOW)
    assert isinstance(event, ev.RequestMarkedComplex) and event.marked_at == NOW and event.category == "repair"
    with pytest.raises(ActionRefused) as err:
        req.mark_complex(reason="再标一次", by="agent-007", now=LATER)
    assert err.value.code == "already_complex"
    with pytest.raises(InvalidRequest) as bad:
        register().mark_complex(reason="x", by="agent-007", now=NOW)
    assert set(bad.value.errors) == {"reason"}


def test_the_plan_of_a_complex_request_names_when_it_was_marked():
    req = register()
    req.mark_complex(reason="外墙渗水，需勘查", by="agent-007", now=NOW)
    event = req.give_plan(plan="周三搭架勘查，周五前完成防水修补", by="eng-supervisor-02",
                          now=NOW + timedelta(hours=20))
    assert isinstance(event, ev.PlanGiven)
    assert (event.marked_at, event.given_at, event.given_by) == (NOW, NOW + timedelta(hours=20), "eng-supervisor-02")
    with pytest.raises(ActionRefused) as err:
        req.give_plan(plan="改一下方案", by="eng-supervisor-02", now=NOW + timedelta(hours=21))
    assert err.value.code == "plan_already_given"


def test_a_request_not_marked_complex_gets_no_plan():
    req = register()
    with pytest.raises(ActionRefused) as err:
        req.give_plan(plan="先换阀门", by="agent-007", now=NOW)
    assert err.value.code == "not_complex" and "not marked complex" in err.value.message
    assert req.plan is None and req.events == []
    answer = refusal(lambda: register().give_plan(plan="先换阀门", by="agent-007", now=NOW))
    assert answer["status"] == 409 and answer["code"] == "not_complex"


# --- first response and complaint reply ---

def test_the_first_response_is_given_once():
    req = register()
    event = req.give_first_response(response="师傅30分钟内上门", by="agent-007", now=LATER)
    assert isinstance(event, ev.FirstResponseGiven) and event.responded_at == LATER
    with pytest.raises(ActionRefused) as err:
        req.give_first_response(response="再回应一次", by="agent-007", now=LATER)
    assert err.value.code == "already_responded"


def test_only_a_complaint_gets_a_complaint_reply_and_the_refusal_says_why():
    req = register()
    answer = refusal(lambda: req.reply_to_complaint(reply="已整改", by="cs-assistant-02", now=NOW))
    assert answer["status"] == 409 and answer["code"] == "not_complaint"
    assert "only a complaint" in answer["errors"]["category"][0] and "repair" in answer["errors"]["category"][0]
    assert req.complaint_reply is None and req.events == []


def test_a_complaint_is_replied_to_once():
    req = register(COMPLAINT)
    event = req.reply_to_complaint(reply="已约谈保洁班长，加强楼道清扫", by="cs-assistant-02", now=LATER)
    assert isinstance(event, ev.ComplaintReplied)
    assert (event.category, event.complaint_valid, event.replied_at) == ("complaint", True, LATER)
    with pytest.raises(ActionRefused) as err:
        req.reply_to_complaint(reply="再答复一次", by="cs-assistant-02", now=LATER)
    assert err.value.code == "already_replied"


def test_a_repair_reclassified_as_a_complaint_can_be_replied_to():
    req = register()
    req.reclassify(category="complaint", subcategory="service_quality", by="agent-007", reason="住户投诉维修质量",
                   now=NOW)
    assert req.reply_to_complaint(reply="已安排返修并致歉", by="cs-assistant-02", now=LATER).category == "complaint"


# --- nothing on an ended request ---

ACTIONS = {
    "call_in_supervisor": lambda r: r.call_in_supervisor(supervisor="cs-supervisor-01", reason="需主管答复",
                                                         by="agent-007", now=LATER),
    "record_supervisor_answer": lambda r: r.record_supervisor_answer(answer="已答复", by="cs-supervisor-01",
                                                                     now=LATER),
    "mark_complex": lambda r: r.mark_complex(reason="需勘查", by="agent-007", now=LATER),
    "give_plan": lambda r: r.give_plan(plan="周五前修补", by="agent-007", now=LATER),
    "give_first_response": lambda r: r.give_first_response(response="马上派人", by="agent-007", now=LATER),
    "reply_to_complaint": lambda r: r.reply_to_complaint(reply="已整改", by="agent-007", now=LATER),
}


@pytest.mark.parametrize("ending", ["close", "cancel"])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_nothing_is_recorded_on_a_closed_or_cancelled_request(action: str, ending: str):
    req = register(COMPLAINT)
    req.call_in_supervisor(supervisor="cs-supervisor-01", reason="需主管答复", by="agent-007", now=NOW)
    req.mark_complex(reason="需勘查", by="agent-007", now=NOW)
    if ending == "close":
        req.close(by="agent-007", now=NOW)
    else:
        req.cancel(reason="住户撤回", by="agent-007", now=NOW)
    before = len(req.events)
    with pytest.raises(InvalidTransition) as err:
        ACTIONS[action](req)
    assert err.value.current_state == req.status
    assert len(req.events) == before
    assert refusal(lambda: ACTIONS[action](req))["status"] == 409


# --- the events: contract, no personal data, and the clocks escalation's table moves with them ---

def _every_event(req: Request) -> list[Any]:
    req.give_first_response(response="请联系13812341234的张三确认时间", by="agent-007", now=NOW)
    req.call_in_supervisor(supervisor="cs-supervisor-01", reason="张三要求赔偿，电话 138 1234 1234", by="agent-007",
                           now=NOW)
    req.record_supervisor_answer(answer="回电0755-12345678告知张三", by="cs-supervisor-01", now=LATER)
    req.mark_complex(reason="张三家外墙渗水", by="agent-007", now=NOW)
    req.give_plan(plan="周五前修补，通知+86 13812341234", by="agent-007", now=LATER)
    req.reply_to_complaint(reply="已电话答复张三", by="cs-assistant-02", now=LATER)
    return list(req.events)


def test_the_events_match_the_contract_and_never_carry_the_residents_name_or_phone():
    events = _every_event(register(COMPLAINT))
    assert [e.event_type for e in events] == ["FirstResponseGiven", "SupervisorCalledIn", "SupervisorAnswered",
                                              "RequestMarkedComplex", "PlanGiven", "ComplaintReplied"]
    for event in events:
        data = dump_data(event.event_type, event.to_dict())
        text = repr(data)
        assert "张三" not in text and "13812341234" not in text and "1234 1234" not in text, text
        assert "12345678" not in text, text
        spec_for(event.event_type).schema().load(data)
    assert events[1].reason == "张*要求赔偿，电话 138****1234"


def test_staff_text_keeps_other_numbers_and_names():
    assert without_contact("LY-20261129-000042 同一问题，工单2026号") == "LY-20261129-000042 同一问题，工单2026号"
    assert without_contact("张三的邻居李四", Reporter("resident", "张三", None)) == "张*的邻居李四"


@pytest.mark.parametrize("event_type,verb,clock,instant", [
    ("SupervisorCalledIn", Verb.START, "supervisor_answer", NOW),
    ("SupervisorAnswered", Verb.STOP, "supervisor_answer", LATER),
    ("RequestMarkedComplex", Verb.START, "plan", NOW),
    ("PlanGiven", Verb.STOP, "plan", LATER),
    ("FirstResponseGiven", Verb.STOP, "first_response", NOW),
    ("ComplaintReplied", Verb.STOP, "complaint_reply", LATER),
])
def test_each_event_moves_the_clock_escalations_table_names_at_the_actions_instant(event_type, verb, clock,
                                                                                   instant):
    event = next(e for e in _every_event(register(COMPLAINT)) if e.event_type == event_type)
    wire = dump_data(event.event_type, event.to_dict())  # JSON-ready, as escalation's consumer loads it
    actions = actions_for(event_type, spec_for(event_type).schema().load(wire), NOW + timedelta(days=1))
    assert [(a.verb, a.clock, a.subject, a.at) for a in actions] == [(verb, clock, "LY-20261129-000042", instant)]
