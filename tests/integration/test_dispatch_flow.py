"""Dispatch on real Postgres and RabbitMQ: routing and assignment from intake's RequestRegistered, the lifecycle over
RPC with a refused transition, cancellation, reclassification, follow-ups and the acceptance timeout."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kombu import Connection
from nameko.standalone.rpc import ServiceRpcProxy

from services.common import topology
from services.common.contract.registry import load_envelope
from services.dispatch.entrypoints.service import DispatchService
from tests.support import amqp_uri, db, scalar, wait_for

HOLDING = "('assigned', 'accepted', 'en_route', 'on_site', 'temporary_measure', 'paused', 'resident_rejected')"


def request_no(prefix: str = "LY") -> str:
    return f"{prefix}-T{uuid.uuid4().hex[:12].upper()}"


def envelope(event_type: str, data: dict[str, Any], producer: str = "intake") -> dict[str, Any]:
    env = {"event_id": str(uuid.uuid4()), "event_type": event_type, "version": 1, "producer": producer,
           "occurred_at": datetime.now(UTC).isoformat(), "correlation_id": str(uuid.uuid4()),
           "request_no": data.get("request_no"), "data": data}
    load_envelope(json.loads(json.dumps(env)))  # a valid message by the contract, as intake would send it
    return env


def registered(no: str, **overrides: Any) -> dict[str, Any]:
    data = {"request_no": no, "property_id": no.split("-")[0], "building": "3", "unit": "3-1502", "area": None,
            "channel": "phone", "source": "desk", "external_id": None, "category": "repair",
            "subcategory": "plumbing", "priority": "urgent", "emergency": False, "complaint_valid": None,
            "paid_service": False, "owner_agent": "agent-007", "reporter_kind": "resident",
            "reporter_phone_masked": "138****1234", "description": "厨房水管漏水",
            "registered_at": datetime.now(UTC).isoformat()}
    data.update(overrides)
    return envelope("RequestRegistered", data)


def publish(envelopes: list[dict[str, Any]], exchange: str = "intake.events") -> None:
    with Connection(amqp_uri(), transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer(serializer="json")
        for env in envelopes:
            producer.publish(env, exchange=topology.exchange(exchange), routing_key=env["event_type"],
                             delivery_mode=2, mandatory=True, message_id=env["event_id"])


def work_order(no: str) -> dict[str, Any] | None:
    with db("dispatch") as conn:
        row = conn.execute("SELECT id, state, department, technician_id, doc FROM work_orders WHERE request_no = %s "
                           "ORDER BY created_at DESC LIMIT 1", (no,)).fetchone()
    return None if row is None else {"id": str(row[0]), "state": row[1], "department": row[2],
                                     "technician_id": row[3], "doc": row[4]}


def load_of(technician_id: str) -> int:
    return int(scalar("dispatch", "SELECT load FROM technicians WHERE technician_id = %s", (technician_id,)))


def events_of(no: str) -> list[str]:
    with db("dispatch") as conn:
        return [r[0] for r in conn.execute("SELECT event_type FROM timeline WHERE request_no = %s ORDER BY at, id",
                                           (no,)).fetchall()]


def loads_are_exact() -> bool:
    total = scalar("dispatch", "SELECT coalesce(sum(load), 0) FROM technicians")
    held = scalar("dispatch",
                  f"SELECT count(*) FROM work_orders WHERE technician_id IS NOT NULL AND state IN {HOLDING}")
    return int(total) == int(held)


@pytest.fixture
def dispatch(run_service: Any) -> Any:
    run_service(DispatchService, TIMER_INTERVAL=0.2)
    with ServiceRpcProxy("dispatch", {"AMQP_URI": amqp_uri()}, timeout=20) as proxy:
        yield proxy


def test_a_registered_repair_is_routed_and_assigned_once_to_an_on_duty_plumber(dispatch: Any) -> None:
    no = request_no()
    env = registered(no)
    publish([env, env])  # the same message twice: one work order
    wo = wait_for(lambda: work_order(no), what="work order")
    assert wo["department"] == "engineering" and wo["state"] == "assigned"
    tech = wo["technician_id"]
    assert tech.startswith("LY-eng-")
    assert "plumbing" in scalar("dispatch", "SELECT skills FROM technicians WHERE technician_id = %s", (tech,))
    team = dispatch.team("LY", "engineering")["data"]
    assert tech in {t["technician_id"] for t in team["on_duty"]}  # on the shift covering now
    wait_for(lambda: events_of(no) == ["WorkOrderCreated", "WorkOrderAssigned"], what="created + assigned")
    wait_for(lambda: int(scalar("dispatch", "SELECT count(*) FROM inbox WHERE event_id = %s",
                                (env["event_id"],))) == 1)
    assert int(scalar("dispatch", "SELECT count(*) FROM work_orders WHERE request_no = %s", (no,))) == 1
    assert wo["doc"]["accept_by"] is not None
    assert loads_are_exact()


def test_routing_sends_complaints_to_the_department_and_medical_help_to_the_security_duty_lead(dispatch: Any) -> None:
    complaint, medical, consult = request_no("HY"), request_no("HY"), request_no("JH")
    publish([registered(complaint, category="complaint", subcategory="service_attitude", priority="normal"),
             registered(medical, category="emergency_medical", subcategory=None, priority="emergency",
                        emergency=True),
             registered(consult, category="consultation", subcategory=None, priority="normal")])
    c = wait_for(lambda: work_order(complaint), what="complaint work order")
    assert (c["department"], c["technician_id"]) == ("customer_service", "HY-cs-lead")
    m = wait_for(lambda: work_order(medical), what="medical work order")
    assert m["department"] == "security" and m["doc"]["assign_to"] == "duty_lead"
    assert m["technician_id"] == dispatch.team("HY", "security")["data"]["duty_lead"]
    q = wait_for(lambda: work_order(consult), what="consultation work order")
    assert (q["department"], q["technician_id"]) == ("customer_service", "JH-cs-lead")


def test_the_lifecycle_over_rpc_with_a_refused_transition_and_exact_load(dispatch: Any) -> None:
    no = request_no()
    publish([registered(no)])
    wo = wait_for(lambda: work_order(no), what="work order")
    tech, wid = wo["technician_id"], wo["id"]
    before = load_of(tech)

    refused = dispatch.act(wid, "close", {"by": "sup-1"})
    assert refused["status"] == 409 and refused["errors"]["current_state"] == ["assigned"]
    assert dispatch.act(wid, "accept", {"by": "someone-else"})["status"] == 422  # not the assignee

    # A dispatcher reassigns (the gateway's /requests/{no}/assign): the load moves with the work.
    other = "LY-eng-d3" if tech != "LY-eng-d3" else "LY-eng-d1"
    other_before = load_of(other)
    answer = dispatch.assign(no, {"technician_id": other, "reason": "熟悉该楼栋管线", "by": "dispatcher-1"})
    assert answer["status"] == 200 and answer["data"]["technician_id"] == other
    assert (load_of(tech), load_of(other)) == (before - 1, other_before + 1)

    for action, body in (("accept", {"by": other}), ("depart", {"by": other}), ("arrive", {"by": other}),
                         ("temporary_measure", {"by": other, "measure": "关闭总阀"}),
                         ("pause", {"by": other, "reason": "waiting_parts"}), ("resume", {"by": other})):
        answer = dispatch.act(wid, action, body)
        assert answer["status"] == 200, (action, answer)
    assert dispatch.act(wid, "resume", {"by": other})["errors"]["current_state"] == ["temporary_measure"]

    answer = dispatch.resolve(no, {"resolution": "更换水管接头", "by": other, "fee_cents": 0, "materials": ["接头"]})
    assert answer["status"] == 200 and answer["data"]["state"] == "resolved"
    assert load_of(other) == other_before  # resolved work no longer counts
    assert dispatch.act(wid, "resident_accept", {"by": "resident"})["data"]["state"] == "resident_accepted"
    assert dispatch.act(wid, "close", {"by": "sup-1"})["data"]["state"] == "closed"

    got = dispatch.get_work_order(wid)["data"]
    assert [h["to"] for h in got["history"]] == [
        "unassigned", "assigned", "assigned", "accepted", "en_route", "on_site", "temporary_measure", "paused",
        "temporary_measure", "resolved", "resident_accepted", "closed"]
    assert all(h["at"] and h["by"] for h in got["history"])
    state = dispatch.timeline(no)["data"]["state"]
    assert state["state"] == "closed" and state["technician_id"] == other and len(state["history"]) == 12
    assert dispatch.get_work_order(str(uuid.uuid4()))["status"] == 404
    assert loads_are_exact()


def test_cancel_reclassify_and_follow_up(dispatch: Any) -> None:
    cancelled, moved = request_no(), request_no()
    publish([registered(cancelled), registered(moved)])
    wo = wait_for(lambda: work_order(cancelled), what="work order")
    first = wait_for(lambda: work_order(moved), what="work order to move")
    publish([envelope("RequestCancelled", {"request_no": cancelled, "property_id": "LY", "reason": "住户自行处理",
                                           "cancelled_by": "agent-007", "owner_agent": "agent-007",
                                           "cancelled_at": datetime.now(UTC).isoformat()})])
    wait_for(lambda: (work_order(cancelled) or {}).get("state") == "cancelled", what="cancelled")
    assert load_of(wo["technician_id"]) >= 0

    publish([envelope("RequestReclassified", {
        "request_no": moved, "property_id": "LY", "previous_category": "repair", "previous_subcategory": "plumbing",
        "previous_priority": "urgent", "previous_emergency": False, "category": "complaint",
        "subcategory": "service_attitude", "priority": "normal", "emergency": False, "reason": "实为投诉",
        "reclassified_by": "agent-007", "owner_agent": "agent-007",
        "reclassified_at": datetime.now(UTC).isoformat()})])
    wait_for(lambda: (work_order(moved) or {}).get("department") == "customer_service", what="re-routed")
    assert scalar("dispatch", "SELECT state FROM work_orders WHERE id = %s", (first["id"],)) == "cancelled"

    follow = request_no()
    publish([registered(follow)])
    original = wait_for(lambda: work_order(follow), what="original")
    follow_up_id = str(uuid.uuid4())
    raised = envelope("FollowUpRaised", {
        "follow_up_id": follow_up_id, "request_no": follow, "visit_id": str(uuid.uuid4()),
        "work_order_id": original["id"], "property_id": "LY", "building": "3", "unit": "3-1502",
        "subcategory": "plumbing", "department": "engineering", "reason": "problem_found",
        "description": "接头处仍有渗水", "raised_at": datetime.now(UTC).isoformat(),
        "due_at": (datetime.now(UTC) + timedelta(hours=24)).isoformat()}, producer="feedback")
    again = {**raised, "event_id": str(uuid.uuid4())}  # feedback raising the same follow-up twice
    publish([raised, again], exchange="feedback.events")
    linked = wait_for(lambda: (w := work_order(follow)) and w["id"] != original["id"] and w, what="follow-up")
    assert linked["doc"]["follow_up_of"] == original["id"] and linked["state"] == "assigned"
    wait_for(lambda: int(scalar("dispatch", "SELECT count(*) FROM inbox WHERE event_id = %s",
                                (again["event_id"],))) == 1, what="second FollowUpRaised consumed")
    assert int(scalar("dispatch", "SELECT count(*) FROM work_orders WHERE request_no = %s", (follow,))) == 2
    with db("dispatch") as conn:
        found = conn.execute("SELECT data FROM timeline WHERE request_no = %s AND event_type = 'WorkOrderCreated' "
                             "ORDER BY at DESC, id DESC LIMIT 1", (follow,)).fetchone()
    assert found is not None
    body = found[0]
    assert body["follow_up_of"] == original["id"]
    wait_for(loads_are_exact, what="exact loads")


def test_an_assignment_not_accepted_in_time_goes_to_the_next_candidate(dispatch: Any) -> None:
    no = request_no("JH")
    publish([registered(no)])
    wo = wait_for(lambda: work_order(no), what="work order")
    first = wo["technician_id"]
    first_load = load_of(first)
    past = datetime.now(UTC) - timedelta(seconds=1)
    with db("dispatch") as conn:  # the deadline has passed, as if the minutes had gone by
        conn.execute("UPDATE work_orders SET accept_by = %s, doc = jsonb_set(doc, '{accept_by}', to_jsonb(%s::text)) "
                     "WHERE id = %s", (past, past.isoformat(), wo["id"]))
    moved = wait_for(lambda: (w := work_order(no)) and w["technician_id"] != first and w, what="reassigned")
    assert moved["state"] == "assigned" and first in moved["doc"]["tried"]
    assert events_of(no)[-2:] == ["AssignmentTimedOut", "WorkOrderAssigned"]
    assert events_of(no).count("AssignmentTimedOut") == 1
    assert load_of(first) == first_load - 1
    assert loads_are_exact()


def test_a_consultation_answered_at_the_desk_leaves_customer_services_backlog(dispatch: Any) -> None:
    no = request_no("LY")
    publish([registered(no, category="consultation", subcategory=None, priority="normal", unit=None, building=None)])
    wo = wait_for(lambda: work_order(no), what="consultation routed to customer service")
    assert (wo["department"], wo["state"]) == ("customer_service", "assigned")
    publish([envelope("RequestClosed", {"request_no": no, "property_id": "LY", "category": "consultation",
                                        "closed_reason": "answered_at_desk", "closed_by": "agent-007",
                                        "owner_agent": "agent-007", "closed_at": datetime.now(UTC).isoformat()})])
    wait_for(lambda: (work_order(no) or {}).get("state") == "cancelled", what="cancelled with the request")
    assert events_of(no)[-1] == "WorkOrderCancelled"
    assert loads_are_exact()


def test_rosters_are_data_changed_through_the_api(dispatch: Any) -> None:
    tech = f"JH-temp-{uuid.uuid4().hex[:6]}"
    put = dispatch.put_technician(tech, {"property_id": "JH", "department": "greening", "skills": ["greening"],
                                         "zones": [], "absent": False, "display_name": "临时绿化工"})
    assert put["status"] == 200 and put["data"]["load"] == 0
    assert dispatch.put_technician(tech, {"property_id": "JH", "department": "gardening"})["status"] == 422
    assert dispatch.add_shifts([{"technician_id": tech, "shift": "brunch"}])["errors"]["shift"]
    for shift in ("day", "night"):  # standing entries: on duty whatever the time of the test
        assert dispatch.add_shifts([{"technician_id": tech, "shift": shift, "date": None, "lead": False}])[
            "status"] == 200
    got = dispatch.get_technician(tech)["data"]
    assert got["on_duty"] is True and {s["shift"] for s in got["shifts"]} == {"day", "night"}
    assert tech in {t["technician_id"] for t in dispatch.team("JH", "greening")["data"]["on_duty"]}

    assert dispatch.set_absent(tech, True)["data"]["absent"] is True
    assert dispatch.get_technician(tech)["data"]["on_duty"] is False
    assert tech not in {t["technician_id"] for t in dispatch.team("JH", "greening")["data"]["on_duty"]}
    no = request_no("JH")
    publish([registered(no)])
    wait_for(lambda: work_order(no), what="work order")
    refused = dispatch.assign(no, {"technician_id": tech, "reason": "熟悉现场", "by": "dispatcher-1"})
    assert refused["status"] == 422 and "technician_id" in refused["errors"]

    assert dispatch.set_lead({"property_id": "JH", "department": "greening", "technician_id": tech})["status"] == 200
    assert dispatch.set_on_call({"property_id": "JH", "department": "engineering", "technician_id": tech,
                                 "night": None})["status"] == 422  # not of that team
    assert dispatch.set_lead({"property_id": "JH", "department": "greening",
                              "technician_id": "JH-grn-lead"})["status"] == 200
    listed = dispatch.list_technicians({"property_id": "JH", "department": "greening"})["data"]["items"]
    assert tech in {t["technician_id"] for t in listed}
