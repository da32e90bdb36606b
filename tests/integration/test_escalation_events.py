"""Escalation through real envelopes on the producers' exchanges, an in-process container, real Postgres and
RabbitMQ, and a policy with targets in seconds (time_scale 1/1800: first response 1 s, ladder rungs 1 s)."""
from __future__ import annotations

from datetime import datetime, timedelta, UTC
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import pytest
import yaml
from nameko.standalone.rpc import ServiceRpcProxy
from prometheus_client import REGISTRY, generate_latest

from services.common.config import REPO_ROOT
from services.escalation.entrypoints.service import EscalationService
from tests.integration.test_escalation_helpers import clocks, envelope, new_request_no, publish, timeline
from tests.support import amqp_uri, scalar, wait_for

SCALE = 1 / 1800


@pytest.fixture(scope="module")
def fast_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    doc = yaml.safe_load((REPO_ROOT / "tests" / "e2e" / "policy_seconds.yml").read_text(encoding="utf-8"))
    doc["time_scale"] = SCALE
    path = tmp_path_factory.mktemp("policy") / "policy_fast.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def esc(run_service: Any, fast_policy: Path) -> Iterator[Any]:
    yield run_service(EscalationService, ESCALATION_POLICY=str(fast_policy), TIMER_INTERVAL=0.05, DB_POOL_SIZE=4)


@pytest.fixture
def rpc(esc: Any) -> Iterator[Any]:
    with ServiceRpcProxy("escalation", {"AMQP_URI": amqp_uri()}) as proxy:
        yield proxy


def now() -> datetime:
    return datetime.now(UTC)


def registered(request_no: str, at: datetime, **kw: Any) -> dict[str, Any]:
    values = {"property_id": "LY", "unit": "3-1502", "channel": "phone",
              "category": "repair", "subcategory": "plumbing", "priority": "normal", "emergency": False,
              "registered_at": at, **kw}
    return envelope("RequestRegistered", request_no, **values)


def types(request_no: str) -> list[str]:
    return [t for t, _ in timeline(request_no)]


def test_a_clock_warns_breaches_and_climbs_the_ladder_until_acknowledged(rpc: Any) -> None:
    no = new_request_no()
    publish(registered(no, now()))
    wait_for(lambda: [d for t, d in timeline(no) if t == "RequestEscalated" and d["rung_index"] == 1],
             timeout=15, what="second rung")
    events = [(t, d) for t, d in timeline(no) if d.get("clock") == "first_response"]
    kinds = [t for t, _ in events]
    assert kinds[:5] == ["ClockStarted", "ClockWarned", "ClockBreached", "RequestEscalated", "RequestEscalated"]
    started = events[0][1]
    assert started["target_seconds"] == 1 and started["policy_version"] >= 1
    assert [d["rung"] for t, d in events if t == "RequestEscalated"][:2] == ["front_desk", "cs_supervisor"]
    clock_id = started["clock_id"]
    assert scalar("escalation", "SELECT count(*) FROM deadlines WHERE clock_id = %s AND kind = 'breach' "
                  "AND fired_at IS NOT NULL", (clock_id,)) == 1
    # The resolution clock (24 h scaled: 48 s) is running, not breached.
    assert clocks(no)["resolution"]["state"] == "running"

    view = rpc.request_clocks(no)
    assert view["status"] == 200
    fr = next(c for c in view["data"]["clocks"] if c["clock"] == "first_response")
    assert fr["state"] == "breached" and fr["target_seconds"] == 1 and fr["calendar_fallback"] is False
    escalation = next(e for e in view["data"]["escalations"] if e["clock"] == "first_response")
    assert [c["rung"] for c in escalation["climbs"]][:2] == ["front_desk", "cs_supervisor"]

    answer = rpc.acknowledge_escalation(escalation["escalation_id"], "staff-wang")
    assert answer["status"] == 200 and answer["data"]["acknowledged_by"] == "staff-wang"
    wait_for(lambda: "EscalationAcknowledged" in types(no), what="acknowledged event")
    assert scalar("escalation", "SELECT count(*) FROM deadlines WHERE clock_id = %s AND fired_at IS NULL",
                  (clock_id,)) == 0, "an acknowledged ladder has no next rung pending"
    rungs = len([1 for t, d in timeline(no) if t == "RequestEscalated" and d.get("clock") == "first_response"])
    assert rungs <= 3  # at most a rung that fired while the acknowledgement was on its way

    assert rpc.acknowledge_escalation("not-a-uuid", "x")["status"] == 404
    assert rpc.request_clocks("LY-19990101-000000")["status"] == 404

    at_risk = rpc.clocks_at_risk("LY", None)["data"]["items"]
    assert any(i["request_no"] == no and i["clock"] == "first_response" and i["risk"] == "overdue" for i in at_risk)

    # The collector reads the same figures from the tables.
    exported = generate_latest(REGISTRY).decode()
    assert "escalation_collector_errors_total 0.0" in exported
    breached = [line for line in exported.splitlines() if line.startswith("sla_clock_verdicts_total{")
                and 'outcome="breached"' in line and 'clock="first_response"' in line and 'class="repair"' in line]
    assert breached and float(breached[0].split()[-1]) >= 1
    assert 'escalations_total{reason="first_response_breached",rung="cs_supervisor"}' in exported


def _drive(order: str, t0: datetime) -> dict[str, Any]:
    no = new_request_no()
    wo = {"property_id": "LY", "department": "engineering"}
    reg = registered(no, t0)
    assigned = envelope("WorkOrderAssigned", no, **wo, assigned_at=t0 + timedelta(milliseconds=200))
    paused = envelope("WorkOrderPaused", no, **wo, reason="waiting_parts", paused_at=t0 + timedelta(milliseconds=300))
    resumed = envelope("WorkOrderResumed", no, **wo, reason="waiting_parts",
                       resumed_at=t0 + timedelta(milliseconds=1300), paused_seconds=1)
    arrived = envelope("TechnicianArrived", no, **wo, arrived_at=t0 + timedelta(milliseconds=1900))

    def send(*batch: dict[str, Any]) -> None:
        publish(*(batch if order == "in_order" else reversed(batch)))

    send(reg, assigned)
    wait_for(lambda: "on_site" in clocks(no), timeout=30, what=f"{order}: on-site clock")
    send(paused, resumed)
    wait_for(lambda: clocks(no)["on_site"]["data"]["pauses"] and clocks(no)["on_site"]["state"] == "running",
             timeout=30, what=f"{order}: pause and resume")
    publish(arrived, arrived)  # the second is a redelivery under the same event id: it changes nothing
    wait_for(lambda: clocks(no)["on_site"]["state"] == "met", timeout=30, what=f"{order}: on site")
    c = clocks(no)
    assert c["first_response"]["met_at"] == t0 + timedelta(milliseconds=200)
    assert c["on_site"]["elapsed_seconds"] == 1  # 1.7 s on site minus 1 s paused, rounded
    assert types(no).count("ClockStarted") == len(c) and types(no).count("ClockMet") == 2
    return {kind: (row["state"], row["met_at"] - t0, row["elapsed_seconds"],
                   [(p["reason"], p["paused_at"][-15:], p["resumed_at"][-15:]) for p in row["data"]["pauses"]])
            for kind, row in c.items() if kind in ("first_response", "on_site")}


def test_the_outcome_is_the_same_whatever_the_order_events_arrive_in(esc: Any) -> None:
    """Covered overtakings: dispatch's events before intake's registration (NotReady, retried), a stop or pause
    before its clock started (pending fact), and a resume before its pause."""
    t0 = now()
    results = [_drive(order, t0) for order in ("in_order", "reversed")]
    assert results[0] == results[1]


def test_policy_versions_are_frozen_per_request(rpc: Any, fast_policy: Path) -> None:
    first = new_request_no()
    publish(registered(first, now() + timedelta(hours=1)))
    wait_for(lambda: "first_response" in clocks(first), what="clock under the current policy")
    before = clocks(first)["first_response"]["policy_version"]

    doc = yaml.safe_load(fast_policy.read_text(encoding="utf-8"))
    doc["clocks"]["first_response"] = [{"name": "all", "target": {"minutes": 60}}]
    added = rpc.add_policy(doc, "admin-test")
    assert added["status"] == 201 and added["data"]["version"] == before + 1
    refused = rpc.add_policy({**doc, "warning_share": 2}, "admin-test")
    assert refused["status"] == 422 and "warning_share" in refused["errors"]
    versions = rpc.policy_versions()["data"]["versions"]
    assert versions[-1]["version"] == before + 1 and versions[-1]["source"] == "api:admin-test"

    second = new_request_no()
    publish(registered(second, now() + timedelta(hours=1)))
    wait_for(lambda: "first_response" in clocks(second), what="clock under the new policy")
    assert clocks(second)["first_response"]["policy_version"] == before + 1
    assert clocks(second)["first_response"]["target_seconds"] == 2
    # The first request's clock keeps its version and target, and a reclassification retargets it under it.
    assert clocks(first)["first_response"]["policy_version"] == before
    assert clocks(first)["first_response"]["target_seconds"] == 1
    assert rpc.get_policy(before)["data"]["version"] == before


def test_conditions_escalate_once_with_their_reason(esc: Any) -> None:
    no = new_request_no()
    publish(registered(no, now() + timedelta(hours=1), category="emergency_medical", subcategory=None,
                       priority="emergency", emergency=True))
    wait_for(lambda: [d for t, d in timeline(no) if t == "RequestEscalated" and d["source"] == "condition"],
             what="condition escalation")
    publish(envelope("RequestReclassified", no, property_id="LY", previous_category="repair",
                     previous_priority="normal", previous_emergency=False, category="emergency_medical",
                     subcategory=None, priority="emergency", emergency=True, reason="复核",
                     reclassified_by="agent-1", owner_agent="agent-1", reclassified_at=now() + timedelta(hours=1)))
    wait_for(lambda: "ClockRetargeted" in types(no) or scalar(
        "escalation", "SELECT count(*) FROM inbox") and len(types(no)) > 0, what="reclassification handled")
    hits = [d for t, d in timeline(no) if t == "RequestEscalated" and d["source"] == "condition"]
    assert len(hits) == 1 and hits[0]["rung"] == "manager" and hits[0]["rule"] == "emergency_medical"
