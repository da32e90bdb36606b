"""The domain's events and the contract's schemas must agree field for field."""
from __future__ import annotations

import dataclasses
import inspect
from datetime import date, timedelta
from uuid import uuid4

import pytest
from dispatch_helpers import DAY, make_order

from services.common.contract.registry import all_specs, dump_data, spec_for
from services.dispatch.domain import events as ev
from services.dispatch.domain.daily_check import daily_check
from services.dispatch.domain.fees import MaterialUse, PriceList
from services.dispatch.domain.handover import ShiftHandover

EVENT_CLASSES = [c for _, c in inspect.getmembers(ev, inspect.isclass)
                 if issubclass(c, ev.Event) and c not in (ev.Event, ev.WorkOrderEvent)]


def test_every_domain_event_has_a_dispatch_schema():
    dispatch_types = {s.event_type for s in all_specs() if s.producer == "dispatch"}
    assert {c.__name__ for c in EVENT_CLASSES} == dispatch_types


@pytest.mark.parametrize("spec", [s for s in all_specs() if s.producer == "dispatch"], ids=lambda s: s.event_type)
def test_every_example_loads_and_names_every_domain_field(spec):
    spec.schema().load(spec.example)
    cls = getattr(ev, spec.event_type)
    assert {f.name for f in dataclasses.fields(cls)} <= set(spec.schema().fields)


def _all_events():
    prices = PriceList.from_config({"items": [{"code": "pipe_joint", "name": "更换水管接头", "price_cents": 4000}]})
    t = lambda m: DAY + timedelta(minutes=m)  # noqa: E731
    wo = make_order(paid=True, due_at=t(60))
    wo.issue_quote(prices.quote([("pipe_joint", 1)]), by="agent-007", now=t(0))
    wo.record_consent(method="phone", by="agent-007", now=t(0))
    wo.offer(["tech-li", "tech-ma"], by="system", now=t(0), accept_by=t(5))
    wo.time_out(now=t(5))
    wo.assign("tech-li", strategy="least_loaded", reason="least_loaded", by="system", now=t(5), accept_by=t(10))
    wo.decline("tech-li", reason="忙", now=t(6))
    wo.assign("tech-ma", strategy="least_loaded", reason="least_loaded", by="system", now=t(6), accept_by=t(11))
    wo.accept("tech-ma", now=t(7))
    wo.book_appointment(t(90), by="tech-ma", now=t(8))
    wo.resume(by="tech-ma", now=t(90))
    wo.depart(by="tech-ma", now=t(91))
    wo.arrive(by="tech-ma", now=t(95))
    wo.take_temporary_measure("关阀", by="tech-ma", now=t(96))
    wo.resolve("换接头", by="tech-ma", now=t(100), materials=[MaterialUse("接头", 1)])
    wo.resident_reject(reason="渗水", by="tech-ma", now=t(101))
    wo.arrive(by="tech-ma", now=t(102))
    wo.resolve("重做", by="tech-ma", now=t(110))
    wo.resident_accept(by="tech-ma", now=t(111))
    wo.close(by="agent-007", now=t(112))
    other = make_order(wo_id=uuid4(), due_at=t(30))
    other.offer(["tech-li"], by="system", now=t(0))
    other.grab("tech-li", now=t(1))
    other.cancel(reason="重复", by="agent-007", now=t(2))
    ho, published = ShiftHandover.publish(id=uuid4(), property_id="LY", department="engineering",
                                          orders=[make_order(wo_id=uuid4(), due_at=t(30))],
                                          incoming_shift="night", shift_date=date(2026, 11, 29), now=t(40))
    overdue = ho.check_overdue(now=t(80))
    ack = ho.acknowledge(by="tech-wang", now=t(81))
    daily = daily_check([wo, other, make_order(wo_id=uuid4(), due_at=t(1))], property_id="LY",
                        now=t(480)).to_event(uuid4())
    return wo.pull_events() + other.pull_events() + [published, overdue, ack, daily]


def test_every_event_the_domain_raises_dumps_and_loads_through_its_schema():
    events = _all_events()
    seen = set()
    for event in events:
        data = dump_data(event.event_type, event.to_dict())
        spec_for(event.event_type).schema().load(data)
        seen.add(event.event_type)
    assert seen == {c.__name__ for c in EVENT_CLASSES}


def test_no_event_carries_a_phone_or_name_field():
    for cls in EVENT_CLASSES:
        names = {f.name for f in dataclasses.fields(cls)}
        assert not names & {"phone", "reporter_phone", "name", "reporter_name", "resident_name"}
