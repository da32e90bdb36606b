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
