"""The event catalogue (docs/asyncapi.yaml) is current and every example in it is valid (issue 2, item 4)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from marshmallow import ValidationError

from services.common import topology
from services.common.contract.catalogue import render
from services.common.contract.inbound import load_inbound
from services.common.contract.registry import all_specs, load_envelope

CATALOGUE = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def test_the_committed_catalogue_is_what_the_code_generates() -> None:
    assert CATALOGUE.read_text(encoding="utf-8") == render(), \
        "docs/asyncapi.yaml is stale: python -m services.common.contract.catalogue > docs/asyncapi.yaml"


def _messages() -> dict:
    return yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))["components"]["messages"]


def test_every_event_example_in_the_catalogue_loads_with_the_codes_schemas() -> None:
    messages = _messages()
    events = {k: v for k, v in messages.items() if k != "SubmitRequest"}
    assert len(events) == len(all_specs())
    for name, message in events.items():
        for example in message["examples"]:
            envelope = load_envelope(example["payload"])
            assert envelope["event_type"] == message["name"], name


def test_the_inbound_example_in_the_catalogue_is_a_valid_submission() -> None:
    for example in _messages()["SubmitRequest"]["examples"]:
        assert load_inbound(example["payload"])["external_id"]


def test_every_field_of_every_schema_is_listed_in_the_catalogue() -> None:
    messages = _messages()
    for spec in all_specs():
        listed = messages[f"{spec.event_type}V{spec.version}"]["payload"]["properties"]["data"]["properties"]
        assert set(listed) == {f.data_key or n for n, f in spec.schema().fields.items()}, spec.event_type


def test_a_tampered_example_is_refused_naming_the_field() -> None:
    example = dict(_messages()["WorkOrderAssignedV1"]["examples"][0]["payload"])
    example["data"] = dict(example["data"], assigned_at="yesterday")
    with pytest.raises(ValidationError) as err:
        load_envelope(example)
    assert "assigned_at" in err.value.messages["data"]


def test_every_subscribed_event_type_exists_in_the_contract() -> None:
    known = {(s.producer, s.event_type) for s in all_specs()}
    for consumer, subs in topology.SUBSCRIPTIONS.items():
        for producer, types in subs.items():
            for t in types:
                assert (producer, t) in known, f"{consumer} subscribes to unknown {producer}.{t}"
