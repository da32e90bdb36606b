"""A complaint registered on 2026-12-30 needs working days of 2027, which the calendar library does not know:
through the service, without the 2027 data the clock falls back (marked on the clock, the event and the metric),
and with the year loaded by ops (API or CLI) it uses the loaded days."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
import yaml
from nameko.standalone.rpc import ServiceRpcProxy
from prometheus_client import REGISTRY, generate_latest

from services.escalation import calendar_load
from services.escalation.entrypoints.service import EscalationService
from tests.integration.test_escalation_helpers import clocks, envelope, new_request_no, publish, timeline
from tests.support import amqp_uri, db_url, wait_for

SHANGHAI = ZoneInfo("Asia/Shanghai")
REGISTERED = datetime(2026, 12, 30, 10, 0, tzinfo=SHANGHAI)
# Test data for 2027, not the State Council's notice: New Year's Day off, Saturday 2 January a make-up working day.
YEAR_2027 = {"year": 2027, "holidays": ["2027-01-01"], "workdays": ["2027-01-02"], "source": "test data"}


@pytest.fixture
def rpc(run_service: Any) -> Iterator[Any]:
    # The unscaled default policy: working-day targets are looked up in the calendar.
    run_service(EscalationService, ESCALATION_POLICY="services/escalation/policy.yml", DB_POOL_SIZE=4)
    with ServiceRpcProxy("escalation", {"AMQP_URI": amqp_uri()}) as proxy:
        yield proxy


def complaint() -> str:
    no = new_request_no()
    publish(envelope("RequestRegistered", no, property_id="LY", unit="3-1502", channel="phone",
                     category="complaint", subcategory="service_attitude", priority="normal", emergency=False,
                     registered_at=REGISTERED))
    wait_for(lambda: "complaint_reply" in clocks(no), what="complaint reply clock")
    return no


def fallback_metric() -> float:
    for line in generate_latest(REGISTRY).decode().splitlines():
        if line.startswith('calendar_fallback_clocks_total{clock="complaint_reply"}'):
            return float(line.split()[-1])
    raise AssertionError("calendar_fallback_clocks_total{clock=complaint_reply} not exported")


def test_a_complaint_on_2026_12_30_with_and_without_the_2027_data(rpc: Any, tmp_path: Path) -> None:
    before = fallback_metric()
    without = complaint()
    clock = clocks(without)["complaint_reply"]
    # Fallback (weekdays minus statutory holidays): 31 Dec, 4 Jan, 5 Jan -> 5 January 10:00 Shanghai.
    assert clock["calendar_fallback"] is True
    assert clock["deadline"].astimezone(SHANGHAI) == datetime(2027, 1, 5, 10, 0, tzinfo=SHANGHAI)
    started = next(d for t, d in timeline(without) if t == "ClockStarted" and d["clock"] == "complaint_reply")
    assert started["calendar_fallback"] is True
    view = rpc.request_clocks(without)["data"]["clocks"]
    assert next(c for c in view if c["clock"] == "complaint_reply")["calendar_fallback"] is True
    assert fallback_metric() == before + 1

    bad = rpc.load_calendar_year({**YEAR_2027, "workdays": ["2027-01-04"]}, "ops-test")
    assert bad["status"] == 422 and "workdays" in bad["errors"]  # a make-up day must be a weekend day
    loaded = rpc.load_calendar_year(YEAR_2027, "ops-test")
    assert loaded["status"] == 201 and loaded["data"]["version"] == 1
    assert rpc.calendar_years()["data"]["years"][-1]["year"] == 2027

    with_data = complaint()
    clock = clocks(with_data)["complaint_reply"]
    # Loaded: 31 Dec, Sat 2 Jan (make-up), Mon 4 Jan -> 4 January 10:00 Shanghai; no fallback.
    assert clock["calendar_fallback"] is False
    assert clock["deadline"].astimezone(SHANGHAI) == datetime(2027, 1, 4, 10, 0, tzinfo=SHANGHAI)
    assert fallback_metric() == before + 1

    # Ops' command line loads a new version of the year from a file, validated the same way.
    path = tmp_path / "2027.yml"
    path.write_text(yaml.safe_dump({**YEAR_2027, "workdays": []}), encoding="utf-8")
    assert calendar_load.main([str(path), "--by", "ops-cli", "--database-url", db_url("escalation")]) == 0
    path.write_text(yaml.safe_dump({**YEAR_2027, "holidays": ["2026-12-31"]}), encoding="utf-8")
    assert calendar_load.main([str(path), "--database-url", db_url("escalation")]) == 2
    versions = [y["version"] for y in rpc.calendar_years()["data"]["years"] if y["year"] == 2027]
    assert versions == [1, 2]
    third = complaint()
    # Version 2 has no make-up day: 31 Dec, 4 Jan, 5 Jan.
    assert clocks(third)["complaint_reply"]["deadline"].astimezone(SHANGHAI) == datetime(2027, 1, 5, 10, 0,
                                                                                          tzinfo=SHANGHAI)
    assert clocks(third)["complaint_reply"]["calendar_fallback"] is False
