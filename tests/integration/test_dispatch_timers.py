"""Dispatch's timers on real Postgres and RabbitMQ, two instances at once: the shift handover (published once per
team and shift, acknowledged by the incoming lead, reported when overdue) and the 18:00 daily check (once per
property and day). The clock is shifted through configuration (CLOCK_OFFSET_SECONDS) to the next shift change or
check time; nothing sleeps out real hours."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kombu import Connection, Queue, binding
from nameko.standalone.rpc import ServiceRpcProxy

from services.common import topology
from services.dispatch.adapters import metrics
from services.dispatch.domain.daily_check import next_check_at
from services.dispatch.domain.roster import DEFAULT_SHIFTS
from services.dispatch.entrypoints.service import DispatchService
from tests.integration.test_dispatch_flow import publish, registered, request_no, work_order
from tests.support import amqp_uri, db, events_in, get_messages, scalar, wait_for

TZ = ZoneInfo("Asia/Shanghai")
TEAMS = 3 * 8  # LY, HY, JH x every department of routing.yml, as the demo roster has them


@pytest.fixture
def observed() -> Iterator[str]:
    """A queue of our own on dispatch.events, to read what dispatch published."""
    name = f"test.dispatch.observer.{uuid.uuid4().hex[:8]}"
    queue = Queue(name, bindings=[binding(topology.exchange("dispatch.events"), routing_key=k) for k in (
        "ShiftHandoverPublished", "ShiftHandoverAcknowledged", "ShiftHandoverUnacknowledged",
        "DailyCheckPublished")], durable=False, auto_delete=False)
    with Connection(amqp_uri()) as conn:
        queue(conn.channel()).declare()
    yield name
    with Connection(amqp_uri()) as conn:
        queue(conn.channel()).delete()


def drain(queue: str, into: list[dict[str, Any]]) -> list[dict[str, Any]]:
    into.extend(events_in(get_messages(queue, 500)))
    return into


def next_shift_start(now: datetime) -> datetime:
    local = now.astimezone(TZ)
    starts = [datetime.combine(local.date() + timedelta(days=d), p.start, tzinfo=TZ)
              for d in (0, 1) for p in DEFAULT_SHIFTS]
    return min(s for s in starts if s > local).astimezone(UTC)


def test_a_handover_is_published_once_per_team_at_the_shift_change_and_acknowledged(run_service: Any,
                                                                                     observed: str) -> None:
    run_service(DispatchService, TIMER_INTERVAL=0.2)
    open_no = request_no("LY")
    publish([registered(open_no)])
    wo = wait_for(lambda: work_order(open_no), what="an unfinished work order to hand over")

    change = next_shift_start(datetime.now(UTC))
    offset = (change + timedelta(seconds=5) - datetime.now(UTC)).total_seconds()
    shift_date = (change.astimezone(TZ)).date()
    for _ in range(2):  # two instances, each would publish on its own
        run_service(DispatchService, TIMER_INTERVAL=0.2, CLOCK_OFFSET_SECONDS=offset, HANDOVER_ACK_MINUTES=0.05)

    def handovers() -> int:
        return int(scalar("dispatch", "SELECT count(*) FROM handovers WHERE shift_date = %s", (shift_date,)))

    wait_for(lambda: handovers() == TEAMS, what="one handover per team")
    seen: list[dict[str, Any]] = []
    wait_for(lambda: len([e for e in drain(observed, seen) if e["event_type"] == "ShiftHandoverUnacknowledged"
                          and e["data"]["handover_id"] in ids(shift_date)]) == TEAMS,
             timeout=30, what="overdue handovers")
    published = [e for e in seen if e["event_type"] == "ShiftHandoverPublished" and e["data"]["shift_date"] ==
                 shift_date.isoformat()]
    assert len(published) == TEAMS and len({e["data"]["handover_id"] for e in published}) == TEAMS
    ly_eng = next(e["data"] for e in published if (e["data"]["property_id"], e["data"]["department"]) ==
                  ("LY", "engineering"))
    assert wo["id"] in {i["work_order_id"] for i in ly_eng["items"]}
    assert ly_eng["incoming_lead"] == ("LY-eng-d1" if ly_eng["incoming_shift"] == "day" else "LY-eng-n1")
    assert handovers() == TEAMS  # still once each after further ticks of both instances

    with ServiceRpcProxy("dispatch", {"AMQP_URI": amqp_uri()}, timeout=20) as rpc:
        refused = rpc.acknowledge_handover(ly_eng["handover_id"], "LY-eng-d2")
        assert refused["status"] == 422 and "by" in refused["errors"]
        answer = rpc.acknowledge_handover(ly_eng["handover_id"], ly_eng["incoming_lead"])
        assert answer["status"] == 200 and answer["data"]["acknowledged_by"] == ly_eng["incoming_lead"]
        again = rpc.acknowledge_handover(ly_eng["handover_id"], ly_eng["incoming_lead"])
        assert again["status"] == 409 and again["errors"]["current_state"] == ["acknowledged"]
    wait_for(lambda: any(e["event_type"] == "ShiftHandoverAcknowledged" for e in drain(observed, seen)),
             what="acknowledged event")

    metrics.COLLECTOR._cached = None
    families = {f.name: f for f in metrics.COLLECTOR.collect()}
    unack = {s.labels["department"]: s.value for s in families["dispatch_handovers_unacknowledged"].samples}
    assert set(unack) == {"engineering", "security", "cleaning", "greening", "customer_service", "finance", "admin",
                          "contractor"}
    assert unack["security"] >= 3
    duty = {s.labels["department"]: s.value for s in families["dispatch_technicians_on_duty"].samples}
    assert duty["engineering"] >= 3 and duty["security"] >= 3
    backlog = {(s.labels["department"], s.labels["state"]): s.value for s in families["dispatch_backlog"].samples}
    assert backlog[("engineering", "assigned")] >= 1 and backlog[("finance", "paused")] == 0


def ids(shift_date: Any) -> set[str]:
    with db("dispatch") as conn:
        return {str(r[0]) for r in conn.execute("SELECT id FROM handovers WHERE shift_date = %s",
                                                (shift_date,)).fetchall()}


def test_the_daily_check_is_published_once_per_property_at_the_check_time(run_service: Any, observed: str) -> None:
    run_service(DispatchService, TIMER_INTERVAL=0.2)
    no = request_no("HY")
    publish([registered(no)])
    wait_for(lambda: work_order(no), what="an open work order")

    at = next_check_at(datetime.now(UTC) + timedelta(days=1))  # a day no other test's instance reaches
    day = at.astimezone(TZ).date()
    offset = (at + timedelta(seconds=3) - datetime.now(UTC)).total_seconds()
    for _ in range(2):
        run_service(DispatchService, TIMER_INTERVAL=0.2, CLOCK_OFFSET_SECONDS=offset)

    wait_for(lambda: int(scalar("dispatch", "SELECT count(*) FROM daily_checks WHERE day = %s", (day,))) == 3,
             what="one check per property")
    seen: list[dict[str, Any]] = []
    wait_for(lambda: len([e for e in drain(observed, seen) if e["event_type"] == "DailyCheckPublished"
                          and e["data"]["day"] == day.isoformat()]) >= 3, what="three reports")
    reports = {e["data"]["property_id"]: e["data"] for e in seen
               if e["event_type"] == "DailyCheckPublished" and e["data"]["day"] == day.isoformat()}
    assert set(reports) == {"LY", "HY", "JH"}
    assert len([e for e in seen if e["event_type"] == "DailyCheckPublished"
                and e["data"]["day"] == day.isoformat()]) == 3
    eng = next(d for d in reports["HY"]["departments"] if d["department"] == "engineering")
    assert eng["open"] >= 1 and no in {o["request_no"] for o in eng["open_orders"]}
    assert reports["HY"]["totals"]["open"] >= eng["open"]

    metrics.COLLECTOR._cached = None
    families = {f.name: f for f in metrics.COLLECTOR.collect()}
    check_open = {s.labels["department"]: s.value for s in families["dispatch_daily_check_open"].samples}
    assert check_open["engineering"] >= 1
