"""Escalation through real envelopes on the producers' exchanges, an in-process container, real Postgres and
RabbitMQ, and a policy with targets in seconds (time_scale 1/1800: first response 1 s, ladder rungs 1 s)."""
from __future__ import annotations

import json
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
    # Two lanes (ESCALATION_LANES; one is the default): one request's events stay in order within a lane.
    yield run_service(EscalationService, ESCALATION_POLICY=str(fast_policy), TIMER_INTERVAL=0.05, DB_POOL_SIZE=4,
                      CONSUMER_LANES=2)


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


def test_the_elapsed_histogram_is_by_clock_class_and_priority_and_verdicts_keep_every_label(esc: Any) -> None:
    _drive("in_order", now())  # two clocks met, so both families have series
    exported = generate_latest(REGISTRY).decode().splitlines()
    buckets = [line for line in exported if line.startswith("sla_clock_elapsed_seconds_bucket{")]
    verdicts = [line for line in exported if line.startswith("sla_clock_verdicts_total{")]
    assert buckets and verdicts

    def labels(line: str) -> set[str]:
        return {pair.split("=")[0] for pair in line[line.index("{") + 1:line.index("}")].split(",")}
    assert all(labels(line) == {"clock", "class", "priority", "le"} for line in buckets)
    assert all(labels(line) == {"outcome", "clock", "class", "priority", "channel", "property"} for line in verdicts)


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


# --- intake's staff actions: the clocks nobody could start or stop before intake published these events ------------

@pytest.fixture
def esc_default(run_service: Any) -> Any:
    """Escalation under the company's own policy (services/escalation/policy.yml, time_scale 1): real targets, so the
    deadlines are checked as the standards write them. Nothing here waits for one."""
    return run_service(EscalationService, ESCALATION_POLICY=str(REPO_ROOT / "services" / "escalation" / "policy.yml"),
                       TIMER_INTERVAL=0.05, DB_POOL_SIZE=4)


def _from_intake(request: Any) -> list[dict[str, Any]]:
    """The envelopes intake's unit of work would put in its outbox for the aggregate's events (same contract
    schemas, same producer check), taken off the aggregate; those no service subscribes to are left out (the helper
    publishes with `mandatory`)."""
    from services.common import topology
    from services.common.db import envelope as intake_envelope
    out = [intake_envelope(e, "intake", now=now()) for e in request.events
           if topology.subscribed("intake", e.event_type)]
    request.events.clear()
    return out


def _intake_request(no: str, at: datetime, category: str = "repair", subcategory: str = "plumbing") -> Any:
    from services.intake.domain.classification import Classification
    from services.intake.domain.model import Reporter, Request
    return Request.register(
        request_no=no, property_id="LY", channel="phone", description="外墙渗水，卧室墙面发霉",
        reporter=Reporter.create("resident", "王小明", "13812341234"),
        classification=Classification(category, subcategory, "normal", False, 1.0,
                                      validity="valid" if category == "complaint" else None),
        registered_by="agent-007", now=at, building="3", unit="3-1502")


def test_a_supervisor_called_in_and_a_complex_problem_start_their_clocks_and_the_answers_meet_them(
        esc_default: Any) -> None:
    """解决不了的应向部门主管汇报后在10分钟内给予回复; 复杂问题需在48小时内给出解决方案."""
    no, t0 = new_request_no(), now()
    req = _intake_request(no, t0)
    called_at, marked_at = t0 + timedelta(seconds=1), t0 + timedelta(seconds=2)
    req.call_in_supervisor(supervisor="cs-supervisor-01", reason="住户要求说明维修基金用法", by="agent-007",
                           now=called_at)
    req.mark_complex(reason="需搭架勘查后定方案", by="agent-007", now=marked_at)
    publish(*_from_intake(req))
    c = wait_for(lambda: (lambda c: c if {"supervisor_answer", "plan"} <= set(c) else None)(clocks(no)),
                 what="supervisor_answer and plan clocks")
    supervisor, plan = c["supervisor_answer"], c["plan"]
    assert (supervisor["state"], supervisor["started_at"], supervisor["target_seconds"]) == (
        "running", called_at, 600)
    assert supervisor["deadline"] == called_at + timedelta(minutes=10)
    assert (plan["state"], plan["started_at"], plan["target_seconds"]) == ("running", marked_at, 48 * 3600)
    assert plan["deadline"] == marked_at + timedelta(hours=48)

    answered_at, given_at = called_at + timedelta(minutes=4), marked_at + timedelta(hours=20)
    req.record_supervisor_answer(answer="需业委会签字，已告知办理流程", by="cs-supervisor-01", now=answered_at)
    req.give_plan(plan="周三搭架勘查，周五前完成外墙防水修补", by="eng-supervisor-02", now=given_at)
    publish(*_from_intake(req))
    wait_for(lambda: all(clocks(no)[k]["state"] == "met" for k in ("supervisor_answer", "plan")),
             what="both clocks met")
    c = clocks(no)
    assert (c["supervisor_answer"]["met_at"], c["supervisor_answer"]["elapsed_seconds"]) == (answered_at, 240)
    assert (c["plan"]["met_at"], c["plan"]["elapsed_seconds"]) == (given_at, 20 * 3600)
    met = {d["clock"]: d for t, d in timeline(no) if t == "ClockMet"}
    assert met["supervisor_answer"]["on_time"] is True and met["plan"]["on_time"] is True
    # Only these two: the staff actions touch no other clock.
    assert c["first_response"]["state"] == "running" and c["resolution"]["state"] == "running"


def test_a_first_response_and_a_complaint_reply_from_intake_stop_their_clocks(esc_default: Any) -> None:
    no, t0 = new_request_no(), now()
    req = _intake_request(no, t0, category="complaint", subcategory="service_quality")
    publish(*_from_intake(req))
    wait_for(lambda: {"first_response", "complaint_reply"} <= set(clocks(no)), what="registration clocks")
    responded_at, replied_at = t0 + timedelta(minutes=12), t0 + timedelta(days=1)
    req.give_first_response(response="已记录，保洁主管今天联系您", by="agent-007", now=responded_at)
    req.reply_to_complaint(reply="已约谈保洁班长，加强楼道每日清扫", by="cs-assistant-02", now=replied_at)
    publish(*_from_intake(req))
    wait_for(lambda: all(clocks(no)[k]["state"] == "met" for k in ("first_response", "complaint_reply")),
             what="first response and complaint reply met")
    c = clocks(no)
    assert c["first_response"]["met_at"] == responded_at and c["first_response"]["elapsed_seconds"] == 12 * 60
    assert c["complaint_reply"]["started_at"] == t0 and c["complaint_reply"]["met_at"] == replied_at
    assert "supervisor_answer" not in c and "plan" not in c


def test_a_supervisors_answer_that_overtakes_the_call_still_meets_the_clock(esc_default: Any) -> None:
    """The answer's event delivered before the call's (a redelivery, another relay batch): kept as a pending fact
    and applied when the call starts the clock."""
    no, t0 = new_request_no(), now()
    req = _intake_request(no, t0)
    publish(*_from_intake(req))
    called_at = t0 + timedelta(seconds=1)
    req.call_in_supervisor(supervisor="cs-supervisor-01", reason="住户要求主管答复", by="agent-007", now=called_at)
    call = _from_intake(req)
    req.record_supervisor_answer(answer="已电话答复", by="cs-supervisor-01", now=called_at + timedelta(minutes=3))
    publish(*_from_intake(req), *call)
    wait_for(lambda: clocks(no).get("supervisor_answer", {}).get("state") == "met", what="supervisor clock met")
    assert clocks(no)["supervisor_answer"]["met_at"] == called_at + timedelta(minutes=3)


def test_a_supervisor_called_in_again_after_answering_owes_a_new_answer(esc_default: Any) -> None:
    """Each call-in is a new 10-minute promise: the second call restarts the met clock from its own time."""
    no, t0 = new_request_no(), now()
    req = _intake_request(no, t0)
    first_call, first_answer = t0 + timedelta(seconds=1), t0 + timedelta(minutes=3)
    req.call_in_supervisor(supervisor="cs-supervisor-01", reason="住户对维修方案有异议", by="agent-007", now=first_call)
    req.record_supervisor_answer(answer="已电话说明方案", by="cs-supervisor-01", now=first_answer)
    publish(*_from_intake(req))
    wait_for(lambda: clocks(no).get("supervisor_answer", {}).get("state") == "met", what="first answer met")

    second_call = t0 + timedelta(hours=2)
    req.call_in_supervisor(supervisor="cs-supervisor-01", reason="住户再次来电要求补偿", by="agent-007",
                           now=second_call)
    publish(*_from_intake(req))
    c = wait_for(lambda: (lambda c: c if c.get("state") == "running" else None)(clocks(no)["supervisor_answer"]),
                 what="the clock running again")
    assert (c["started_at"], c["deadline"]) == (second_call, second_call + timedelta(minutes=10))

    second_answer = second_call + timedelta(minutes=12)  # late this time
    req.record_supervisor_answer(answer="已转客服部处理补偿诉求", by="cs-supervisor-01", now=second_answer)
    publish(*_from_intake(req))
    wait_for(lambda: clocks(no)["supervisor_answer"]["state"] == "met", what="second answer met")
    assert clocks(no)["supervisor_answer"]["met_at"] == second_answer
    started = [d for t, d in timeline(no) if t == "ClockStarted" and d["clock"] == "supervisor_answer"]
    met = [d["on_time"] for t, d in timeline(no) if t == "ClockMet" and d["clock"] == "supervisor_answer"]
    assert len(started) == 2 and met == [True, False]


def test_a_work_order_no_return_visit_raised_is_acknowledged_without_reading_its_data(esc: Any) -> None:
    """Escalation reads nothing of such a work order: only its envelope is validated, and nothing is recorded.
    A follow-up work order is read in full: with a bad field it is dead-lettered, naming the field."""
    from tests.support import get_messages, queue_info

    get_messages("escalation.events.dlq", 100)
    plain = envelope("WorkOrderCreated", new_request_no())
    plain["data"]["created_at"] = "not a time"
    follow_up = envelope("WorkOrderCreated", new_request_no())
    follow_up["data"].update(follow_up_of="not-a-uuid")
    bad_envelope = envelope("WorkOrderCreated", new_request_no())
    bad_envelope["occurred_at"] = "yesterday"
    publish(plain, follow_up, bad_envelope)

    dead: list[dict[str, Any]] = []  # reading a dead letter takes it off the queue: keep what each read found
    wait_for(lambda: dead.extend(get_messages("escalation.events.dlq", 10)) or len(dead) >= 2, timeout=15,
             what="two dead letters")
    wait_for(lambda: queue_info("escalation.events")["messages"] == 0, timeout=15, what="queue settled")
    dead.extend(get_messages("escalation.events.dlq", 10))
    reasons = {json.loads(m["payload"])["event_id"]: m["properties"]["headers"]["x-error"] for m in dead}
    assert set(reasons) == {follow_up["event_id"], bad_envelope["event_id"]}
    assert "follow_up_of" in reasons[follow_up["event_id"]] and "occurred_at" in reasons[bad_envelope["event_id"]]
    assert scalar("escalation", "SELECT count(*) FROM inbox WHERE event_id = %s", (plain["event_id"],)) == 0
