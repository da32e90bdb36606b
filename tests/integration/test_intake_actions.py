"""Intake's actions on a request, persisted in full (real Postgres and RabbitMQ, in-process container)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, UTC
from typing import Any

import pytest
from nameko.containers import ServiceContainer
from nameko.standalone.rpc import ServiceRpcProxy

from services.intake.entrypoints.service import IntakeService
from tests.support import amqp_uri, db_url, scalar


@pytest.fixture(scope="module")
def rpc(infra: None) -> Any:
    """One intake container for the module: these tests share no state but their own requests."""
    container = ServiceContainer(IntakeService, {"AMQP_URI": amqp_uri(), "DATABASE_URL": db_url("intake"),
                                                 "max_workers": 10, "METRICS_PORT": 0, "LOG_LEVEL": "WARNING"})
    container.start()
    try:
        with ServiceRpcProxy("intake", {"AMQP_URI": amqp_uri()}, timeout=20) as proxy:
            yield proxy
    finally:
        container.stop()


def submit(rpc: Any, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": "desk", "channel": "phone", "property_id": "LY", "building": "3", "unit": "3-1502",
        "reporter": {"kind": "resident", "name": "王小明", "phone": "13812341234"},
        "description": "厨房水管漏水，水流到客厅", "agent_id": "agent-007",
    }
    body.update(overrides)
    answer = rpc.submit(body)
    assert answer["status"] in (200, 201), answer
    return answer["data"]


def unique_unit() -> str:
    n = uuid.uuid4().int
    return f"{1 + n % 6}-{1 + (n >> 8) % 33}{1 + (n >> 16) % 4:02d}"


def test_acknowledge_records_how_and_promise_and_answers_with_the_owner(rpc: Any) -> None:
    no = submit(rpc, channel="online", source="app", external_id=f"app-{uuid.uuid4()}",
                channel_details={"platform": "wechat"}, unit=unique_unit(), building=None)["request_no"]
    promised = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    answer = rpc.acknowledge(no, {"how": "sms", "promised_at": promised, "by": "agent-007"})
    assert answer["status"] == 200, answer
    assert answer["data"]["status"] == "acknowledged"
    assert answer["data"]["owner_agent"] == "agent-007"
    got = rpc.get_request(no)["data"]
    assert got["acknowledgements"][0]["how"] == "sms" and got["promised_at"] is not None
    assert scalar("intake", "SELECT count(*) FROM timeline WHERE request_no = %s AND event_type = "
                            "'RequestAcknowledged'", (no,)) == 1


def test_a_bad_acknowledgement_is_refused_naming_the_field(rpc: Any) -> None:
    no = submit(rpc, unit=unique_unit(), building=None)["request_no"]
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    answer = rpc.acknowledge(no, {"how": "sms", "promised_at": past, "by": "agent-007"})
    assert answer["status"] == 422 and "promised_at" in answer["errors"]
    answer = rpc.acknowledge(no, {"how": "pigeon", "promised_at": "soon", "by": "agent-007"})
    assert answer["status"] == 422 and "promised_at" in answer["errors"]
    assert rpc.acknowledge("LY-20990101-000001", {"how": "sms", "promised_at": past, "by": "a"})["status"] == 404


def test_reclassification_keeps_the_automatic_verdict(rpc: Any) -> None:
    no = submit(rpc, unit=unique_unit(), building=None)["request_no"]
    before = rpc.get_request(no)["data"]
    answer = rpc.reclassify(no, {"category": "repair", "subcategory": "electrical", "priority": "urgent",
                                 "reason": "住户补充：是插座冒火花", "by": "agent-009"})
    assert answer["status"] == 200, answer
    got = rpc.get_request(no)["data"]
    assert got["category"] == "repair" and got["subcategory"] == "electrical" and got["priority"] == "urgent"
    assert got["agent_classification"]["source"] == "agent"
    assert got["auto_classification"] == before["auto_classification"]
    assert got["reclassified_by"] == "agent-009"
    assert got["owner_agent"] == "agent-007"


def test_a_consultation_answered_at_the_desk_is_closed_and_still_counted(rpc: Any) -> None:
    no = submit(rpc, description="请问物业费在哪里交？", category="consultation", unit=unique_unit(),
                building=None)["request_no"]
    answer = rpc.answer_at_desk(no, {"answer": "可在APP缴费页面或前台刷卡缴纳", "by": "agent-007"})
    assert answer["status"] == 200, answer
    assert answer["data"]["status"] == "closed" and answer["data"]["closed_reason"] == "answered_at_desk"
    got = rpc.get_request(no)["data"]
    assert got["answer"].startswith("可在APP") and got["closed_at"]
    types = [r[0] for r in _timeline(no)]
    assert types[-2:] == ["RequestAnsweredAtDesk", "RequestClosed"]
    # Closed: a second answer is a conflict, not a second close.
    assert rpc.answer_at_desk(no, {"answer": "again", "by": "agent-007"})["status"] == 409


def test_a_consultation_that_cannot_be_answered_is_referred_as_a_normal_request(rpc: Any) -> None:
    no = submit(rpc, description="维修基金怎么申请使用？", category="consultation", priority="urgent",
                unit=unique_unit(), building=None)["request_no"]
    answer = rpc.refer(no, {"note": "涉及维修基金使用，需主管答复", "by": "agent-007"})
    assert answer["status"] == 200, answer
    got = rpc.get_request(no)["data"]
    assert got["priority"] == "normal" and got["referred_at"] and got["status"] == "registered"
    assert rpc.answer_at_desk(no, {"answer": "x", "by": "agent-007"})["status"] == 422


def test_a_repair_cannot_be_answered_at_the_desk(rpc: Any) -> None:
    no = submit(rpc, unit=unique_unit(), building=None)["request_no"]
    answer = rpc.answer_at_desk(no, {"answer": "已答复", "by": "agent-007"})
    assert answer["status"] == 422 and "category" in answer["errors"]


def test_ownership_moves_only_by_a_handover_with_a_reason(rpc: Any) -> None:
    no = submit(rpc, unit=unique_unit(), building=None)["request_no"]
    refused = rpc.hand_over(no, {"to_agent": "agent-012", "reason": "", "by": "agent-007"})
    assert refused["status"] == 422 and "reason" in refused["errors"]
    answer = rpc.hand_over(no, {"to_agent": "agent-012", "reason": "交接班", "by": "agent-007"})
    assert answer["status"] == 200 and answer["data"]["owner_agent"] == "agent-012"
    got = rpc.get_request(no)["data"]
    assert got["owner_agent"] == "agent-012"
    assert got["handovers"] == [{"from_agent": "agent-007", "to_agent": "agent-012", "reason": "交接班",
                                 "by": "agent-007", "at": got["handovers"][0]["at"]}]
    assert rpc.hand_over(no, {"to_agent": "agent-012", "reason": "again", "by": "x"})["status"] == 422


def test_cancel_and_close_end_the_request_once(rpc: Any) -> None:
    a = submit(rpc, unit=unique_unit(), building=None)["request_no"]
    answer = rpc.cancel(a, {"reason": "住户来电取消，已自行处理", "by": "agent-007"})
    assert answer["status"] == 200 and answer["data"]["status"] == "cancelled"
    assert rpc.cancel(a, {"reason": "again please", "by": "agent-007"})["status"] == 409
    got = rpc.get_request(a)["data"]
    assert got["cancel_reason"].startswith("住户") and got["closed_by"] == "agent-007"
    b = submit(rpc, unit=unique_unit(), building=None)["request_no"]
    answer = rpc.close(b, {"reason": "resolved", "by": "agent-007"})
    assert answer["status"] == 200 and answer["data"]["status"] == "closed"
    assert [r[0] for r in _timeline(b)][-1] == "RequestClosed"


@pytest.mark.parametrize("overrides,field", [
    ({"property_id": "NOPE"}, "property_id"),
    ({"unit": "flat 12"}, "unit"),
    ({"unit": "9-9999", "building": None}, "unit"),
    ({"unit": "3-1502", "building": "4"}, "building"),
])
def test_unknown_property_or_unit_is_refused_naming_the_field(rpc: Any, overrides: dict[str, Any],
                                                                field: str) -> None:
    body: dict[str, Any] = {
        "source": "desk", "channel": "phone", "property_id": "LY", "building": "3", "unit": "3-1502",
        "reporter": {"kind": "resident"}, "description": "水管漏水", **overrides}
    answer = rpc.submit(body)
    assert answer["status"] == 422 and field in answer["errors"], answer


def test_a_property_without_a_unit_list_accepts_any_well_formed_unit(rpc: Any) -> None:
    data = submit(rpc, property_id="JH", building="12", unit="12-2208")
    assert data["request_no"].startswith("JH-")
    data = submit(rpc, property_id="LY", unit="3-1502", building=None)
    assert rpc.get_request(data["request_no"])["data"]["building"] == "3"


def _timeline(no: str) -> list[tuple[str]]:
    from tests.support import db
    with db("intake") as conn:
        return conn.execute("SELECT event_type FROM timeline WHERE request_no = %s ORDER BY at, id", (no,)).fetchall()


# --- staff actions whose events start or stop escalation's clocks ---------------------------------------------------

def _events(no: str) -> list[tuple[str, dict[str, Any]]]:
    from tests.support import db
    with db("intake") as conn:
        rows = conn.execute("SELECT event_type, data FROM timeline WHERE request_no = %s ORDER BY at, id",
                            (no,)).fetchall()
    return [(r[0], r[1]) for r in rows]


def _on_escalations_queue(no: str, seen: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Envelopes of `no` read off escalation's queue (consumed; nothing consumes it during these tests)."""
    from tests.support import events_in, get_messages
    for body in events_in(get_messages("escalation.events", count=200)):
        if body.get("request_no") == no:
            seen[body["event_type"]] = body
    return seen


def test_a_supervisor_called_in_and_answering_is_on_the_timeline_and_reaches_escalation(rpc: Any) -> None:
    from tests.support import rabbit_api, vhost, wait_for
    rabbit_api("DELETE", f"/queues/{vhost()}/escalation.events/contents")
    no = submit(rpc, description="请问维修基金怎么申请使用？", category="consultation", unit=unique_unit(),
                building=None)["request_no"]
    called = rpc.call_in_supervisor(no, {"supervisor": "cs-supervisor-01",
                                         "reason": "王小明来电13812341234，需主管答复", "by": "agent-007"})
    assert called["status"] == 200, called
    assert called["data"]["supervisor_pending"] == "cs-supervisor-01" and called["data"]["owner_agent"] == "agent-007"
    assert called["data"]["events"] == ["SupervisorCalledIn"] and called["data"]["status"] == "registered"
    # A second supervisor while the first has not answered: a conflict naming the one waited for.
    second = rpc.call_in_supervisor(no, {"supervisor": "cs-supervisor-02", "reason": "再找一位", "by": "agent-007"})
    assert second["status"] == 409 and "cs-supervisor-01" in second["errors"]["supervisor"][0], second
    answered = rpc.supervisor_answer(no, {"answer": "需业委会签字，已告知办理流程", "by": "cs-supervisor-01"})
    assert answered["status"] == 200 and answered["data"]["supervisor_pending"] is None, answered
    again = rpc.supervisor_answer(no, {"answer": "再答一次", "by": "cs-supervisor-01"})
    assert again["status"] == 409 and "supervisor" in again["errors"], again

    got = rpc.get_request(no)["data"]
    call = got["supervisor_calls"][0]
    assert (call["supervisor"], call["by"], call["answered_by"]) == ("cs-supervisor-01", "agent-007",
                                                                     "cs-supervisor-01")
    assert call["answer"] == "需业委会签字，已告知办理流程" and call["answered_at"] > call["called_at"]
    events = dict(_events(no))
    assert [t for t, _ in _events(no)][-2:] == ["SupervisorCalledIn", "SupervisorAnswered"]
    assert events["SupervisorAnswered"]["called_at"] == events["SupervisorCalledIn"]["called_at"]
    # The reason typed by the agent reaches other systems without the resident's name or number.
    assert events["SupervisorCalledIn"]["reason"] == "王**来电138****1234，需主管答复"
    # Published, and bound to escalation's queue (the topology is built from the subscriptions).
    seen: dict[str, dict[str, Any]] = {}
    wait_for(lambda: {"SupervisorCalledIn", "SupervisorAnswered"} <= set(_on_escalations_queue(no, seen)),
             what="both events on escalation.events")
    assert seen["SupervisorCalledIn"]["producer"] == "intake"
    for body in seen.values():
        assert "13812341234" not in str(body) and "王小明" not in str(body)


def test_a_complex_request_gets_its_plan_once_and_a_first_response(rpc: Any) -> None:
    no = submit(rpc, description="外墙渗水，卧室墙面发霉", unit=unique_unit(), building=None)["request_no"]
    refused = rpc.give_plan(no, {"plan": "先换阀门", "by": "agent-007"})
    assert refused["status"] == 409 and refused["code"] == "not_complex", refused
    assert refused["errors"]["current_state"] == ["registered"]
    responded = rpc.first_response(no, {"response": "已联系工程部，今天下午上门查看", "by": "agent-007"})
    assert responded["status"] == 200 and responded["data"]["first_response_given"] is True, responded
    assert rpc.first_response(no, {"response": "again", "by": "agent-007"})["status"] == 409
    marked = rpc.mark_complex(no, {"reason": "需搭架勘查后定方案", "by": "agent-007"})
    assert marked["status"] == 200 and marked["data"]["complex"] is True, marked
    assert rpc.mark_complex(no, {"reason": "再标一次", "by": "agent-007"})["status"] == 409
    plan = rpc.give_plan(no, {"plan": "周三搭架勘查，周五前完成外墙防水修补", "by": "eng-supervisor-02"})
    assert plan["status"] == 200 and plan["data"]["plan_given"] is True, plan
    assert rpc.give_plan(no, {"plan": "改方案", "by": "eng-supervisor-02"})["status"] == 409
    got = rpc.get_request(no)["data"]
    assert got["marked_complex"]["text"] == "需搭架勘查后定方案" and got["plan"]["by"] == "eng-supervisor-02"
    assert got["first_response"]["text"].startswith("已联系工程部")
    events = _events(no)
    assert [t for t, _ in events][-3:] == ["FirstResponseGiven", "RequestMarkedComplex", "PlanGiven"]
    data = dict(events)
    assert data["PlanGiven"]["marked_at"] == data["RequestMarkedComplex"]["marked_at"]


def test_only_a_complaint_gets_a_complaint_reply(rpc: Any) -> None:
    repair = submit(rpc, unit=unique_unit(), building=None)["request_no"]
    refused = rpc.reply_to_complaint(repair, {"reply": "已整改", "by": "cs-assistant-02"})
    assert refused["status"] == 409 and refused["code"] == "not_complaint", refused
    assert "only a complaint" in refused["errors"]["category"][0] and "repair" in refused["errors"]["category"][0]
    complaint = submit(rpc, description="保洁人员态度恶劣，楼道垃圾三天没清", category="complaint",
                       subcategory="service_quality", unit=unique_unit(), building=None)["request_no"]
    replied = rpc.reply_to_complaint(complaint, {"reply": "已约谈保洁班长，加强楼道每日清扫", "by": "cs-assistant-02"})
    assert replied["status"] == 200 and replied["data"]["complaint_replied"] is True, replied
    assert rpc.reply_to_complaint(complaint, {"reply": "再答复", "by": "cs-assistant-02"})["status"] == 409
    assert [t for t, _ in _events(complaint)][-1] == "ComplaintReplied"
    assert rpc.get_request(complaint)["data"]["complaint_reply"]["by"] == "cs-assistant-02"


@pytest.mark.parametrize("method,body,field", [
    ("call_in_supervisor", {"supervisor": "", "reason": "需主管答复", "by": "agent-007"}, "supervisor"),
    ("call_in_supervisor", {"supervisor": "agent-007", "reason": "需主管答复", "by": "agent-007"}, "supervisor"),
    ("supervisor_answer", {"answer": "", "by": "cs-supervisor-01"}, "answer"),
    ("mark_complex", {"reason": "x", "by": "agent-007"}, "reason"),
    ("give_plan", {"plan": "周五前修补", "by": "not an id"}, "by"),
    ("first_response", {"response": None, "by": "agent-007"}, "response"),
    ("reply_to_complaint", {"reply": "已整改\x00", "by": "agent-007"}, "reply"),
])
def test_a_bad_staff_action_is_refused_naming_the_field_and_records_nothing(rpc: Any, method: str,
                                                                            body: dict[str, Any],
                                                                            field: str) -> None:
    no = submit(rpc, unit=unique_unit(), building=None)["request_no"]
    before = _events(no)
    answer = getattr(rpc, method)(no, body)
    assert answer["status"] == 422 and field in answer["errors"], answer
    assert _events(no) == before
    assert getattr(rpc, method)("LY-20990101-000001", body)["status"] == 404


@pytest.mark.parametrize("ending", ["close", "cancel"])
def test_nothing_is_recorded_on_an_ended_request(rpc: Any, ending: str) -> None:
    no = submit(rpc, description="楼道灯不亮，投诉多次没人管", category="complaint", unit=unique_unit(),
                building=None)["request_no"]
    assert rpc.call_in_supervisor(no, {"supervisor": "cs-supervisor-01", "reason": "需主管答复",
                                       "by": "agent-007"})["status"] == 200
    assert rpc.mark_complex(no, {"reason": "需更换线路", "by": "agent-007"})["status"] == 200
    assert getattr(rpc, ending)(no, {"reason": "住户来电撤回", "by": "agent-007"})["status"] == 200
    before = _events(no)
    for method, body in (
            ("call_in_supervisor", {"supervisor": "cs-supervisor-02", "reason": "需主管答复", "by": "agent-007"}),
            ("supervisor_answer", {"answer": "已答复", "by": "cs-supervisor-01"}),
            ("mark_complex", {"reason": "需更换线路", "by": "agent-007"}),
            ("give_plan", {"plan": "周五前更换", "by": "agent-007"}),
            ("first_response", {"response": "马上派人", "by": "agent-007"}),
            ("reply_to_complaint", {"reply": "已整改", "by": "agent-007"})):
        answer = getattr(rpc, method)(no, body)
        assert answer["status"] == 409, (method, answer)
        assert answer["errors"]["current_state"] == ["closed" if ending == "close" else "cancelled"]
    assert _events(no) == before
