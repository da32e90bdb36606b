"""Consumer lanes (services.common.nameko_ext): which batch a message joins, and which lock and counter rows a
lane's batch owns."""
from __future__ import annotations

from collections import Counter

from services.common.nameko_ext import batch_lock_key, lane_of


def test_one_requests_events_always_share_a_lane_so_they_apply_in_order() -> None:
    events = [{"request_no": "LY-20261129-000042", "event_type": t}
              for t in ("RequestRegistered", "WorkOrderAssigned", "TechnicianArrived", "WorkOrderResolved")]
    assert len({lane_of(e, 2) for e in events}) == 1


def test_requests_spread_over_the_lanes() -> None:
    lanes = Counter(lane_of({"request_no": f"HY-20261129-{i:06d}"}, 2) for i in range(1000))
    assert set(lanes) == {0, 1} and min(lanes.values()) > 400


def test_a_single_lane_takes_everything_and_keeps_the_queues_own_lock() -> None:
    assert {lane_of({"request_no": f"JH-20261129-{i:06d}"}, 1) for i in range(50)} == {0}
    assert batch_lock_key("dispatch.events") == batch_lock_key("dispatch.events", 0, 1)


def test_each_lane_has_its_own_lock_and_the_lane_count_is_part_of_it() -> None:
    keys = {batch_lock_key("escalation.events", lane, 2) for lane in (0, 1)}
    assert len(keys) == 2 and batch_lock_key("escalation.events") not in keys
    # An instance started with another lane count must not share a lock with differently partitioned batches.
    assert batch_lock_key("escalation.events", 0, 3) not in keys
