"""Generate the AsyncAPI 2.6 catalogue (docs/asyncapi.yaml) from the contract's marshmallow schemas.

    python -m services.common.contract.catalogue > docs/asyncapi.yaml

Generated, so it cannot drift from the code; a test checks the committed file is current and that every
example in it loads with the code's schemas.
"""
from __future__ import annotations

import sys
from typing import Any

import yaml
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from services.common import topology
from services.common.contract.inbound import INBOUND_EXAMPLE, SubmitRequestSchema
from services.common.contract.registry import EnvelopeSchema, all_specs


def _converter() -> Any:
    plugin = MarshmallowPlugin()
    APISpec(title="x", version="1", openapi_version="3.0.3", plugins=[plugin])
    return plugin.converter


def catalogue() -> dict[str, Any]:
    conv = _converter()
    envelope = conv.schema2jsonschema(EnvelopeSchema)
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in all_specs():
        name = f"{spec.event_type}V{spec.version}"
        consumers = sorted(c for c, subs in topology.SUBSCRIPTIONS.items()
                           if spec.event_type in subs.get(spec.producer, []))
        payload = dict(envelope)
        payload["properties"] = dict(envelope["properties"], data=conv.schema2jsonschema(spec.schema))
        messages[name] = {
            "name": spec.event_type,
            "title": spec.event_type,
            "summary": spec.description,
            "contentType": "application/json",
            "headers": {"type": "object", "properties": {"event_type": {"type": "string"},
                                                           "producer": {"type": "string"}}},
            "payload": payload,
            "x-version": spec.version,
            "x-consumers": consumers,
            "examples": [{"name": "example", "payload": {
                "event_id": "5b0b7a52-3f43-4c1e-9d9a-0f6e1d2c3b4a", "event_type": spec.event_type,
                "version": spec.version, "producer": spec.producer, "occurred_at": "2026-11-29T04:00:00+00:00",
                "correlation_id": "c0ffee00-0000-4000-8000-000000000001",
                "request_no": spec.example.get("request_no"), "data": spec.example}}],
        }
        channels[f"{spec.exchange}/{spec.event_type}"] = {
            "description": f"Exchange `{spec.exchange}` (topic, durable), routing key `{spec.event_type}`.",
            "subscribe": {"operationId": f"on{spec.event_type}V{spec.version}", "summary": spec.description,
                          "message": {"$ref": f"#/components/messages/{name}"}},
            "bindings": {"amqp": {"is": "routingKey", "exchange": {
                "name": spec.exchange, "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"}}},
        }
    messages["SubmitRequest"] = {
        "name": "SubmitRequest",
        "title": "Submit a request (other systems)",
        "summary": "A request from another system. `source` + `external_id` is the idempotency key: the same "
                   "pair is registered once however often it is delivered. Invalid messages are dead-lettered "
                   f"to `{topology.INBOUND_QUEUE}.dlq` with headers `x-reason` and `x-error` naming the fields.",
        "contentType": "application/json",
        "payload": conv.schema2jsonschema(SubmitRequestSchema),
        "examples": [{"name": "iot-alarm", "payload": INBOUND_EXAMPLE}],
    }
    channels[f"{topology.INBOUND_EXCHANGE}/request.{{channel}}"] = {
        "description": f"Inbound exchange `{topology.INBOUND_EXCHANGE}` (topic, durable) for other systems "
                       "(IoT alarms, call-centre software, patrol apps). Publish persistent messages with "
                       "publisher confirms, content type application/json, UTF-8, routing key "
                       f"`request.<channel>`. Queue `{topology.INBOUND_QUEUE}` is a quorum queue with delivery "
                       f"limit {topology.DELIVERY_LIMIT} and dead-letter exchange `{topology.DLX}`.",
        "parameters": {"channel": {"schema": {"type": "string", "enum": ["iot", "call_centre", "patrol", "online",
                                                                         "email", "phone", "visit", "letter"]}}},
        "publish": {"operationId": "submitRequest", "message": {"$ref": "#/components/messages/SubmitRequest"}},
        "bindings": {"amqp": {"is": "routingKey", "exchange": {
            "name": topology.INBOUND_EXCHANGE, "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"}}},
    }
    return {
        "asyncapi": "2.6.0",
        "info": {"title": "Property service request platform: events", "version": "1.0.0",
                 "description": "Every event is an envelope (event_id, event_type, version, producer, occurred_at, "
                                "correlation_id, request_no, data); `data` is versioned per event type. Events "
                                "never carry residents' names or unmasked phone numbers. A message carries one "
                                "envelope (a JSON object) or a pack: a JSON array of 1 to 1,000 envelopes, all of "
                                "the message's routing key, in the order they were published (header `events` "
                                "gives the count). Consumers handle a pack event by event, deduplicate by "
                                "event_id, and acknowledge it after its last event."},
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {"messages": messages},
    }


def render() -> str:
    return yaml.safe_dump(catalogue(), allow_unicode=True, sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(render())
