"""Two dispatch instances consume the same queue: 500 registered requests (plus redeliveries) make exactly 500 work
orders, each assigned once, and the technicians' load column equals the work they hold (issue 4, item 9)."""
from __future__ import annotations

import time
import uuid
from typing import Any

from services.common import metrics
from services.dispatch.entrypoints.service import DispatchService
from tests.integration.test_dispatch_flow import HOLDING, loads_are_exact, publish, registered
from tests.support import db, scalar, wait_for

COUNT = 500


def test_two_instances_assign_500_requests_once_each_with_exact_loads(run_service: Any) -> None:
    first = run_service(DispatchService, TIMER_INTERVAL=0.2)
    second = run_service(DispatchService, TIMER_INTERVAL=0.2)
    assert first is not second
    run = uuid.uuid4().hex[:6].upper()
    redone = metrics.BATCHES_REDONE.labels("dispatch")._value.get()
    props = ("LY", "HY", "JH")
    envelopes = [registered(f"{props[i % 3]}-TI{run}-{i:06d}", building=str(1 + i % 6)) for i in range(COUNT)]
    started = time.monotonic()
    publish(envelopes + envelopes[:50])  # the first 50 delivered twice
    published = time.monotonic() - started

    def made() -> int:
        return int(scalar("dispatch", "SELECT count(*) FROM work_orders WHERE request_no LIKE %s", (f"%-TI{run}-%",)))

    wait_for(lambda: made() == COUNT, timeout=120, interval=0.5, what="500 work orders")
    elapsed = time.monotonic() - started
    wait_for(lambda: int(scalar("dispatch", "SELECT count(*) FROM inbox WHERE event_id = ANY(%s)",
                                ([e["event_id"] for e in envelopes],))) == COUNT, timeout=60, what="all consumed")
    with db("dispatch") as conn:
        per_request = conn.execute(
            "SELECT request_no, count(*) FILTER (WHERE event_type = 'WorkOrderAssigned'), "
            "count(*) FILTER (WHERE event_type = 'WorkOrderCreated') FROM timeline WHERE request_no LIKE %s "
            "GROUP BY request_no", (f"%-TI{run}-%",)).fetchall()
        states = dict(conn.execute("SELECT state, count(*) FROM work_orders WHERE request_no LIKE %s GROUP BY 1",
                                   (f"%-TI{run}-%",)).fetchall())
        held = conn.execute(f"SELECT technician_id, count(*) FROM work_orders WHERE state IN {HOLDING} "
                            "AND technician_id IS NOT NULL GROUP BY 1").fetchall()
        loads = dict(conn.execute("SELECT technician_id, load FROM technicians").fetchall())
    assert len(per_request) == COUNT
    assert all(assigned == 1 and created == 1 for _, assigned, created in per_request)
    assert states == {"assigned": COUNT}
    assert made() == COUNT
    assert loads_are_exact()
    assert all(loads[tech] == n for tech, n in held)  # per technician, not only in sum
    # Every batch stayed fast (loads counted in memory, written once), redeliveries included.
    assert metrics.BATCHES_REDONE.labels("dispatch")._value.get() == redone
    print(f"two instances: {COUNT} requests routed and assigned in {elapsed:.1f}s (publishing took {published:.1f}s)")
