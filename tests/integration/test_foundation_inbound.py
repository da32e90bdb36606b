"""Nothing lost, nothing twice on the inbound exchange (issue 2, item 5): real RabbitMQ, real Postgres."""
from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from services.intake.entrypoints.service import IntakeService
from tests.support import get_messages, publish_inbound, scalar, wait_for


def inbound(**overrides: Any) -> dict[str, Any]:
    body = {
        "source": "callcentre",
        "external_id": f"call-{uuid.uuid4()}",
        "channel": "call_centre",
        "property_id": "LY",
        "building": "3",
        "unit": "3-1502",
        "reporter": {"kind": "resident", "name": "王小明", "phone": "13812341234"},
        "description": "厨房水管漏水，水流到客厅",
        "channel_details": {"caller_number": "13812341234", "call_id": f"c-{uuid.uuid4().hex[:8]}"},
    }
    body.update(overrides)
    return body


def registered(external_id: str) -> int:
    return int(scalar("intake", "SELECT count(*) FROM requests WHERE external_id = %s", (external_id,)))


@pytest.fixture
def intake(run_service: Any) -> Any:
    return run_service(IntakeService)


def test_the_same_inbound_event_delivered_twice_makes_one_request(intake: Any) -> None:
    body = inbound()
    publish_inbound(body, routing_key="request.call_centre")
    publish_inbound(body, routing_key="request.call_centre")
    wait_for(lambda: registered(body["external_id"]) == 1, what="first delivery registered")
    # The second delivery is consumed (queue drained) without a second row.
    wait_for(lambda: int(scalar("intake", "SELECT count(*) FROM inbox")) >= 0 and _queue_empty("intake.inbound"))
    assert registered(body["external_id"]) == 1
    request_no = scalar("intake", "SELECT request_no FROM requests WHERE external_id = %s", (body["external_id"],))
    assert request_no.startswith("LY-")
    # One RequestRegistered in the outbox/relay path: its timeline has exactly one registration.
    assert scalar("intake", "SELECT count(*) FROM timeline WHERE request_no = %s AND event_type = 'RequestRegistered'",
                  (request_no,)) == 1


def _queue_empty(name: str) -> bool:
    from tests.support import queue_info
    info = queue_info(name)
    return info.get("messages", 1) == 0


@pytest.mark.parametrize("bad,field", [
    ({"property_id": "ly!"}, "property_id"),
    ({"reporter": {"kind": "resident", "phone": "12345"}}, "reporter"),
    ({"description": ""}, "description"),
    ({"external_id": None}, "external_id"),
    ({"channel": "pigeon"}, "channel"),
])
def test_a_malformed_inbound_request_is_dead_lettered_with_its_reason_and_the_next_good_one_goes_through(
        intake: Any, bad: dict[str, Any], field: str) -> None:
    get_messages("intake.inbound.dlq", 100)  # start from an empty dead-letter queue
    publish_inbound(inbound(**bad), routing_key="request.call_centre")
    good = inbound()
    publish_inbound(good, routing_key="request.call_centre")
    wait_for(lambda: registered(good["external_id"]) == 1, what="the good request after the bad one")
    dead = wait_for(lambda: get_messages("intake.inbound.dlq", 10), what="dead letter")
    assert len(dead) == 1
    headers = dead[0]["properties"]["headers"]
    assert headers["x-reason"] in ("invalid", "invalid_request", "unknown_property")
    assert field in json.loads(headers["x-error"])


def test_a_message_that_is_not_json_is_dead_lettered_and_does_not_block_the_queue(intake: Any) -> None:
    get_messages("intake.inbound.dlq", 100)
    publish_inbound(None, raw=b"\xff\xfe not json", routing_key="request.phone")
    publish_inbound(None, raw=b"<xml/>", content_type="application/xml", routing_key="request.phone")
    good = inbound()
    publish_inbound(good, routing_key="request.call_centre")
    wait_for(lambda: registered(good["external_id"]) == 1, what="the good request after the undecodable ones")
    dead = wait_for(lambda: (m := get_messages("intake.inbound.dlq", 10)) and len(m) == 2 and m,
                    what="two dead letters")
    assert {d["properties"]["headers"]["x-reason"] for d in dead} == {"undecodable"}


def test_an_unknown_property_is_refused_naming_the_field(intake: Any) -> None:
    get_messages("intake.inbound.dlq", 100)
    publish_inbound(inbound(property_id="NOPE"), routing_key="request.call_centre")
    dead = wait_for(lambda: get_messages("intake.inbound.dlq", 10), what="dead letter")
    assert "property_id" in json.loads(dead[0]["properties"]["headers"]["x-error"])
