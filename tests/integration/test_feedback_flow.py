"""Feedback on real Postgres and RabbitMQ: an in-process feedback container fed real envelopes on the producers'
exchanges (issue 6): return-visit decisions, retries, follow-ups, the reply-letter workflow, statistics."""
from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kombu import Connection
from nameko.standalone.rpc import ServiceRpcProxy
from prometheus_client import REGISTRY, generate_latest

from services.common import topology
from services.feedback.domain.statistics import CHINA_TZ
from services.feedback.entrypoints.service import FeedbackService
from tests.support import amqp_uri, events_in, get_messages, scalar, wait_for


def _json(o: Any) -> Any:
    return o.isoformat() if isinstance(o, datetime) else str(o)


def publish(producer: str, event_type: str, data: dict[str, Any]) -> None:
    """An envelope as the producer's outbox relay sends it (services/common/contract/registry.py)."""
    envelope = {"event_id": str(uuid.uuid4()), "event_type": event_type, "version": 1, "producer": producer,
                "occurred_at": datetime.now(UTC).isoformat(), "correlation_id": str(uuid.uuid4()),
                "request_no": data.get("request_no"), "data": data}
    with Connection(amqp_uri(), transport_options={"confirm_publish": True}) as conn:
        conn.Producer().publish(json.loads(json.dumps(envelope, default=_json)),
                                exchange=topology.exchange(f"{producer}.events"), routing_key=event_type,
                                serializer="json", delivery_mode=2, mandatory=True,
                                message_id=envelope["event_id"])


def request_no(prop: str = "LY") -> str:
    return f"{prop}-20260101-{uuid.uuid4().hex[:6]}"


def registered(no: str, *, prop: str = "LY", category: str = "repair", subcategory: str | None = "plumbing",
               complaint_valid: bool | None = None, validity: str | None = None, paid: bool = False,
               channel: str = "phone", building: str | None = "3", unit: str | None = "3-1502",
               at: datetime | None = None) -> None:
    publish("intake", "RequestRegistered", {
        "request_no": no, "property_id": prop, "building": building, "unit": unit, "area": None, "channel": channel,
        "source": "desk", "external_id": None, "category": category, "subcategory": subcategory,
        "priority": "normal", "emergency": False, "complaint_valid": complaint_valid, "validity": validity,
        "paid_service": paid, "owner_agent": "agent-007", "reporter_kind": "resident",
        "description": "测试", "registered_at": at or datetime.now(UTC)})


def assigned(no: str, wo: uuid.UUID, department: str = "engineering", prop: str = "LY") -> None:
    publish("dispatch", "WorkOrderAssigned", {
        "work_order_id": wo, "request_no": no, "property_id": prop, "department": department,
        "technician_id": "tech-li", "strategy": "least_loaded", "assigned_at": datetime.now(UTC), "night": False})


def resolved(no: str, wo: uuid.UUID, *, department: str = "engineering", paid: bool = False, fee: int = 0,
             prop: str = "LY", at: datetime | None = None) -> None:
    publish("dispatch", "WorkOrderResolved", {
        "work_order_id": wo, "request_no": no, "property_id": prop, "department": department,
        "technician_id": "tech-li", "resolved_at": at or datetime.now(UTC), "resolution": "已处理",
        "paid_service": paid, "fee_cents": fee})


def decision(no: str) -> dict[str, Any] | None:
    from tests.support import db
    with db("feedback") as conn:
        cur = conn.execute("SELECT required, reason, seed_id, draw, rate, visit_id FROM visit_decisions "
                           "WHERE request_no = %s", (no,))
        row = cur.fetchone()
        return dict(zip([c.name for c in cur.description or []], row, strict=True)) if row else None


def visit_id_of(no: str) -> str:
    return str(wait_for(lambda: scalar("feedback", "SELECT visit_id FROM return_visits WHERE request_no = %s", (no,)),
                        what=f"visit of {no}"))


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    raw = yaml.safe_load((Path(__file__).parents[2] / "services/feedback/policy.yml").read_text(encoding="utf-8"))
    raw["households"]["ST"] = 200
    path = tmp_path / "policy.yml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def feedback(run_service: Any, policy_file: Path) -> Iterator[Any]:
    run_service(FeedbackService, FEEDBACK_SAMPLE_RATE=0.0, FEEDBACK_SEED_ID="it-seed", FEEDBACK_SEED="it-secret",
                FEEDBACK_POLICY=str(policy_file), FEEDBACK_RETRY_AFTER_HOURS="0.0003,0.0006",
                FEEDBACK_RETRY_LAPSE_HOURS=0.0003, TIMER_INTERVAL=0.1)
    with ServiceRpcProxy("feedback", {"AMQP_URI": amqp_uri()}) as proxy:
        yield proxy


def ok(answer: dict[str, Any], status: int = 200) -> Any:
    assert answer["status"] == status, answer
    return answer["data"]


def test_valid_complaints_and_paid_services_always_get_a_visit_and_a_sampled_out_request_keeps_its_decision(
        feedback: Any) -> None:
    complaint, paid, plain = request_no(), request_no(), request_no()
    # Out of order: the resolution overtakes the registration; feedback waits for the facts it needs.
    wo_c = uuid.uuid4()
    resolved(complaint, wo_c, department="security")
    registered(complaint, category="complaint", subcategory="service_attitude", complaint_valid=True,
               validity="valid")
    registered(paid, paid=True)
    registered(plain)
    resolved(paid, uuid.uuid4(), paid=True, fee=5000)
    resolved(plain, uuid.uuid4())

    for no, reason in ((complaint, "valid_complaint"), (paid, "paid_service")):
        d = wait_for(lambda: decision(no), what=f"decision for {no}")  # noqa: B023  (used at once)
        assert (d["required"], d["reason"], d["seed_id"], d["rate"]) == (True, reason, "it-seed", 0.0)
        visits = ok(feedback.request_visits(no))["visits"]
        assert [(v["state"], v["reason"]) for v in visits] == [("scheduled", reason)]
        assert scalar("feedback", "SELECT count(*) FROM timeline WHERE request_no = %s "
                      "AND event_type = 'ReturnVisitScheduled'", (no,)) == 1
    d = wait_for(lambda: decision(plain), what="the sampled-out decision")
    assert d["required"] is False and d["reason"] is None and d["visit_id"] is None
    assert 0.0 <= d["draw"] < 1.0 and d["seed_id"] == "it-seed"
    assert ok(feedback.request_visits(plain))["visits"] == []
    assert ok(feedback.request_visits(plain))["decisions"][0]["required"] is False

    state = ok(feedback.timeline(complaint))["state"]
    assert state["return_visits"][0]["department"] == "security"
    text = generate_latest(REGISTRY).decode()
    assert 'feedback_return_visits_total{outcome="scheduled"}' in text
    assert 'feedback_satisfaction_total{level="unsatisfied"}' in text
    assert 'feedback_complaints_total{validity="valid"}' in text
    assert 'feedback_recurring_problems{property="LY"}' in text


def test_an_unreachable_resident_is_retried_by_the_schedule_then_recorded_failed(feedback: Any) -> None:
    no = request_no()
    registered(no, paid=True)
    resolved(no, uuid.uuid4(), paid=True, fee=100)
    vid = visit_id_of(no)
    first = ok(feedback.record_unreachable(vid, {"method": "phone", "by": "agent-007", "note": "无人接听"}))
    assert first["state"] == "scheduled" and first["next_attempt_at"] and first["give_up_at"]
    second = ok(feedback.record_unreachable(vid, {"method": "phone", "by": "agent-007"}))
    assert second["state"] == "scheduled" and len(second["attempts"]) == 2
    # The last retry (1.08 s + 2.16 s after the first failure) lapses; the timer records the visit failed.
    failed = wait_for(lambda: (v := ok(feedback.request_visits(no))["visits"][0])["state"] == "failed" and v,
                      timeout=20, what="the visit failed as unreachable")
    assert failed["failed_at"] and len(failed["attempts"]) == 2
    events = [r for r in _timeline(no) if r.startswith("ReturnVisit")]
    assert events == ["ReturnVisitScheduled", "ReturnVisitAttemptFailed", "ReturnVisitAttemptFailed",
                      "ReturnVisitFailed"]
    refused = feedback.complete_visit(vid, {"method": "phone", "visited_by": "agent-007", "level": "satisfied",
                                            "score": 5, "fee_checked": True})
    assert refused["status"] == 409 and refused["errors"]["current_state"] == ["failed"]


def _timeline(no: str) -> list[str]:
    from tests.support import db
    with db("feedback") as conn:
        return [r[0] for r in conn.execute("SELECT event_type FROM timeline WHERE request_no = %s ORDER BY at, id",
                                           (no,)).fetchall()]


def test_an_unsatisfied_visit_raises_a_follow_up_that_reaches_dispatch(feedback: Any) -> None:
    get_messages("dispatch.events", 1000)
    no = request_no()
    wo = uuid.uuid4()
    registered(no, category="complaint", subcategory="service_attitude", complaint_valid=True)
    assigned(no, wo, department="security")
    resolved(no, wo, department="security")
    vid = visit_id_of(no)
    bad = feedback.complete_visit(vid, {"method": "on_site", "visited_by": "agent-007", "level": "unsatisfied",
                                        "score": 2, "fee_checked": False})
    assert bad["status"] == 422 and "resident_signed" in bad["errors"]
    done = ok(feedback.complete_visit(vid, {"method": "on_site", "visited_by": "agent-007", "level": "unsatisfied",
                                            "score": 2, "fee_checked": False, "resident_signed": True,
                                            "comments": "保安仍然态度差"}))
    assert done["state"] == "done" and done["follow_up"]["reason"] == "unsatisfied"
    msgs = wait_for(lambda: [e for e in events_in(get_messages("dispatch.events", 100))
                             if e["event_type"] == "FollowUpRaised"], what="FollowUpRaised on dispatch's queue")
    body = msgs[0]
    assert body["data"]["request_no"] == no and body["data"]["work_order_id"] == str(wo)
    assert body["data"]["department"] == "security" and body["data"]["description"] == "保安仍然态度差"
    assert _timeline(no)[-3:] == ["ReturnVisitDone", "SatisfactionRecorded", "FollowUpRaised"]


def test_a_reply_letter_cannot_be_approved_or_sent_before_its_reviews_and_every_version_is_kept(
        feedback: Any) -> None:
    no = request_no()
    letter = ok(feedback.draft_letter(no, {"template_id": "complaint-reply-v1", "department": "security",
                                           "concerns_property": True, "by": "cc-zhao",
                                           "values": {"resident_title": "王先生", "findings": "属实",
                                                      "measures": "已对当班保安进行培训"}}), 201)
    lid = letter["letter_id"]
    assert letter["state"] == "draft" and "王先生" in letter["versions"][0]["body"]
    roles = letter["required_reviewers"]
    assert roles == ["property_manager", "property_department_head", "cs_supervisor", "department_manager"]

    def step(action: str, body: dict[str, Any]) -> dict[str, Any]:
        return feedback.letter_step(lid, action, body)

    send = {"method": "registered_mail", "tracking_no": "XA123456789CN", "by": "cc-zhao"}
    refused = step("send", send)
    assert refused["status"] == 409 and refused["errors"]["current_state"] == ["draft"]
    refused = step("approve", {"approver_id": "mkt-chen", "approver_role": "marketing_manager"})
    assert refused["status"] == 409 and "pending reviews" in refused["errors"]["state"][0]
    ok(step("review", {"role": roles[0], "reviewer_id": "pm-1", "decision": "approved"}))
    revised = ok(step("revise", {"body": "修订后的回函", "by": "cc-zhao", "note": "措辞"}))
    assert revised["version"] == 2 and revised["pending_reviewers"] == roles  # the earlier review no longer counts
    for role in roles:
        last = ok(step("review", {"role": role, "reviewer_id": f"r-{role}", "decision": "approved"}))
    assert last["state"] == "reviewed"
    refused = step("send", send)
    assert refused["status"] == 409 and refused["errors"]["current_state"] == ["reviewed"]
    ok(step("approve", {"approver_id": "mkt-chen", "approver_role": "marketing_manager"}))
    no_tracking = step("send", {"method": "registered_mail", "by": "cc-zhao"})
    assert no_tracking["status"] == 422 and "tracking_no" in no_tracking["errors"]
    sent = ok(step("send", send))
    assert sent["state"] == "sent" and sent["tracking_no"] == "XA123456789CN" and sent["confirmation_due_at"]
    ok(step("confirm", {"by": "cc-zhao", "received": True}))
    archived = ok(step("archive", {"by": "cc-zhao"}))
    assert archived["state"] == "archived"
    assert [v["number"] for v in archived["versions"]] == [1, 2]
    assert scalar("feedback", "SELECT count(*) FROM letter_versions WHERE letter_id = %s", (lid,)) == 2
    assert [h["action"] for h in archived["history"]][-4:] == ["approved", "sent", "confirmed", "archived"]
    assert _timeline(no) == ["ReplyLetterDrafted", "ReplyLetterReviewed", "ReplyLetterDrafted"] + \
        ["ReplyLetterReviewed"] * 4 + ["ReplyLetterApproved", "ReplyLetterSent", "ReplyLetterConfirmed",
                                       "ReplyLetterArchived"]
    assert ok(feedback.timeline(no))["state"]["letters"][0]["state"] == "archived"


def test_statistics_on_a_small_known_data_set(feedback: Any) -> None:
    now = datetime.now(UTC)
    local = now.astimezone(CHINA_TZ)
    period = f"{local.year:04d}-{local.month:02d}"
    quarter = f"{local.year}-Q{(local.month - 1) // 3 + 1}"
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    at = max(month_start + timedelta(minutes=1), now - timedelta(minutes=5))
    p = "ST"
    n1, n2, n3, n4, n5 = (request_no(p) for _ in range(5))
    w1, w3, w4, w5 = (uuid.uuid4() for _ in range(4))
    registered(n1, prop=p, category="complaint", subcategory="service_attitude", complaint_valid=True,
               validity="valid", building="1", unit="1-101", at=at)
    registered(n2, prop=p, category="complaint", subcategory="service_attitude", complaint_valid=False,
               validity="venting", channel="online", building="1", unit="1-101", at=at)
    registered(n3, prop=p, paid=True, building="2", unit="2-201", at=at)
    registered(n4, prop=p, channel="visit", building="2", unit="2-201", at=at)
    registered(n5, prop=p, building="2", unit="2-201", at=at)
    assigned(n1, w1, "customer_service", p)
    for n, w in ((n3, w3), (n4, w4), (n5, w5)):
        assigned(n, w, "engineering", p)
    resolved(n1, w1, department="customer_service", prop=p, at=at)
    resolved(n3, w3, paid=True, fee=8000, prop=p, at=at)
    resolved(n4, w4, prop=p, at=at)
    clock = {"target_seconds": 3600, "deadline": at.isoformat()}
    publish("escalation", "ClockMet", {"clock_id": str(uuid.uuid4()), "request_no": n1, "clock": "resolution",
                                       "met_at": at, "elapsed_seconds": 60, "paused_seconds": 0, "on_time": True,
                                       **clock})
    publish("escalation", "ClockBreached", {"clock_id": str(uuid.uuid4()), "request_no": n3, "clock": "resolution",
                                            "breached_at": at, **clock})
    publish("escalation", "ClockMet", {"clock_id": str(uuid.uuid4()), "request_no": n4, "clock": "acknowledge",
                                       "met_at": at, "elapsed_seconds": 60, "paused_seconds": 0, "on_time": True,
                                       **clock})
    publish("intake", "LetterPraiseRecorded", {
        "letter_id": str(uuid.uuid4()), "property_id": p, "staff_id": "tech-li", "department": "engineering",
        "received_date": local.date().isoformat(), "subject": "感谢李师傅", "recorded_by": "agent-007",
        "recorded_at": now})
    ok(feedback.add_praise({"property_id": p, "department": "security", "channel": "phone",
                            "summary": "保安帮忙搬运", "recorded_by": "cc-zhao", "received_at": at.isoformat()}), 201)
    wait_for(lambda: scalar("feedback", "SELECT count(*) FROM visit_decisions WHERE request_no IN (%s, %s, %s)",
                            (n1, n3, n4)) == 3, what="three decisions")
    wait_for(lambda: scalar("feedback", "SELECT count(*) FROM clock_outcomes c JOIN requests r USING (request_no) "
                            "WHERE r.property_id = 'ST'") == 3, what="three clocks")
    wait_for(lambda: scalar("feedback", "SELECT count(*) FROM praises WHERE property_id = 'ST'") == 2,
             what="two praises")
    wait_for(lambda: scalar("feedback", "SELECT count(*) FROM requests WHERE property_id = 'ST' "
                            "AND department IS NOT NULL") == 4, what="departments")
    ok(feedback.complete_visit(visit_id_of(n1), {"method": "phone", "visited_by": "agent-007",
                                                 "level": "satisfied", "score": 5, "fee_checked": False}))

    report = ok(feedback.monthly_report({"period": period, "property_id": p}))
    assert report["requests"] == {
        "total": 5, "by_class": {"repair": 3, "complaint": 2}, "by_channel": {"phone": 3, "online": 1, "visit": 1},
        "by_property": {"ST": 5}, "by_department": {"engineering": 3, "customer_service": 1, "unassigned": 1}}
    assert report["clocks"] == {"acknowledge": {"met": 1, "breached": 0, "attainment": 1.0},
                                "resolution": {"met": 1, "breached": 1, "attainment": 0.5}}
    rv = report["return_visits"]
    assert (rv["required"], rv["done"], rv["done_on_time"], rv["pending"], rv["rate"]) == (2, 1, 1, 1, 0.5)
    assert rv["by_reason"]["valid_complaint"]["rate"] == 1.0 and rv["by_reason"]["paid_service"]["rate"] == 0.0
    assert rv["meets_target"] is False
    assert report["satisfaction"]["distribution"] == {"satisfied": 1, "basically_satisfied": 0, "unsatisfied": 0}
    assert report["satisfaction"]["satisfaction_rate"] == 1.0 and report["satisfaction"]["mean_score"] == 5.0
    c = report["complaints"]
    assert (c["complaints"], c["valid_complaints"], c["households"], c["rate"], c["meets_target"]) == \
        (2, 1, 200, 0.005, True)
    assert report["praise"] == {"total": 2, "by_department": {"engineering": 1, "security": 1},
                                "by_staff": {"tech-li": 1}}

    csv_doc = ok(feedback.monthly_report({"period": period, "property_id": p, "format": "csv"}))
    assert csv_doc["content_type"].startswith("text/csv")
    rows = {(r["section"], r["item"], r["metric"]): r["value"] for r in csv.DictReader(io.StringIO(csv_doc["body"]))}
    assert rows[("summary", "requests_total", "value")] == "5"
    assert rows[("summary", "return_visit_rate", "value")] == "0.5"
    assert rows[("summary", "valid_complaint_rate", "value")] == "0.005"
    assert rows[("clock_attainment", "resolution", "attainment")] == "0.5"
    assert rows[("requests_by_department", "unassigned", "requests")] == "1"
    html_doc = ok(feedback.monthly_report({"period": period, "property_id": p, "format": "html"}))
    page = html_doc["body"]
    assert html_doc["content_type"].startswith("text/html") and page.startswith("<!DOCTYPE html>")
    assert "<svg" in page and "<script" not in page and "<link" not in page and "src=" not in page
    assert "50.00%" in page and "0.50%" in page  # return-visit rate, valid-complaint rate

    q = ok(feedback.quarterly_report({"quarter": quarter, "property_id": p}))
    assert [(r["rank"], r["place"], r["subcategory"], r["count"]) for r in q["recurring_problems"]] == [
        (1, "2-201", "plumbing", 3), (2, "1-101", "service_attitude", 2)]
    q_csv = ok(feedback.quarterly_report({"quarter": quarter, "property_id": p, "format": "csv"}))
    assert "recurring_problems,ST 2 2-201 · plumbing,count,3" in q_csv["body"]


def test_the_monthly_report_is_published_once(feedback: Any) -> None:
    # The timer publishes last month's report on its own; asking again for that month publishes nothing more.
    wait_for(lambda: scalar("feedback", "SELECT count(*) FROM monthly_reports") >= 1, what="timer's publication")
    assert scalar("feedback", "SELECT count(*) FROM outbox WHERE routing_key = 'MonthlyReportPublished'") + \
        int(scalar("feedback", "SELECT count(*) FROM monthly_reports")) >= 1
    assert ok(feedback.publish_monthly_report("2020-01"))["published"] == "2020-01"
    assert ok(feedback.publish_monthly_report("2020-01"))["published"] is None
    assert scalar("feedback", "SELECT count(*) FROM monthly_reports WHERE period = '2020-01'") == 1
