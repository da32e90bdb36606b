"""The broker topology a service declares for itself at start (issue 10 item 2), read back from RabbitMQ's
management API on a freshly reset vhost: every queue that holds requests or events is a quorum queue with a
delivery limit and a dead-letter exchange, and has its `.dlq`."""
from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
from nameko.containers import ServiceContainer

from services.common import topology
from services.intake.entrypoints.service import IntakeService
from tests.support import amqp_uri, db_url, queue_info, rabbit_api, reset_vhost, vhost

HOLDING = ("intake.inbound", "intake.events", "dispatch.events", "escalation.events", "feedback.events")


@pytest.fixture(scope="module")
def declared_by_a_service(infra: None) -> Any:
    reset_vhost()  # nothing declared: what follows is the service's own doing
    assert rabbit_api("GET", f"/queues/{vhost()}").json() == []
    container = ServiceContainer(IntakeService, {"AMQP_URI": amqp_uri(), "DATABASE_URL": db_url("intake"),
                                                 "METRICS_PORT": 0, "LOG_LEVEL": "WARNING", "max_workers": 2})
    container.start()
    yield
    container.stop()


@pytest.mark.parametrize("name", HOLDING)
def test_each_queue_holding_requests_or_events_is_quorum_with_a_delivery_limit_and_a_dead_letter_exchange(
        declared_by_a_service: None, name: str) -> None:
    info = queue_info(name)
    args = info["arguments"]
    assert info["durable"] is True
    assert args["x-queue-type"] == "quorum" and info.get("type", "quorum") == "quorum"
    assert isinstance(args["x-delivery-limit"], int) and 1 <= args["x-delivery-limit"] <= 20
    assert args["x-dead-letter-exchange"] == topology.DLX
    assert args["x-dead-letter-routing-key"] == name
    assert args["x-dead-letter-strategy"] == "at-least-once" and args["x-overflow"] == "reject-publish"


@pytest.mark.parametrize("name", HOLDING)
def test_each_has_its_dead_letter_queue_bound_to_the_dead_letter_exchange(declared_by_a_service: None,
                                                                         name: str) -> None:
    dlq = queue_info(f"{name}.dlq")
    assert dlq["durable"] is True and dlq["arguments"]["x-queue-type"] == "quorum"
    path = f"/bindings/{vhost()}/e/{urllib.parse.quote(topology.DLX)}/q/{urllib.parse.quote(name + '.dlq')}"
    assert name in {b["routing_key"] for b in rabbit_api("GET", path).json()}
    dlx = rabbit_api("GET", f"/exchanges/{vhost()}/{urllib.parse.quote(topology.DLX)}").json()
    assert dlx["durable"] is True


def test_the_inbound_exchange_is_durable_and_routes_to_intake(declared_by_a_service: None) -> None:
    exchange = rabbit_api("GET", f"/exchanges/{vhost()}/{topology.INBOUND_EXCHANGE}").json()
    assert exchange["durable"] is True and exchange["type"] == "topic"
    path = f"/bindings/{vhost()}/e/{topology.INBOUND_EXCHANGE}/q/{topology.INBOUND_QUEUE}"
    assert {b["routing_key"] for b in rabbit_api("GET", path).json()} == {topology.INBOUND_ROUTING}
