"""On real processes, with tests/e2e/policy_seconds.yml (first response 3 s, warning at 2.4 s, ladder rungs 2 s):
a request submitted through POST /requests warns, breaches and climbs two rungs, all visible through the API;
the escalation service exports the SLA metrics the ops rules and dashboards read."""
from __future__ import annotations

import uuid
from typing import Any

from tests.e2e.conftest import Platform
from tests.support import wait_for


def _clocks(platform: Platform, request_no: str) -> dict[str, Any]:
    r = platform.api("GET", f"/requests/{request_no}/clocks", key="read")
    return r.json() if r.status_code == 200 else {}


def _climbed(platform: Platform, request_no: str) -> dict[str, Any]:
    """The first escalation of the request that has told two rungs, with its clock."""
    data = _clocks(platform, request_no)
    for run in data.get("escalations", []):
        if [c["rung"] for c in run["climbs"]][:2] == ["front_desk", "cs_supervisor"]:
            clock = next(c for c in data["clocks"] if c["clock_id"] == run["clock_id"])
            return {"run": run, "clock": clock}
    return {}


def test_a_request_warns_breaches_and_climbs_two_rungs(platform: Platform) -> None:
    # Nobody answers the request: whichever of its clocks runs out first (first response, or on site once
    # dispatch has assigned it) must warn, breach and climb.
    r = platform.api("POST", "/requests", headers={"Idempotency-Key": f"esc-{uuid.uuid4()}"}, json={
        "channel": "phone", "property_id": "LY", "building": "3", "unit": "3-1502", "agent_id": "agent-007",
        "reporter": {"kind": "resident"}, "description": "卫生间门锁坏了，有空时来修一下"})
    assert r.status_code == 201, r.text
    request_no = r.json()["request_no"]

    first = wait_for(lambda: [c for c in _clocks(platform, request_no).get("clocks", [])
                              if c["clock"] == "first_response"], timeout=20, what="first-response clock")[0]
    assert first["target_seconds"] == 3 and first["calendar_fallback"] is False
    found = wait_for(lambda: _climbed(platform, request_no), timeout=40, what="two rungs of the ladder")
    clock, run = found["clock"], found["run"]
    assert clock["state"] == "breached"
    assert clock["started_at"] < clock["warned_at"] < clock["breached_at"] <= run["climbs"][0]["at"]
    assert run["climbs"][0]["at"] < run["climbs"][1]["at"]
    types = [e["event_type"] for e in platform.api("GET", f"/requests/{request_no}", key="read").json()
             .get("timeline", []) if e.get("data", {}).get("clock_id") == clock["clock_id"]]
    for expected in ("ClockStarted", "ClockWarned", "ClockBreached", "RequestEscalated"):
        assert expected in types, types

    at_risk = platform.api("GET", "/clocks/at-risk", key="read", params={"property_id": "LY"})
    assert at_risk.status_code == 200
    assert any(i["request_no"] == request_no for i in at_risk.json()["items"])

    escalation_id = run["escalation_id"]
    assert platform.api("POST", f"/escalations/{escalation_id}/acknowledge", key="read", json={}).status_code == 403
    ack = platform.api("POST", f"/escalations/{escalation_id}/acknowledge", key="staff", json={"by": "staff-wang"})
    assert ack.status_code == 200, ack.text
    assert ack.json()["acknowledged_by"] == "staff-wang"

    metrics = platform.metrics("escalation")
    for name in ("sla_clock_verdicts_total{", "sla_clocks_open{", "sla_clock_elapsed_seconds_bucket",
                 "sla_clock_objective_ratio{", "escalations_total{", "calendar_fallback_clocks_total{",
                 "escalation_timers_due ", "escalation_timer_lateness_seconds_bucket"):
        assert name in metrics, name
    assert 'outcome="breached"' in metrics and 'rung="cs_supervisor"' in metrics

    policy = platform.api("GET", "/policy", key="read")
    assert policy.status_code == 200 and policy.json()["policy"]["time_scale"] < 0.01
    assert platform.api("POST", "/policy", key="read", json={}).status_code == 403
    bad = platform.api("POST", "/policy", json={**policy.json()["policy"], "warning_share": 3})
    assert bad.status_code == 422 and "warning_share" in bad.json()["errors"]
