"""On real processes, through the HTTP API only: intake's staff actions on one complaint (a supervisor called in and
answering, the complex mark and its plan, the first response, the complaint reply) start and stop escalation's
clocks, as GET /requests/{no}/clocks shows. Under tests/e2e/policy_seconds.yml the supervisor's answer is due in 1 s
and the plan in 288 s; each action is taken at once, so nothing waits for a deadline."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from tests.e2e.conftest import Platform
from tests.support import wait_for

CLOCKS = ("supervisor_answer", "plan", "first_response", "complaint_reply")


def _clocks(platform: Platform, request_no: str) -> dict[str, dict[str, Any]]:
    r = platform.api("GET", f"/requests/{request_no}/clocks", key="read")
    return {c["clock"]: c for c in r.json()["clocks"]} if r.status_code == 200 else {}


def _act(platform: Platform, request_no: str, action: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    r = platform.api("POST", f"/requests/{request_no}/{action}", key="staff", json=body)
    assert r.status_code == status, (action, r.status_code, r.text)
    return dict(r.json())


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_staff_actions_on_a_complaint_start_and_meet_its_clocks(platform: Platform) -> None:
    r = platform.api("POST", "/requests", headers={"Idempotency-Key": f"staff-clocks-{uuid.uuid4()}"}, json={
        "channel": "phone", "property_id": "LY", "building": "3", "unit": "3-1502", "agent_id": "agent-007",
        "category": "complaint", "subcategory": "service_quality", "reporter": {"kind": "resident"},
        "description": "楼道垃圾三天没人清，投诉保洁"})
    assert r.status_code == 201, r.text
    no = r.json()["request_no"]

    # Refused before their precondition, and nothing recorded.
    refused = _act(platform, no, "supervisor-answer", {"by": "cs-supervisor-01", "answer": "好的"}, 409)
    assert "supervisor" in refused["errors"]
    assert "not marked complex" in _act(platform, no, "plan", {"by": "agent-007", "plan": "先清理"}, 409)[
        "errors"]["state"][0]

    _act(platform, no, "first-response", {"by": "agent-007", "response": "已通知保洁主管，今天内处理"})
    called = _act(platform, no, "supervisor", {"by": "agent-007", "supervisor": "cs-supervisor-01",
                                                "reason": "住户要求主管出面说明"})
    assert called["supervisor_pending"] == "cs-supervisor-01" and called["owner_agent"] == "agent-007"
    _act(platform, no, "supervisor-answer", {"by": "cs-supervisor-01", "answer": "主管已致电住户并致歉"})
    _act(platform, no, "complex", {"by": "agent-007", "reason": "涉及保洁外包合同，需定整改方案"})
    _act(platform, no, "plan", {"by": "cs-supervisor-01", "plan": "本周更换楼道保洁人员，主管每日抽查"})
    replied = _act(platform, no, "complaint-reply", {"by": "cs-assistant-02", "reply": "已按整改方案执行并回复住户"})
    assert replied["complaint_replied"] is True and replied["status"] == "registered"

    clocks = wait_for(lambda: (lambda c: c if all(c.get(k, {}).get("state") == "met" for k in CLOCKS) else None)(
        _clocks(platform, no)), timeout=30, what=f"{', '.join(CLOCKS)} met")
    supervisor, plan = clocks["supervisor_answer"], clocks["plan"]
    # 10 minutes and 48 hours under the policy's time scale (1/600): 1 s and 288 s.
    assert supervisor["target_seconds"] == 1 and plan["target_seconds"] == 288
    assert _at(supervisor["deadline"]) == _at(supervisor["started_at"]) + timedelta(seconds=1)
    assert _at(plan["deadline"]) == _at(plan["started_at"]) + timedelta(seconds=288)
    assert _at(plan["met_at"]) < _at(plan["deadline"])

    # The clocks run from the instants intake recorded, and the actions are on the request's timeline.
    request = platform.api("GET", f"/requests/{no}", key="read").json()
    call = request["supervisor_calls"][0]
    assert _at(supervisor["started_at"]) == _at(call["called_at"])
    assert _at(supervisor["met_at"]) == _at(call["answered_at"])
    assert _at(plan["started_at"]) == _at(request["marked_complex"]["at"])
    assert _at(plan["met_at"]) == _at(request["plan"]["at"])
    intake_types = [e["event_type"] for e in request["timeline"] if e["service"] == "intake"]
    for expected in ("FirstResponseGiven", "SupervisorCalledIn", "SupervisorAnswered", "RequestMarkedComplex",
                     "PlanGiven", "ComplaintReplied"):
        assert expected in intake_types, intake_types
