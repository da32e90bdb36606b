"""The walking skeleton (issue 2, items 7 and 8): one request over HTTP and one from another system over
plain AMQP, each through intake -> dispatch -> escalation -> feedback on real processes; metrics on every
service's port; JSON log lines carrying the request number and correlation id, never a resident's name or
phone number."""
from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import METRICS_PORTS, Platform
from tests.support import publish_inbound, scalar, wait_for

NAME, PHONE = "欧阳娜娜", "13912345678"
CALLER = "13698765432"


def timeline_types(role: str, request_no: str) -> set[str]:
    from tests.support import db
    with db(role) as conn:
        rows = conn.execute("SELECT event_type FROM timeline WHERE request_no = %s", (request_no,)).fetchall()
    return {r[0] for r in rows}


def work_order_id(platform: Platform, request_no: str) -> str:
    def find() -> Any:
        r = platform.api("GET", f"/requests/{request_no}/work-orders")
        items = r.json() if r.ok else None
        if isinstance(items, dict):
            items = items.get("items") or items.get("work_orders")
        return items[0]["id"] if items else None
    return str(wait_for(find, what=f"work order of {request_no}"))


def resolve_through_the_api(platform: Platform, request_no: str) -> None:
    """The technician accepts, arrives and resolves, as staff record it through the API."""
    wo = work_order_id(platform, request_no)
    detail = platform.api("GET", f"/work-orders/{wo}").json()
    tech = detail.get("technician_id")
    for action, body in (("accept", {"technician_id": tech, "by": tech}), ("depart", {"by": tech}),
                         ("arrive", {"by": tech})):
        r = platform.api("POST", f"/work-orders/{wo}/{action}", json=body)
        assert r.status_code == 200, (action, r.text)
    r = platform.api("POST", f"/requests/{request_no}/resolve",
                     json={"resolution": "更换水管接头，已试水无渗漏", "by": tech, "fee_cents": 0})
    assert r.status_code == 200, r.text


def assert_travelled(platform: Platform, request_no: str) -> None:
    wait_for(lambda: {"WorkOrderCreated", "WorkOrderAssigned"} <= timeline_types("dispatch", request_no),
             what="routed and assigned by dispatch")
    wait_for(lambda: "ClockStarted" in timeline_types("escalation", request_no), what="clocks started")
    resolve_through_the_api(platform, request_no)
    wait_for(lambda: "ReturnVisitScheduled" in timeline_types("feedback", request_no), what="return visit")
    answer = platform.api("GET", f"/requests/{request_no}").json()
    services = {e["service"] for e in answer["timeline"]}
    assert services == {"intake", "dispatch", "escalation", "feedback"}, answer["timeline"]
    types = [e["event_type"] for e in answer["timeline"]]
    assert types.index("RequestRegistered") < types.index("WorkOrderAssigned") < types.index("WorkOrderResolved")


def test_a_request_submitted_over_http_travels_through_all_four_services(platform: Platform) -> None:
    r = platform.api("POST", "/requests", headers={"Idempotency-Key": f"desk-{uuid.uuid4()}"}, json={
        "channel": "phone", "property_id": "LY", "building": "3", "unit": "3-1502", "agent_id": "agent-007",
        "reporter": {"kind": "resident", "name": NAME, "phone": PHONE},
        "description": "厨房水管爆了，水漫到客厅"})
    assert r.status_code == 201, r.text
    request_no = r.json()["request_no"]
    assert r.json()["owner_agent"] == "agent-007"
    assert scalar("intake", "SELECT channel FROM requests WHERE request_no = %s", (request_no,)) == "phone"
    assert_travelled(platform, request_no)


def test_a_request_published_by_another_system_travels_through_all_four_services(platform: Platform) -> None:
    external_id = f"call-{uuid.uuid4()}"
    publish_inbound({
        "source": "callcentre", "external_id": external_id, "channel": "call_centre", "property_id": "LY",
        "building": "5", "unit": "5-801", "reporter": {"kind": "resident", "name": NAME, "phone": CALLER},
        "description": "卫生间天花板漏水，楼上渗下来的",
        "channel_details": {"caller_number": CALLER, "call_id": "cc-778899"}}, routing_key="request.call_centre")
    request_no = wait_for(lambda: scalar("intake", "SELECT request_no FROM requests WHERE external_id = %s",
                                         (external_id,)), what="registered from AMQP")
    assert_travelled(platform, request_no)


def test_every_service_exposes_pipeline_metrics_on_its_documented_port(platform: Platform) -> None:
    for service in ("intake", "dispatch", "escalation", "feedback"):
        text = platform.metrics(service)
        assert "outbox_pending_events{" in text, service
        assert "event_handler_duration_seconds_bucket" in text or service == "intake", service
    assert 'events_handled_total{event_type="RequestRegistered",queue="dispatch.events",service="dispatch"}' \
        in platform.metrics("dispatch")
    assert "http_requests_total{" in platform.metrics("gateway")
    assert set(METRICS_PORTS) == {"gateway", "intake", "dispatch", "escalation", "feedback"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed")
def test_every_services_metrics_pass_promtool(platform: Platform) -> None:
    for service in METRICS_PORTS:
        check = subprocess.run(["promtool", "check", "metrics"], input=platform.metrics(service),
                               capture_output=True, text=True)
        assert check.returncode == 0, (service, check.stdout, check.stderr)


def test_log_lines_are_json_with_request_number_and_correlation_id_and_never_a_residents_name_or_phone(
        platform: Platform) -> None:
    lines = [line for line in platform.logs().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(parsed) > 20
    assert len(parsed) >= 0.95 * len(lines), "log lines are not JSON"
    with_request = [p for p in parsed if p.get("request_no")]
    assert with_request and all(p.get("correlation_id") for p in with_request)
    text = platform.logs()
    for secret in (NAME, PHONE, CALLER):
        assert secret not in text


def test_no_event_to_other_services_carries_a_residents_name_or_phone(platform: Platform) -> None:
    from tests.support import db
    for role in ("intake", "dispatch", "escalation", "feedback"):
        with db(role) as conn:
            rows = conn.execute("SELECT data::text FROM timeline").fetchall()
        for (data,) in rows:
            for secret in (NAME, PHONE, CALLER):
                assert secret not in data, (role, data)


def test_staff_reassign_a_request_to_another_technician_with_a_reason(platform: Platform) -> None:
    r = platform.api("POST", "/requests", json={
        "channel": "visit", "property_id": "HY", "unit": "2-0303", "agent_id": "agent-011",
        "reporter": {"kind": "resident"}, "description": "阳台的水龙头一直滴水"})
    assert r.status_code == 201, r.text
    request_no = r.json()["request_no"]
    wo = work_order_id(platform, request_no)
    current = platform.api("GET", f"/work-orders/{wo}").json()
    team = platform.api("GET", "/technicians", params={"property_id": "HY",
                                                       "department": current["department"]}).json()["items"]
    other = next(t["technician_id"] for t in team
                 if t["technician_id"] != current["technician_id"] and not t.get("absent"))
    missing_reason = platform.api("POST", f"/requests/{request_no}/assign", json={"technician_id": other,
                                                                                   "by": "lead-wu"})
    assert missing_reason.status_code == 422 and "reason" in missing_reason.json()["errors"]
    r = platform.api("POST", f"/requests/{request_no}/assign",
                     json={"technician_id": other, "reason": "原师傅在处理急修", "by": "lead-wu"})
    assert r.status_code == 200, r.text
    assert platform.api("GET", f"/work-orders/{wo}").json()["technician_id"] == other
    assert scalar("dispatch", "SELECT technician_id FROM work_orders WHERE id = %s", (wo,)) == other


def test_requests_are_listed_with_filters_and_pages(platform: Platform) -> None:
    for i in range(3):
        r = platform.api("POST", "/requests", json={
            "channel": "email", "external_id": f"mail-{uuid.uuid4()}", "property_id": "JH", "unit": f"7-10{i + 1}",
            "reporter": {"kind": "tenant", "name": NAME, "phone": PHONE}, "description": "咨询：装修需要办什么手续"})
        assert r.status_code == 201, r.text
    first = platform.api("GET", "/requests", key="read", params={"property_id": "JH", "channel": "email",
                                                                 "page_size": 2}).json()
    assert len(first["items"]) == 2 and first["has_more"] is True
    assert all(i["property_id"] == "JH" and i["channel"] == "email" for i in first["items"])
    assert first["items"][0]["reporter"]["phone"] == "139****5678"  # no pii scope: masked
    second = platform.api("GET", "/requests", key="read", params={"property_id": "JH", "channel": "email",
                                                                  "page_size": 2, "page": 2}).json()
    assert len(second["items"]) >= 1
    assert not {i["request_no"] for i in first["items"]} & {i["request_no"] for i in second["items"]}
    with_pii = platform.api("GET", "/requests", params={"property_id": "JH", "channel": "email"}).json()
    assert with_pii["items"][0]["reporter"]["phone"] == PHONE
    bad = platform.api("GET", "/requests", key="read", params={"page_size": 0, "channel": "fax"})
    assert bad.status_code == 400 and {"page_size", "channel"} <= set(bad.json()["errors"])
