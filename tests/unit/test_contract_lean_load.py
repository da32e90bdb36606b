"""`registry.lean_load` is marshmallow's `Schema.load` without the per-field scaffolding: for every registered event
(and the envelope around it), valid and broken in every field, it must give what `Schema.load` gives, value for
value and message for message."""
from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest
from marshmallow import Schema, ValidationError, fields, post_load, validates_schema

from services.common.contract import inbound, registry
from services.common.contract.registry import all_specs, lean_load, schema_instance

SPECS = all_specs()
# Values a producer bug or a hostile publisher could put in any field: each is wrong for most fields, right for some.
ODD_VALUES: list[Any] = [None, {}, [], "", "not a value", 12345, -1, 1.5, True, "2026-13-45T99:00:00",
                         "2026-11-29T04:00:02", "2026-11-29T04:00:02+00:00", str(uuid.UUID(int=7)), ["x"],
                         [{"a": 1}], {"nested": {"deep": []}}, "x" * 5000]


def outcome(load: Any, schema: Schema, data: Any) -> tuple[str, Any]:
    try:
        return "ok", load(schema, copy.deepcopy(data))
    except ValidationError as exc:
        return "error", (exc.messages, exc.valid_data)


def stock(schema: Schema, data: Any) -> Any:
    return schema.load(data)


def variants(example: dict[str, Any], schema: Schema) -> list[tuple[str, Any]]:
    """The example, then each field missing, then each field holding each odd value, then an unknown field."""
    out: list[tuple[str, Any]] = [("as given", example)]
    for key in sorted(set(example) | {f.data_key or n for n, f in schema.load_fields.items()}):
        out.append((f"{key} missing", {k: v for k, v in example.items() if k != key}))
        out.extend((f"{key}={odd!r:.30}", {**example, key: odd}) for odd in ODD_VALUES)
    out.append(("unknown field", {**example, "surplus_field": 1}))
    return out


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.event_type}-v{s.version}")
def test_every_event_loads_as_marshmallow_loads_it_valid_or_broken(spec: registry.EventSpec) -> None:
    schema = schema_instance(spec.event_type, spec.version)
    example = json.loads(json.dumps(spec.example))
    cases = variants(example, schema)
    assert outcome(lean_load, schema, example) == outcome(stock, schema, example) == \
        ("ok", schema.load(copy.deepcopy(example)))
    for name, data in cases:
        assert outcome(lean_load, schema, data) == outcome(stock, schema, data), name
    # The odd values do break these schemas: the comparison above is not only between two successes.
    assert sum(outcome(stock, schema, d)[0] == "error" for _n, d in cases) > len(schema.load_fields)


def test_the_envelope_loads_as_marshmallow_loads_it_and_refuses_unknown_fields() -> None:
    spec = SPECS[0]
    envelope = {"event_id": str(uuid.uuid4()), "event_type": spec.event_type, "version": spec.version,
                "producer": spec.producer, "occurred_at": "2026-11-29T04:00:02+00:00", "correlation_id": "c-1",
                "request_no": None, "data": spec.example}
    for name, data in variants(envelope, registry._ENVELOPE):
        assert outcome(lean_load, registry._ENVELOPE, data) == outcome(stock, registry._ENVELOPE, data), name
    assert outcome(lean_load, registry._ENVELOPE, {**envelope, "extra": 1}) == \
        ("error", ({"extra": ["Unknown field."]}, registry._ENVELOPE.load({**envelope, "data": spec.example})))


def test_a_body_that_is_not_an_object_gets_marshmallows_own_answer() -> None:
    bodies: list[Any] = [None, [], "text", 3]
    for body in bodies:
        assert outcome(lean_load, registry._ENVELOPE, body) == outcome(stock, registry._ENVELOPE, body)


class _Checked(Schema):
    low = fields.Integer(required=True)
    high = fields.Integer(required=True)

    @validates_schema
    def ordered(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["low"] > data["high"]:
            raise ValidationError("low above high", "low")

    @validates_schema
    def not_equal(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["low"] == data["high"]:
            raise ValidationError({"high": ["equal"], "low": ["equal too"]})


@pytest.mark.parametrize("data", [{"low": 3, "high": 1}, {"low": 1, "high": 3}, {"low": 2, "high": 2},
                                  {"low": "x", "high": 1}, {"low": 1}, {"low": 3, "high": 1, "extra": 0}],
                         ids=str)
def test_schema_validators_run_after_the_fields_and_are_skipped_on_field_errors_as_in_marshmallow(
        data: dict[str, Any]) -> None:
    schema = _Checked()
    assert registry._plan(schema) is not None  # lean: the validators are the plain kind
    assert outcome(lean_load, schema, data) == outcome(stock, schema, data)


class _Original(_Checked):
    @validates_schema(pass_original=True)
    def sees_raw(self, data: dict[str, Any], original: Any, **kwargs: Any) -> None:
        if "raw" in original:
            raise ValidationError("raw seen")


class _Always(_Checked):
    @validates_schema(skip_on_field_errors=False)
    def always(self, data: dict[str, Any], **kwargs: Any) -> None:
        raise ValidationError("always")


class _Processed(_Checked):
    @post_load
    def doubled(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {**data, "low": data["low"] * 2}


@pytest.mark.parametrize("cls", [_Original, _Always, _Processed])
def test_other_hooks_leave_the_load_to_marshmallow_itself(cls: type[Schema]) -> None:
    schema = cls()
    assert registry._plan(schema) is None
    for data in ({"low": 1, "high": 3}, {"low": "x", "high": 1}):
        assert outcome(lean_load, schema, data) == outcome(stock, schema, data)


# The inbound request (intake's queue and POST /requests): a schema validator loads the channel's details.
_CHANNEL_EXAMPLES: dict[str, dict[str, Any]] = {
    "phone": {"line": "L1"}, "visit": {"desk": "D1"}, "letter": {"kind": "complaint", "received_date": "2026-11-29"},
    "online": {"platform": "wechat"}, "email": {"subject": "漏水", "message_id": "m-1"},
    "patrol": {"inspector": "p-7", "round_id": "r-1"},
    "iot": {"device_id": "pump-3-level", "reading": 1.82, "unit_of_measure": "m"},
    "call_centre": {"caller_number": "13800138000", "call_id": "c-1", "queue": "q1"},
}
_INBOUND_BASE = {**inbound.INBOUND_EXAMPLE, "unit": "3-1502",
                 "reporter": {"kind": "resident", "name": "张三", "phone": "13900001111"},
                 "reported_at": "2026-11-29T04:00:02+08:00", "category": "repair", "priority": "normal"}


def _inbound_variants() -> list[tuple[str, Any]]:
    schema = inbound._shared(inbound.SubmitRequestSchema)
    out = variants(_INBOUND_BASE, schema)
    for channel, details in _CHANNEL_EXAMPLES.items():
        body = {**_INBOUND_BASE, "channel": channel, "channel_details": details}
        out.append((f"{channel} as given", body))
        out.append((f"{channel} without external_id", {**body, "external_id": None}))
        out.append((f"{channel} from the desk", {**body, "external_id": None, "source": "desk"}))
        for key in details:
            out.append((f"{channel} details without {key}",
                        {**body, "channel_details": {k: v for k, v in details.items() if k != key}}))
            out.extend((f"{channel} details {key}={odd!r:.30}", {**body, "channel_details": {**details, key: odd}})
                       for odd in ODD_VALUES)
        out.append((f"{channel} details with an unknown key", {**body, "channel_details": {**details, "zz": 1}}))
    out.append(("neither unit nor area", {**_INBOUND_BASE, "unit": None, "area": None}))
    out.append(("neither unit nor area, bad details", {**_INBOUND_BASE, "unit": None, "area": None,
                                                       "channel_details": {"device_id": None}}))
    return out


def test_every_inbound_request_loads_as_marshmallow_loads_it_valid_or_broken() -> None:
    schema = inbound._shared(inbound.SubmitRequestSchema)
    assert registry._plan(schema) is not None
    cases = _inbound_variants()
    assert len(cases) > 400
    differing = [name for name, body in cases if outcome(lean_load, schema, body) != outcome(stock, schema, body)]
    assert differing == []
    assert outcome(lambda _s, b: inbound.load_inbound(b), schema, _INBOUND_BASE) == outcome(stock, schema,
                                                                                            _INBOUND_BASE)


def test_producer_check_names_the_field_a_bug_left_out() -> None:
    spec = next(s for s in SPECS if s.event_type == "WorkOrderAssigned")
    data = schema_instance(spec.event_type).load(json.loads(json.dumps(spec.example)))
    del data["technician_id"]
    with pytest.raises(ValidationError) as exc:
        registry.dump_data(spec.event_type, data)
    assert exc.value.messages == {"data": {"technician_id": ["Missing data for required field."]}}


def dumped(dump: Any, schema: Schema, obj: Any) -> tuple[str, Any]:
    try:
        return "ok", dump(schema, copy.deepcopy(obj))
    except Exception as exc:  # a field's conversion refusing a value: the same exception either way
        return "raised", (type(exc).__name__, str(exc))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.event_type}-v{s.version}")
def test_every_event_dumps_as_marshmallow_dumps_it(spec: registry.EventSpec) -> None:
    schema = schema_instance(spec.event_type, spec.version)
    loaded = schema.load(json.loads(json.dumps(spec.example)))  # the Python values a producer hands in
    cases: list[tuple[str, Any]] = [("as given", loaded)]
    for key in sorted(schema.dump_fields):
        cases.append((f"{key} missing", {k: v for k, v in loaded.items() if k != key}))
        cases.extend((f"{key}={odd!r:.30}", {**loaded, key: odd}) for odd in ODD_VALUES)
    cases.append(("a dict method's name as a key", {**loaded, "items": 1}))
    for name, obj in cases:
        assert dumped(lambda s, o: registry.lean_dump(s, o), schema, obj) == \
            dumped(lambda s, o: s.dump(o), schema, obj), name
    assert dumped(lambda s, o: registry.lean_dump(s, o), schema, loaded) == ("ok", schema.dump(loaded))


class _Shaped(Schema):
    a = fields.String(dump_default="by default")
    b = fields.Integer(attribute="bee", data_key="B")
    when = fields.AwareDateTime(dump_default=lambda: "not a date")


class _Computed(_Shaped):
    c = fields.Method("get_c")

    def get_c(self, obj: Any) -> int:
        return 3


def test_defaults_attributes_and_data_keys_dump_as_marshmallow_dumps_them() -> None:
    for schema in (_Shaped(), _Computed()):
        for obj in ({}, {"bee": 1}, {"a": None, "bee": "7"}, {"a": "x", "b": 2, "when": None}):
            assert dumped(lambda s, o: registry.lean_dump(s, o), schema, obj) == \
                dumped(lambda s, o: s.dump(o), schema, obj), (type(schema).__name__, obj)
    assert registry.lean_dump(_Shaped(), {"bee": 1, "when": None}) == {"a": "by default", "B": 1, "when": None}
