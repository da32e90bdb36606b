"""Helpers for the escalation integration tests (no tests here): real envelopes on the producers' exchanges."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, UTC
from typing import Any

from kombu import Connection

from services.common import topology
from services.common.contract.registry import dump_data, load_envelope, spec_for
from tests.support import amqp_uri, db


def envelope(event_type: str, subject: str | None = None, event_id: str | None = None,
             **overrides: Any) -> dict[str, Any]:
    """A valid envelope: the contract's example, loaded, with `overrides` (datetimes or ISO strings)."""
    spec = spec_for(event_type)
    data = spec.schema().load(spec.example)
    if subject is not None and "request_no" in spec.schema().fields:
        data["request_no"] = subject
    loaded_overrides = spec.schema().load({**spec.schema().dump(data), **_plain(overrides)})
    body = {
        "event_id": event_id or str(uuid.uuid4()), "event_type": event_type, "version": spec.version,
        "producer": spec.producer, "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": str(uuid.uuid4()), "request_no": subject,
        "data": dump_data(event_type, loaded_overrides),
    }
    load_envelope(json.loads(json.dumps(body)))  # the consumer will accept it
    return body


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(values, default=lambda o: o.isoformat() if hasattr(o, "isoformat") else str(o)))


def publish(*bodies: dict[str, Any]) -> None:
    """As the producer's relay does: persistent, confirmed, mandatory, on `<producer>.events`."""
    with Connection(amqp_uri(), transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer()
        for body in bodies:
            producer.publish(json.dumps(body).encode(), exchange=topology.exchange(f"{body['producer']}.events"),
                             routing_key=body["event_type"], content_type="application/json",
                             content_encoding="utf-8", delivery_mode=2, mandatory=True,
                             message_id=body["event_id"])


def clocks(request_no: str) -> dict[str, dict[str, Any]]:
    with db("escalation") as conn:
        conn.row_factory = __import__("psycopg").rows.dict_row
        rows = conn.execute("SELECT * FROM clocks WHERE request_no = %s", (request_no,)).fetchall()
    return {r["kind"]: r for r in rows}


def timeline(request_no: str) -> list[tuple[str, dict[str, Any]]]:
    with db("escalation") as conn:
        rows = conn.execute("SELECT event_type, data FROM timeline WHERE request_no = %s ORDER BY at, id",
                            (request_no,)).fetchall()
    return [(r[0], r[1]) for r in rows]


def new_request_no(prefix: str = "LY") -> str:
    return f"{prefix}-20261129-{uuid.uuid4().int % 10**6:06d}"
