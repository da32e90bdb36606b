"""A repair from registration to the resident's acceptance on the real processes, every step through the HTTP API
(key "all") and checked in the API's answers and in dispatch's tables (issue 4, "shown by")."""
from __future__ import annotations

import uuid
from typing import Any

from tests.e2e.conftest import Platform
from tests.support import db, scalar, wait_for


def row(work_order_id: str) -> dict[str, Any]:
    with db("dispatch") as conn:
        r = conn.execute("SELECT w.state, w.technician_id, t.load FROM work_orders w "
                         "LEFT JOIN technicians t USING (technician_id) WHERE w.id = %s", (work_order_id,)).fetchone()
    assert r is not None
    return {"state": r[0], "technician_id": r[1], "load": r[2]}


def test_a_repair_from_registration_to_resident_acceptance(platform: Platform) -> None:
    key = f"desk-{uuid.uuid4()}"

    def submit() -> Any:
        # Idempotent by key: retried only while the platform's consumers are still coming up (503).
        answer = platform.api("POST", "/requests", headers={"Idempotency-Key": key}, json={
            "channel": "phone", "property_id": "LY", "building": "3", "unit": "3-1203", "agent_id": "agent-007",
            "reporter": {"kind": "resident", "name": "李四", "phone": "13700001111"},
            "description": "厨房水管漏水", "category": "repair", "subcategory": "plumbing"})
        return None if answer.status_code == 503 else (answer,)  # a Response is falsy when not ok

    (r,) = wait_for(submit, timeout=30, interval=0.5, what="intake answering")
    assert r.status_code == 201, r.text
    no = r.json()["request_no"]

    def work_orders() -> Any:
        answer = platform.api("GET", f"/requests/{no}/work-orders")
        return answer.json()["items"] if answer.ok and answer.json()["items"] else None

    wo = wait_for(work_orders, what="work order created and assigned")[0]
    wid, tech = wo["id"], wo["technician_id"]
    assert (wo["department"], wo["state"], wo["skill"]) == ("engineering", "assigned", "plumbing")
    assert tech and tech.startswith("LY-eng-")
    load = row(wid)["load"]
    assert load >= 1 and row(wid)["state"] == "assigned"

    refused = platform.api("POST", f"/work-orders/{wid}/resolve", json={"by": tech, "resolution": "已修好"})
    assert refused.status_code == 409 and refused.json()["errors"]["current_state"] == ["assigned"]

    steps = [("accept", {"by": tech}, "accepted"), ("depart", {"by": tech}, "en_route"),
             ("arrive", {"by": tech}, "on_site"),
             ("pause", {"by": tech, "reason": "waiting_parts", "note": "等待接头配件"}, "paused"),
             ("resume", {"by": tech}, "on_site"),
             ("resolve", {"by": tech, "resolution": "更换水管接头，已试水无渗漏",
                          "materials": [{"name": "水管接头", "quantity": 1}]}, "resolved"),
             ("resident-accept", {"by": "resident", "note": "满意"}, "resident_accepted")]
    for action, body, state in steps:
        answer = platform.api("POST", f"/work-orders/{wid}/{action}", json=body)
        assert answer.status_code == 200, (action, answer.text)
        assert answer.json()["state"] == state
        assert row(wid)["state"] == state  # committed in dispatch's table
    assert row(wid)["load"] == load - 1  # the resolved work no longer counts against the technician

    detail = platform.api("GET", f"/work-orders/{wid}").json()
    assert [h["to"] for h in detail["history"]] == ["unassigned", "assigned", "accepted", "en_route", "on_site",
                                                     "paused", "on_site", "resolved", "resident_accepted"]
    assert detail["materials"][0]["name"] == "水管接头" and detail["fee_cents"] == 0
    events = {e["event_type"] for e in platform.api("GET", f"/requests/{no}").json()["timeline"]
              if e["service"] == "dispatch"}
    assert {"WorkOrderCreated", "WorkOrderAssigned", "WorkOrderAccepted", "TechnicianEnRoute", "TechnicianArrived",
            "WorkOrderPaused", "WorkOrderResumed", "WorkOrderResolved", "ResidentAccepted"} <= events
    assert scalar("dispatch", "SELECT count(*) FROM work_orders WHERE request_no = %s", (no,)) == 1
    metrics = platform.metrics("dispatch")
    assert 'dispatch_backlog{department="engineering",state="resident_accepted"}' in metrics
