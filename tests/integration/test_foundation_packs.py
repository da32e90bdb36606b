"""Packs on real Postgres and RabbitMQ: the relay sends a run of one type's events as one message, and an event
consumer handles a pack event by event, settles the delivery once, and dead-letters a bad event of it alone."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Queue
from prometheus_client import REGISTRY

from services.common import topology
from services.common.db import make_pool, migrate
from services.common.nameko_ext import Store, consume_events
from services.common.publisher import ConfirmingPublisher
from services.feedback.entrypoints.service import FeedbackService
from tests.support import amqp_uri, db, db_url, events_in, get_messages, queue_info, scalar, wait_for

QUEUE = "feedback.events"
DLQ = "feedback.events.dlq"


def registered(no: str, **data: Any) -> dict[str, Any]:
    """A RequestRegistered envelope as intake's relay sends it."""
    body = {"request_no": no, "property_id": "LY", "building": "3", "unit": "3-1502", "area": None,
            "channel": "phone", "source": "desk", "external_id": None, "category": "repair",
            "subcategory": "plumbing", "priority": "normal", "emergency": False, "complaint_valid": None,
            "validity": None, "paid_service": False, "owner_agent": "agent-007", "reporter_kind": "resident",
            "description": "测试", "registered_at": datetime.now(UTC).isoformat(), **data}
    return {"event_id": str(uuid.uuid4()), "event_type": "RequestRegistered", "version": 1, "producer": "intake",
            "occurred_at": datetime.now(UTC).isoformat(), "correlation_id": str(uuid.uuid4()), "request_no": no,
            "data": body}


def publish_pack(events: list[Any], routing_key: str = "RequestRegistered") -> None:
    with Connection(amqp_uri(), transport_options={"confirm_publish": True}) as conn:
        conn.Producer().publish(events, exchange=topology.exchange("intake.events"), routing_key=routing_key,
                                serializer="json", delivery_mode=2, mandatory=True)


def numbers(count: int) -> list[str]:
    return [f"LY-20260101-{uuid.uuid4().hex[:6]}" for _ in range(count)]


def known(nos: list[str]) -> int:
    return int(scalar("feedback", "SELECT count(*) FROM requests WHERE request_no = ANY(%s)", (nos,)))


def settled() -> bool:
    info = queue_info(QUEUE)
    return info.get("messages_ready", 1) == 0 and info.get("messages_unacknowledged", 1) == 0


def duplicates() -> float:
    return REGISTRY.get_sample_value("inbox_duplicates_total", {"service": "feedback", "queue": QUEUE}) or 0.0


@pytest.fixture
def feedback(run_service: Any) -> None:
    get_messages(DLQ, 1000)
    run_service(FeedbackService)


def test_a_pack_is_handled_event_by_event_and_its_delivery_settled_once(feedback: None) -> None:
    nos = numbers(5)
    publish_pack([registered(no) for no in nos])
    wait_for(lambda: known(nos) == 5, what="five requests known to feedback")
    wait_for(settled, what="the pack acked")
    assert get_messages(DLQ, 10) == []


def test_a_bad_event_in_a_pack_is_dead_lettered_alone_naming_its_field_and_the_rest_is_handled(
        feedback: None) -> None:
    good, bad = numbers(2), numbers(1)[0]
    missing = registered(bad)
    del missing["data"]["property_id"]
    other_type = registered(numbers(1)[0]) | {"event_type": "WorkOrderAssigned"}
    publish_pack([registered(good[0]), missing, registered(good[1]), other_type])
    wait_for(lambda: known(good) == 2, what="the good events handled")
    dead = wait_for(lambda: (m := get_messages(DLQ, 10)) and len(m) == 2 and m, what="two dead letters")
    by_index = {d["properties"]["headers"]["x-pack-index"]: d for d in dead}
    assert sorted(by_index) == [1, 3]
    assert json.loads(by_index[1]["payload"])["event_id"] == missing["event_id"]  # the event alone, not the pack
    assert "property_id" in by_index[1]["properties"]["headers"]["x-error"]
    assert "event_type" in by_index[3]["properties"]["headers"]["x-error"]
    for d in dead:
        assert d["properties"]["headers"]["x-reason"] == "invalid"
        assert d["properties"]["headers"]["x-original-routing-key"] == "RequestRegistered"
    assert known([bad]) == 0
    wait_for(settled, what="the pack acked")


def test_a_pack_delivered_twice_changes_nothing_the_second_time(feedback: None) -> None:
    nos = numbers(3)
    pack = [registered(no) for no in nos]
    before = duplicates()
    publish_pack(pack)
    wait_for(lambda: known(nos) == 3, what="three requests known")
    publish_pack(pack)
    wait_for(lambda: duplicates() - before == 3, what="three duplicates skipped")
    assert known(nos) == 3
    wait_for(settled, what="both deliveries acked")


def test_an_empty_pack_is_dead_lettered_whole(feedback: None) -> None:
    publish_pack([])
    dead = wait_for(lambda: get_messages(DLQ, 10), what="dead letter")
    assert json.loads(dead[0]["payload"]) == []
    assert "pack" in dead[0]["properties"]["headers"]["x-error"]
    nos = numbers(1)
    publish_pack([registered(nos[0])])
    wait_for(lambda: known(nos) == 1, what="the next pack handled")


# ------------------------------------------------------------------------------------------------- the relay
@pytest.fixture
def relay(infra: None) -> Iterator[tuple[Store, ConfirmingPublisher, str]]:
    """intake's outbox and relay, without the intake service, and a queue that takes every intake event."""
    migrate(db_url("intake"), Path(__file__).parents[2] / "services" / "intake" / "migrations", "intake")
    with db("intake") as conn:
        conn.execute("DELETE FROM outbox")
    store = Store.__new__(Store)
    store.service, store.amqp_uri = "intake", amqp_uri()
    store.batch_size, store.pack_max = 500, 3
    store.pool = make_pool(db_url("intake"), "intake", 2, "intake-relay-test")
    tap = f"test.tap.{uuid.uuid4().hex[:8]}"
    with Connection(amqp_uri()) as conn:
        Queue(tap, exchange=topology.exchange("intake.events"), routing_key="#", auto_delete=False)(
            conn.channel()).declare()
    publisher = ConfirmingPublisher(amqp_uri())
    yield store, publisher, tap
    publisher.close()
    store.pool.close()
    with Connection(amqp_uri()) as conn:
        Queue(tap)(conn.channel()).delete()


def test_the_relay_sends_a_run_of_one_types_events_as_packs_in_outbox_order(
        relay: tuple[Store, ConfirmingPublisher, str]) -> None:
    store, publisher, tap = relay
    a, b, c, d, e = numbers(5)
    rows = [registered(a), registered(b), registered(c), registered(d),
            registered(a) | {"event_type": "RequestClassified"}, registered(e)]
    with db("intake") as conn:
        for env in rows:
            conn.execute("INSERT INTO outbox (event_id, exchange, routing_key, body) VALUES (%s, %s, %s, %s)",
                         (env["event_id"], "intake.events", env["event_type"], json.dumps(env)))
    assert store.relay_once(publisher) == 6
    assert scalar("intake", "SELECT count(*) FROM outbox") == 0
    messages = wait_for(lambda: (m := get_messages(tap, 20)) and len(m) == 4 and m, what="four messages")
    shapes = [(m["routing_key"], len(b) if isinstance(b := json.loads(m["payload"]), list) else "one")
              for m in messages]
    # Runs of RequestRegistered are cut at the pack limit (3 here) and by the RequestClassified between them.
    assert shapes == [("RequestRegistered", 3), ("RequestRegistered", "one"), ("RequestClassified", "one"),
                      ("RequestRegistered", "one")]
    assert [m["properties"]["headers"]["events"] for m in messages] == [3, 1, 1, 1]
    assert [env["event_id"] for env in events_in(messages)] == [env["event_id"] for env in rows]


# ----------------------------------------------------------------------------------- a handler that keeps failing
class _Probe:
    """Consumes feedback's queue (as feedback would) with a handler that fails on one event, every time."""

    name = "feedback"
    uow = Store(Path(__file__).parents[2] / "services" / "feedback" / "migrations")

    @consume_events()
    def on_event(self, envelope: dict[str, Any]) -> str:
        with self.uow() as uow:
            if not uow.claim(str(envelope["event_id"]), QUEUE):
                return "duplicate"
            if envelope["data"]["description"] == "boom":
                raise RuntimeError("boom")
            uow.commit()
        return "ok"


def test_a_failing_event_sends_its_pack_round_again_and_ends_dead_lettered_alone(run_service: Any) -> None:
    get_messages(DLQ, 1000)
    run_service(_Probe)
    before = duplicates()
    good, bad, good2 = (registered(no) for no in numbers(3))
    bad["data"]["description"] = "boom"
    publish_pack([good, bad, good2])
    dead = wait_for(lambda: get_messages(DLQ, 10), timeout=60, what="the failing event dead-lettered")
    assert len(dead) == 1 and json.loads(dead[0]["payload"])["event_id"] == bad["event_id"]
    headers = dead[0]["properties"]["headers"]
    assert headers["x-reason"] == "handler_error" and headers["x-pack-index"] == 1
    # The good events were kept on the first delivery; each of the four redeliveries found both in the inbox.
    claimed = scalar("feedback", "SELECT array_agg(event_id ORDER BY event_id) FROM inbox WHERE event_id = ANY(%s)",
                     ([good["event_id"], bad["event_id"], good2["event_id"]],))
    assert claimed == sorted([good["event_id"], good2["event_id"]])
    assert duplicates() - before == 8
    wait_for(settled, what="the pack acked after the dead letter")
