"""Every event intake's domain defines has a schema in the catalogue, and the other way round."""
from __future__ import annotations

import dataclasses
import inspect

from services.common.contract.registry import all_specs, spec_for
from services.common.domain import Event
from services.intake.domain import events as ev


def domain_events() -> dict[str, type]:
    return {name: cls for name, cls in inspect.getmembers(ev, inspect.isclass)
            if issubclass(cls, Event) and cls is not Event}


def test_every_intake_domain_event_has_a_schema_and_every_schema_an_event():
    published = {s.event_type for s in all_specs() if s.producer == "intake"}
    assert published == set(domain_events())


def test_every_schema_field_is_a_field_of_the_domain_event():
    for name, cls in domain_events().items():
        schema_fields = set(spec_for(name).schema().fields)
        event_fields = {f.name for f in dataclasses.fields(cls)}
        assert schema_fields == event_fields, name


def test_intake_examples_load():
    for spec in all_specs():
        if spec.producer == "intake":
            spec.schema().load(spec.example)
