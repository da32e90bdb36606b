"""Deliveries escalation has nothing to record for cost no transaction (handlers.handle_event)."""
from __future__ import annotations

from datetime import datetime, UTC
from typing import Any

import pytest

from services.escalation.service_layer.handlers import Runtime, handle_event


class NoTransaction:
    def __enter__(self) -> Any:
        raise AssertionError("this delivery should not open a transaction")

    def __exit__(self, *exc: object) -> None:
        return None


def envelope(event_type: str, **data: Any) -> dict[str, Any]:
    return {"event_id": "5b0f7a52-1c9e-4f0e-9a57-0c3f2f1d0001", "event_type": event_type,
            "occurred_at": datetime(2026, 11, 29, 8, tzinfo=UTC), "data": {"request_no": "LY-20261129-000001", **data}}


def test_a_work_order_no_return_visit_raised_is_ignored_without_a_transaction() -> None:
    assert handle_event(NoTransaction(), Runtime(), envelope("WorkOrderCreated")) == "ignored"  # type: ignore[arg-type]


@pytest.mark.parametrize("event", [envelope("WorkOrderCreated", follow_up_of="LY-20261120-000007"),
                                   envelope("WorkOrderAssigned", department="engineering",
                                            assigned_at="2026-11-29T08:00:00+00:00")])
def test_a_follow_up_work_order_or_a_fact_still_opens_a_transaction(event: dict[str, Any]) -> None:
    with pytest.raises(AssertionError, match="should not open"):
        handle_event(NoTransaction(), Runtime(), event)  # type: ignore[arg-type]


def test_a_lanes_batch_writes_its_own_counter_shard_and_other_transactions_the_rest() -> None:
    from services.escalation.adapters import repository as repo

    class Recorder:
        lane: int | None = None

        def __init__(self) -> None:
            self.params: list[Any] = []

        def execute(self, sql: str, params: Any = None) -> None:
            self.params.append(params)

    def shard_used(lane: int | None) -> int:
        uow = Recorder()
        uow.lane = lane
        repo.bump_counters(uow, {("on_site", "met", "repair", "urgent", "phone", "LY"): 1}, {}, {}, {})  # type: ignore[arg-type]
        import json
        return int(json.loads(uow.params[0][0])[0]["shard"])

    assert shard_used(0) == 0 and shard_used(1) == 1
    assert all(repo.LANE_SHARDS <= shard_used(None) < repo.SHARDS for _ in range(50))


def _raw(event_type: str, **data: Any) -> dict[str, Any]:
    from services.common.contract.registry import spec_for

    spec = spec_for(event_type)
    return {"event_id": "5b0f7a52-1c9e-4f0e-9a57-0c3f2f1d0002", "event_type": event_type, "version": 1,
            "producer": spec.producer, "occurred_at": "2026-11-29T08:00:00+00:00", "correlation_id": "c-1",
            "request_no": "LY-20261129-000001", "data": {**spec.example, **data}}


def test_a_work_order_no_return_visit_raised_is_not_loaded_only_its_envelope_checked() -> None:
    from marshmallow import ValidationError

    from services.common.contract.registry import loader_skipping
    from services.escalation.service_layer.handlers import concerns_us

    load = loader_skipping(concerns_us)
    assert load(_raw("WorkOrderCreated", follow_up_of=None, created_at="not a time")) is None
    with pytest.raises(ValidationError, match="occurred_at"):
        load({**_raw("WorkOrderCreated", follow_up_of=None), "occurred_at": "yesterday"})


@pytest.mark.parametrize("body", [
    _raw("WorkOrderCreated", follow_up_of="8d3b8a4e-0a59-4d2e-9d55-6d1c7b0e0001"),
    _raw("WorkOrderAssigned"),  # moves clocks and carries facts
    _raw("RequestRegistered"),
])
def test_an_event_that_can_change_something_is_loaded_in_full(body: dict[str, Any]) -> None:
    from marshmallow import ValidationError

    from services.common.contract.registry import loader_skipping
    from services.escalation.service_layer.handlers import concerns_us

    load = loader_skipping(concerns_us)
    loaded = load(body)
    assert loaded is not None and loaded["event_type"] == body["event_type"]
    broken = {**body, "data": {**body["data"], "request_no": 12345}}
    with pytest.raises(ValidationError, match="request_no"):
        load(broken)
