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
from marshmallow.decorators import VALIDATES_SCHEMA
from marshmallow.error_store import ErrorStore
from marshmallow.utils import missing


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
    env = lean_load(_ENVELOPE, body)
    schema = schema_instance(env["event_type"], env["version"])
    try:
        env["data"] = lean_load(schema, env["data"])
    except ValidationError as exc:
        raise ValidationError({"data": exc.messages}) from None
    return env


def loader_skipping(concerns: Callable[[dict[str, Any]], bool]) -> Callable[[Any], dict[str, Any] | None]:
    """`load_envelope`, except that an event `concerns` says the consumer has no use for has only its envelope
    validated and comes back None: the consumer acknowledges it without handling it."""
    def load(body: Any) -> dict[str, Any] | None:
        if isinstance(body, dict) and not concerns(body):
            lean_load(_ENVELOPE, body)
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
    dumped = lean_dump(schema, data)
    try:
        lean_load(schema, dumped)
    except ValidationError as exc:
        raise ValidationError({"data": exc.messages}) from None
    return dumped


# --- loading without marshmallow's per-field scaffolding ------------------------------------------------------------
# Every event is loaded by each consumer and checked once by its producer: at 100 requests/s that is ~1,000 loads a
# second, and marshmallow's schema loop (a closure, an error store and a dotted-key setter per field) cost as much
# as the fields' own work (RequestRegistered's data: 149 us stock, 79-83 us with a lean loop, 34 us with lean steps).
# `lean_load` keeps every field's marshmallow conversion (`_deserialize`), messages and validators (nested schemas
# load through marshmallow) and replaces the loop around them and, for fields that do not override it,
# `Field.deserialize`'s own steps. It takes the plain case alone, a schema with no hooks (pre/post_load, @validates,
# @validates_schema); anything else goes to `Schema.load`. tests/unit/test_contract_lean_load.py holds it equal to
# `Schema.load`, values and error messages, for every registered event and envelope, valid and broken.

class _Step:
    """One field of a lean plan. A field whose class keeps `Field.deserialize` and `Field._validate` is
    deserialized here, step for step as `Field.deserialize` does it, with its validators combined once (marshmallow
    builds an `And` of them on every call); any other field is asked to deserialize itself."""

    __slots__ = ("key", "attr", "field", "inline", "validate", "required", "allow_none", "default", "pre", "post",
                 "convert")

    def __init__(self, key: str, attr: str, field: fields.Field) -> None:
        self.key, self.attr, self.field = key, attr, field
        cls = type(field)
        self.inline = cls.deserialize is fields.Field.deserialize and cls._validate is fields.Field._validate
        self.validate = validate.And(*field.validators) if field.validators else None
        # Read once: a bound field's settings do not change after its schema is built.
        self.required, self.allow_none, self.default = field.required, field.allow_none, field.load_default
        self.pre, self.post, self.convert = tuple(field.pre_load), tuple(field.post_load), field._deserialize

    def load(self, raw: Any, data: dict[str, Any]) -> Any:
        if not self.inline:
            return self.field.deserialize(raw, self.key, data)
        if raw is missing:
            if self.required:
                raise self.field.make_error("required")
            default = self.default
            return default() if callable(default) else default
        if raw is None and not self.allow_none:
            raise self.field.make_error("null")
        for func in self.pre:
            raw = func(raw)
        if raw is None and self.allow_none:
            return None
        value = self.convert(raw, self.key, data)
        if self.validate is not None:
            self.validate(value)
        for func in self.post:
            value = func(value)
        return value


_Plan = tuple[tuple[_Step, ...], frozenset[str] | None, tuple[Callable[..., Any], ...]]


def _schema_validators(schema: Schema) -> tuple[Callable[..., Any], ...] | None:
    """The schema's `@validates_schema` methods when they are its only hooks and each is the plain kind (per
    item, the loaded data only, skipped on field errors); None for anything else (marshmallow loads those)."""
    hooks = {tag: entries for tag, entries in schema._hooks.items() if entries}
    if set(hooks) - {VALIDATES_SCHEMA}:
        return None
    out = []
    for attr_name, hook_many, kwargs in hooks.get(VALIDATES_SCHEMA, ()):
        if hook_many or kwargs.get("pass_original") or not kwargs.get("skip_on_field_errors", True):
            return None
        out.append(getattr(schema, attr_name))
    return tuple(out)


def _plan(schema: Schema) -> _Plan | None:
    # Kept on the schema object itself (None too: marshmallow's own load): its fields are fixed once it is built.
    if "_lean_plan" in schema.__dict__:
        return schema.__dict__["_lean_plan"]  # type: ignore[no-any-return]
    validators = _schema_validators(schema)
    plan: _Plan | None = None
    if validators is not None and not schema.many and schema.partial in (None, False) \
            and schema.unknown in (RAISE, EXCLUDE):
        steps = tuple(_Step(f.data_key if f.data_key is not None else name, f.attribute or name, f)
                      for name, f in schema.load_fields.items())
        if all("." not in st.attr for st in steps):
            plan = (steps, frozenset(st.key for st in steps) if schema.unknown == RAISE else None, validators)
    schema.__dict__["_lean_plan"] = plan
    return plan


def lean_load(schema: Schema, data: Any) -> dict[str, Any]:
    """`schema.load(data)` for the schemas shared through `schema_instance` (and the envelope's, and the inbound
    request's): the same result, the same ValidationError messages, without the per-field scaffolding of
    marshmallow's own loop."""
    plan = _plan(schema)
    if plan is None or not isinstance(data, dict):
        return schema.load(data)  # type: ignore[no-any-return]
    steps, known, validators = plan
    out: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for st in steps:
        try:
            value = st.load(data.get(st.key, missing), data)
        except ValidationError as exc:
            errors[st.key] = exc.messages
            if exc.valid_data:  # a nested schema's valid part, as marshmallow keeps it
                out[st.attr] = exc.valid_data
            continue
        if value is not missing:
            out[st.attr] = value
    if known is not None:
        for key in data.keys() - known:
            errors[key] = [schema.error_messages["unknown"]]
    if errors:  # schema validators are skipped on field errors (the only kind planned)
        raise ValidationError(errors, data=data, valid_data=out)
    if validators:
        store = ErrorStore()
        for validator in validators:
            # marshmallow's own step: it calls the validator and files its errors under the right keys.
            schema._run_validator(validator, out, original_data=data, error_store=store, many=False,
                                  partial=schema.partial, unknown=schema.unknown, pass_original=False)
        if store.errors:
            raise ValidationError(store.errors, data=data, valid_data=out)
    return out


# --- dumping, likewise ------------------------------------------------------------------------------------------------
# The producer's side of the same scaffolding: `Schema.dump` asks each field to fetch its value through the
# schema's accessor (dotted keys, item then attribute) before converting it. For a dict of event data, `lean_dump`
# fetches it directly and leaves the conversion (`_serialize`) to the field; held equal to `Schema.dump` by the same
# test file.

_DumpPlan = tuple[tuple[str, str, str, fields.Field], ...]


def _dump_plan(schema: Schema) -> _DumpPlan | None:
    if "_lean_dump_plan" in schema.__dict__:
        return schema.__dict__["_lean_dump_plan"]  # type: ignore[no-any-return]
    plan: _DumpPlan | None = None
    plain = not schema.many and not schema._hooks["pre_dump"] and not schema._hooks["post_dump"] \
        and type(schema).get_attribute is Schema.get_attribute
    if plain:
        steps = tuple((name, f.attribute or name, f.data_key if f.data_key is not None else name, f)
                      for name, f in schema.dump_fields.items())
        if all("." not in source and type(f).serialize is fields.Field.serialize
               and type(f).get_value is fields.Field.get_value and f._CHECK_ATTRIBUTE for _n, source, _k, f in steps):
            plan = steps
    schema.__dict__["_lean_dump_plan"] = plan
    return plan


def lean_dump(schema: Schema, obj: Any) -> dict[str, Any]:
    """`schema.dump(obj)` for a dict: the same output (and the same exceptions from the fields' conversions)."""
    plan = _dump_plan(schema)
    if plan is None or type(obj) is not dict:
        return schema.dump(obj)  # type: ignore[no-any-return]
    out: dict[str, Any] = {}
    for name, source, key, field in plan:
        # marshmallow reads an item, then an attribute of the same name (a dict's own methods, e.g. `items`)
        value = obj[source] if source in obj else getattr(obj, source, missing)
        if value is missing:
            default = field.dump_default
            value = default() if callable(default) else default
            if value is missing:
                continue
        out[key] = field._serialize(value, name, obj)
    return out
