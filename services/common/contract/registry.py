"""The event contract: one versioned marshmallow schema per event type, registered here.

Every message on the bus is an *envelope* whose `data` is validated by the schema registered for
(`event_type`, `version`). Producer modules (`contract/intake.py`, ...) register their schemas with
`@event_schema(...)`, giving an example that the AsyncAPI catalogue shows and a test validates.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate


@dataclass(frozen=True)
class EventSpec:
    event_type: str
    version: int
    producer: str
    schema: type[Schema]
    description: str
    example: dict[str, Any]

    @property
    def exchange(self) -> str:
        return f"{self.producer}.events"


_REGISTRY: dict[tuple[str, int], EventSpec] = {}


def event_schema(event_type: str, *, producer: str, description: str, example: dict[str, Any], version: int = 1):
    def register(cls: type[Schema]) -> type[Schema]:
        key = (event_type, version)
        if key in _REGISTRY:
            raise RuntimeError(f"event {event_type} v{version} registered twice")
        _REGISTRY[key] = EventSpec(event_type, version, producer, cls, description, example)
        return cls

    return register


def all_specs() -> list[EventSpec]:
    load_all()
    return sorted(_REGISTRY.values(), key=lambda s: (s.producer, s.event_type, s.version))


def spec_for(event_type: str, version: int = 1) -> EventSpec:
    load_all()
    try:
        return _REGISTRY[(event_type, version)]
    except KeyError:
        raise ValidationError({"event_type": [f"unknown event type {event_type!r} v{version}"]}) from None


def load_all() -> None:
    # Imported lazily so that a producer module can import this one without a cycle.
    from services.common.contract import dispatch, escalation, feedback, intake  # noqa: F401


class EnvelopeSchema(Schema):
    """What every event message carries around its data."""

    class Meta:
        unknown = RAISE

    event_id = fields.UUID(required=True)
    event_type = fields.String(required=True, validate=validate.Length(min=1, max=80))
    version = fields.Integer(required=True, validate=validate.Range(min=1, max=1000))
    producer = fields.String(required=True,
                             validate=validate.OneOf(["intake", "dispatch", "escalation", "feedback", "gateway"]))
    occurred_at = fields.AwareDateTime(required=True)
    correlation_id = fields.String(required=True, validate=validate.Length(min=1, max=100))
    request_no = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=40))
    data = fields.Dict(required=True)


class DataSchema(Schema):
    """Base of every event's data schema. Consumers tolerate fields added by a newer minor
    revision of the producer (EXCLUDE), so that producers can be upgraded first."""

    class Meta:
        unknown = EXCLUDE


_ENVELOPE = EnvelopeSchema()


def load_envelope(body: Any) -> dict[str, Any]:
    """Validate an envelope and its data; raises ValidationError naming the bad fields."""
    if not isinstance(body, dict):
        raise ValidationError({"_body": ["an event must be a JSON object"]})
    env = _ENVELOPE.load(body)
    schema = schema_instance(env["event_type"], env["version"])
    try:
        env["data"] = schema.load(env["data"])
    except ValidationError as exc:
        raise ValidationError({"data": exc.messages}) from None
    return env


def loader_skipping(concerns: Callable[[dict[str, Any]], bool]) -> Callable[[Any], dict[str, Any] | None]:
    """`load_envelope`, except that an event `concerns` says the consumer has no use for has only its envelope
    validated and comes back None: the consumer acknowledges it without handling it."""
    def load(body: Any) -> dict[str, Any] | None:
        if isinstance(body, dict) and not concerns(body):
            _ENVELOPE.load(body)
            return None
        return load_envelope(body)
    return load


_INSTANCES: dict[tuple[str, int], Schema] = {}


def schema_instance(event_type: str, version: int = 1) -> Schema:
    """One schema object per event type: building one deep-copies every field, too slow per event.
    marshmallow schemas keep no per-call state in dump/load/validate, so sharing one is safe."""
    key = (event_type, version)
    schema = _INSTANCES.get(key)
    if schema is None:
        schema = _INSTANCES[key] = spec_for(event_type, version).schema()
    return schema


def dump_data(event_type: str, data: dict[str, Any], version: int = 1) -> dict[str, Any]:
    """Serialise (and validate) event data on the producer side, before it enters the outbox."""
    schema = schema_instance(event_type, version)
    dumped = schema.dump(data)
    errors = schema.validate(dumped)
    if errors:
        raise ValidationError({"data": errors})
    return dumped
