"""The transactional outbox and its relay (issue 2, item 5): events leave only after commit, each once,
and an event whose consumer queue is missing is kept and delivered once the queue exists again."""
from __future__ import annotations

import urllib.parse
import uuid
from typing import Any

import eventlet
from nameko.standalone.rpc import ServiceRpcProxy

from services.common import topology
from services.intake.entrypoints.service import IntakeService
from tests.support import amqp_uri, events_in, get_messages, rabbit_api, scalar, vhost, wait_for


def submission(**overrides: Any) -> dict[str, Any]:
    body = {"source": "desk", "external_id": f"desk-{uuid.uuid4()}", "channel": "visit", "property_id": "HY",
            "unit": "2-0303", "reporter": {"kind": "resident"}, "description": "楼道灯不亮了",
            "agent_id": "agent-009"}
    body.update(overrides)
    return body


def registered_events(queue: str) -> list[dict[str, Any]]:
    return [e for e in events_in(get_messages(queue, 500)) if e["event_type"] == "RequestRegistered"]


def test_committed_events_reach_every_subscribed_queue_exactly_once(run_service: Any) -> None:
    run_service(IntakeService)
    get_messages("dispatch.events", 1000)
    with ServiceRpcProxy("intake", {"AMQP_URI": amqp_uri()}) as intake:
        numbers = [r["data"]["request_no"] for r in
                   [intake.submit.call_async(submission()) for _ in range(30)] for r in [r.result()]]
    assert len(set(numbers)) == 30
    wait_for(lambda: scalar("intake", "SELECT count(*) FROM outbox") == 0, what="outbox drained")
    seen: list[dict[str, Any]] = []
    wait_for(lambda: seen.extend(registered_events("dispatch.events")) or len(seen) >= 30, what="30 events")
    eventlet.sleep(0.5)
    seen.extend(registered_events("dispatch.events"))
    assert sorted(e["request_no"] for e in seen) == sorted(numbers)
    assert len({e["event_id"] for e in seen}) == 30


def test_a_refused_registration_publishes_nothing(run_service: Any) -> None:
    run_service(IntakeService)
    before = scalar("intake", "SELECT count(*) FROM timeline")
    with ServiceRpcProxy("intake", {"AMQP_URI": amqp_uri()}) as intake:
        answer = intake.submit(submission(property_id="ZZ"))
    assert answer["status"] == 422 and "property_id" in answer["errors"]
    assert scalar("intake", "SELECT count(*) FROM outbox") == 0
    assert scalar("intake", "SELECT count(*) FROM timeline") == before


def test_an_event_whose_consumer_queue_is_missing_waits_in_the_outbox_and_is_delivered_once_it_exists(
        run_service: Any) -> None:
    run_service(IntakeService)
    for q in ("dispatch.events", "escalation.events", "feedback.events"):
        rabbit_api("DELETE", f"/queues/{vhost()}/{urllib.parse.quote(q, safe='')}").raise_for_status()
    with ServiceRpcProxy("intake", {"AMQP_URI": amqp_uri()}) as intake:
        request_no = intake.submit(submission())["data"]["request_no"]
    # The relay's mandatory publish came back unroutable; it kept the row and redeclared the topology.
    wait_for(lambda: scalar("intake", "SELECT count(*) FROM outbox") == 0, timeout=30, what="delivered later")
    events = wait_for(lambda: registered_events("dispatch.events"), what="event in the recreated queue")
    assert [e["request_no"] for e in events] == [request_no]
    topology.declare(amqp_uri())
