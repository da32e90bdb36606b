"""A batch's deliveries are acknowledged in one frame when that is safe, on the real RabbitMQ.

The consumer counts the channel's delivery tags (tests/unit/test_consumer_acks.py holds the rule). Here: single
deliveries handled in one batch are settled by one `basic.ack(multiple=True)`; a delivery that waits for a retry
keeps the later ones to single acknowledgements until it is settled itself, and nothing is acknowledged twice
(a second ack of a tag is a channel error: the broker would redeliver everything unacknowledged)."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import amqp.channel
import pytest
from kombu import Connection

from services.common import topology
from services.common.nameko_ext import NotReady, Store, consume_events
from tests.support import amqp_uri, queue_info, scalar, wait_for

QUEUE = "feedback.events"


def registered(n: int) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    no = f"LY-20260101-{uuid.uuid4().hex[:6]}"
    return {"event_id": str(uuid.uuid4()), "event_type": "RequestRegistered", "version": 1, "producer": "intake",
            "occurred_at": now, "correlation_id": str(uuid.uuid4()), "request_no": no,
            "data": {"request_no": no, "property_id": "LY", "building": "3", "unit": "3-1502", "area": None,
                     "channel": "phone", "source": "desk", "external_id": None, "category": "repair",
                     "subcategory": "plumbing", "priority": "normal", "emergency": False, "complaint_valid": None,
                     "validity": None, "paid_service": False, "owner_agent": "agent-007", "reporter_kind": "resident",
                     "description": f"ack test {n}", "registered_at": now}}


class _Probe:
    """Consumes feedback's queue (as feedback would); the event marked `held` is not ready for its first tries."""

    name = "feedback"
    uow = Store(Path(__file__).parents[2] / "services" / "feedback" / "migrations")
    log: list[tuple[str, Any]] = []
    tries: dict[str, int] = {}

    @consume_events()
    def on_event(self, envelope: dict[str, Any]) -> str:
        event_id = str(envelope["event_id"])
        if envelope["data"]["description"].endswith("held"):
            _Probe.tries[event_id] = _Probe.tries.get(event_id, 0) + 1
            if _Probe.tries[event_id] <= 3:
                raise NotReady("not yet")
        with self.uow() as uow:
            if not uow.claim(event_id, QUEUE):
                return "duplicate"
            uow.commit()
        _Probe.log.append(("handled", envelope["data"]["description"]))
        return "ok"


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every basic.ack the process sends, in order with the probe's handled events (the real method is called)."""
    _Probe.log, _Probe.tries = [], {}
    real = amqp.channel.Channel.basic_ack

    def counted(channel: Any, delivery_tag: int, multiple: bool = False, **kw: Any) -> Any:
        _Probe.log.append(("ack", (delivery_tag, multiple)))
        return real(channel, delivery_tag, multiple, **kw)

    monkeypatch.setattr(amqp.channel.Channel, "basic_ack", counted)
    return _Probe.log


def publish(events: list[dict[str, Any]]) -> None:
    with Connection(amqp_uri(), transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer()
        for e in events:
            producer.publish(e, exchange=topology.exchange("intake.events"), routing_key="RequestRegistered",
                             serializer="json", delivery_mode=2, mandatory=True)


def settled() -> bool:
    info = queue_info(QUEUE)
    return info.get("messages_ready", 1) == 0 and info.get("messages_unacknowledged", 1) == 0


def claimed(events: list[dict[str, Any]]) -> int:
    return int(scalar("feedback", "SELECT count(*) FROM inbox WHERE event_id = ANY(%s)",
                      ([e["event_id"] for e in events],)))


def test_a_batch_of_single_deliveries_is_acknowledged_in_one_frame(run_service: Any, frames: list[Any]) -> None:
    run_service(_Probe, CONSUMER_BATCH_SIZE=50, CONSUMER_LINGER_MS=300)
    events = [registered(n) for n in range(30)]
    publish(events)
    wait_for(lambda: claimed(events) == 30 and settled(), what="all 30 handled and settled")
    acks = [a for kind, a in frames if kind == "ack"]
    assert len([k for k, _ in frames if k == "handled"]) == 30
    # One frame per batch (the 30 may arrive as two batches), not one per message.
    assert 1 <= len(acks) <= 3 and any(multiple for _, multiple in acks), acks


def test_a_delivery_waiting_for_a_retry_is_never_acknowledged_by_a_later_batch(
        run_service: Any, frames: list[Any]) -> None:
    run_service(_Probe, CONSUMER_BATCH_SIZE=50, CONSUMER_LINGER_MS=50)
    events = [registered(n) for n in range(20)]
    events[0]["data"]["description"] += " held"
    publish(events)
    wait_for(lambda: claimed(events) == 20 and settled(), timeout=30, what="all 20 handled and settled")
    held_done = next(i for i, (kind, what) in enumerate(frames) if kind == "handled" and what.endswith("held"))
    # Before the held event (the channel's first delivery) was handled, only single acks of the others were sent.
    early = [a for kind, a in frames[:held_done] if kind == "ack"]
    assert early and all(not multiple and tag > 1 for tag, multiple in early), early
    assert _Probe.tries[events[0]["event_id"]] == 4
    # Each event handled once: a second ack of a tag would have closed the channel and brought deliveries back.
    assert len([k for k, _ in frames if k == "handled"]) == 20
