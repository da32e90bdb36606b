"""A complaint from the resident to its approved, sent and confirmed reply letter and its return visit, through the
HTTP API on the real processes (issue 6, "shown by")."""
from __future__ import annotations

import uuid
from datetime import datetime, UTC
from typing import Any

from services.feedback.domain.statistics import CHINA_TZ
from tests.e2e.conftest import Platform
from tests.support import wait_for


def _work_order(platform: Platform, request_no: str) -> dict[str, Any] | None:
    r = platform.api("GET", f"/requests/{request_no}/work-orders")
    items = r.json() if r.ok else None
    if isinstance(items, dict):
        items = items.get("items") or items.get("work_orders")
    return items[0] if items else None


def _resolve(platform: Platform, request_no: str) -> None:
    wo = wait_for(lambda: _work_order(platform, request_no), timeout=30, what="the complaint's work order")
    wo_id = wo.get("id") or wo.get("work_order_id")
    tech = (platform.api("GET", f"/work-orders/{wo_id}").json().get("technician_id")
            or wo.get("technician_id") or "tech-e2e")
    for action, body in (("accept", {"technician_id": tech, "by": tech}), ("depart", {"by": tech}),
                         ("arrive", {"by": tech})):
        r = platform.api("POST", f"/work-orders/{wo_id}/{action}", json=body)
        assert r.status_code == 200, (action, r.text)
    r = platform.api("POST", f"/requests/{request_no}/resolve",
                     json={"resolution": "已约谈当班保安并培训，向住户致歉", "by": tech, "fee_cents": 0})
    assert r.status_code == 200, r.text


def test_a_complaint_gets_its_reply_letter_reviewed_approved_sent_confirmed_and_its_return_visit(
        platform: Platform) -> None:
    key = f"fb-e2e-{uuid.uuid4()}"
    complaint = {"channel": "phone", "property_id": "LY", "building": "5", "unit": "5-801",
                 "reporter": {"kind": "resident", "name": "李雷", "phone": "13700001111"},
                 "description": "投诉：保安态度很差，多次反映无人处理"}
    # A client retries a 503 (a service still starting) with the same Idempotency-Key, as the API asks.
    r = wait_for(lambda: (a := platform.api("POST", "/requests", headers={"Idempotency-Key": key}, json=complaint))
                 .status_code != 503 and [a], timeout=60, interval=0.5, what="intake answering")[0]
    assert r.status_code == 201, r.text
    request_no = r.json()["request_no"]
    assert r.json()["classification"]["category"] == "complaint"

    r = platform.api("POST", f"/requests/{request_no}/reply-letters", json={
        "template_id": "complaint-reply-v1", "department": "security", "concerns_property": True, "by": "cc-zhao",
        "values": {"resident_title": "李先生", "findings": "经核实，情况属实",
                   "measures": "已对当班保安批评教育并培训"}})
    assert r.status_code == 201, r.text
    letter = r.json()
    lid = letter["letter_id"]
    send = {"method": "registered_mail", "tracking_no": "XA987654321CN", "by": "cc-zhao"}
    early = platform.api("POST", f"/reply-letters/{lid}/send", json=send)
    assert early.status_code == 409 and early.json()["errors"]["current_state"] == ["draft"], early.text
    for role in letter["required_reviewers"]:
        r = platform.api("POST", f"/reply-letters/{lid}/reviews",
                         json={"role": role, "reviewer_id": f"rev-{role}", "decision": "approved", "version": 1})
        assert r.status_code == 200, r.text
    assert r.json()["state"] == "reviewed"
    r = platform.api("POST", f"/reply-letters/{lid}/approve", json={"approver_id": "mkt-chen"})
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    r = platform.api("POST", f"/reply-letters/{lid}/send", json=send)
    assert r.status_code == 200 and r.json()["state"] == "sent", r.text
    r = platform.api("POST", f"/reply-letters/{lid}/confirm", json={"by": "cc-zhao", "received": True})
    assert r.status_code == 200 and r.json()["state"] == "confirmed", r.text
    r = platform.api("GET", f"/reply-letters/{lid}", key="read")
    assert [h["action"] for h in r.json()["history"]][-3:] == ["approved", "sent", "confirmed"]

    _resolve(platform, request_no)
    visits = wait_for(lambda: platform.api("GET", f"/requests/{request_no}/return-visits", key="read")
                      .json().get("visits"), timeout=30, what="the return visit")
    assert visits[0]["state"] == "scheduled" and visits[0]["reason"] in ("valid_complaint", "sampled")
    due = platform.api("GET", "/return-visits", key="read", params={"due_before": "2100-01-01T00:00:00+00:00"})
    assert request_no in {v["request_no"] for v in due.json()["items"]}
    detail = platform.api("GET", f"/requests/{request_no}").json()
    assert detail["services"]["feedback"]["letters"][0]["state"] == "confirmed"
    assert {"ReplyLetterSent", "ReturnVisitScheduled"} <= {e["event_type"] for e in detail["timeline"]}

    period = datetime.now(UTC).astimezone(CHINA_TZ).strftime("%Y-%m")
    csv_r = platform.api("GET", "/reports/monthly", key="read", params={"period": period, "format": "csv"})
    assert csv_r.status_code == 200 and csv_r.headers["Content-Type"].startswith("text/csv")
    assert csv_r.text.startswith("section,item,metric,value")
    html_r = platform.api("GET", "/reports/monthly", key="read", params={"period": period, "format": "html"})
    assert html_r.headers["Content-Type"].startswith("text/html") and "<svg" in html_r.text
    metrics = platform.metrics("feedback")
    assert 'feedback_return_visits_total{outcome="scheduled"}' in metrics
