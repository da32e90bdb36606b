"""The broker topology, declared in full by every service at start.

An event published before its consumer's queue exists is dropped without error
(shared/notes/platform-traps.md), so no service relies on another having started first: each one
declares every exchange, queue and binding below before it consumes or publishes. Queues holding
requests are quorum queues with a delivery limit and a dead-letter exchange (at-least-once
dead-lettering), so a poison message ends in `<queue>.dlq` instead of looping.
"""
from __future__ import annotations

from typing import Any

from kombu import Connection, Exchange, Queue, binding

from services.common.contract.subscriptions import dispatch as subs_dispatch
from services.common.contract.subscriptions import escalation as subs_escalation
from services.common.contract.subscriptions import feedback as subs_feedback
from services.common.contract.subscriptions import intake as subs_intake

SERVICES = ("intake", "dispatch", "escalation", "feedback")
INBOUND_EXCHANGE = "property.inbound"
INBOUND_QUEUE = "intake.inbound"
INBOUND_ROUTING = "request.#"
DLX = "property.dlx"
DELIVERY_LIMIT = 5

# consumer service -> producer service -> event types it handles, one file per consumer under
# contract/subscriptions/. The relay publishes an event with `mandatory` exactly when someone subscribes
# to it, so a missing queue is detected, not a silent loss.
SUBSCRIPTIONS: dict[str, dict[str, list[str]]] = {
    "intake": subs_intake.SUBSCRIBES,
    "dispatch": subs_dispatch.SUBSCRIBES,
    "escalation": subs_escalation.SUBSCRIBES,
    "feedback": subs_feedback.SUBSCRIBES,
}


def exchange(name: str) -> Exchange:
    return Exchange(name, type="topic", durable=True)


def queue_arguments(name: str) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": DLX,
        "x-dead-letter-routing-key": name,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def events_queue_name(service: str) -> str:
    return f"{service}.events"


def service_queue(service: str) -> Queue:
    name = events_queue_name(service)
    bindings = [
        binding(exchange(f"{producer}.events"), routing_key=event_type)
        for producer, types in SUBSCRIPTIONS.get(service, {}).items()
        for event_type in types
    ]
    return Queue(name, bindings=bindings, durable=True, queue_arguments=queue_arguments(name))


def inbound_queue() -> Queue:
    return Queue(INBOUND_QUEUE, exchange=exchange(INBOUND_EXCHANGE), routing_key=INBOUND_ROUTING,
                 durable=True, queue_arguments=queue_arguments(INBOUND_QUEUE))


def dead_letter_queue(source: str) -> Queue:
    return Queue(f"{source}.dlq", exchange=exchange(DLX), routing_key=source, durable=True,
                 queue_arguments={"x-queue-type": "quorum"})


def all_queues() -> list[Queue]:
    queues = [service_queue(s) for s in SUBSCRIPTIONS] + [inbound_queue()]
    return queues + [dead_letter_queue(q.name) for q in queues]


def subscribed(producer: str, event_type: str) -> bool:
    return any(event_type in subs.get(producer, ()) for subs in SUBSCRIPTIONS.values())


def declare(amqp_uri: str) -> None:
    """Declare every exchange, queue and binding (idempotent; the same arguments everywhere)."""
    with Connection(amqp_uri) as conn:
        conn.ensure_connection(max_retries=30, interval_start=0.5, interval_step=0.5, interval_max=2)
        channel = conn.channel()
        for name in [f"{s}.events" for s in SERVICES] + [INBOUND_EXCHANGE, DLX]:
            exchange(name)(channel).declare()
        for q in all_queues():
            q(channel).declare()
