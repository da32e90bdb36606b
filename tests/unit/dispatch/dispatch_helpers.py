from __future__ import annotations

from datetime import datetime, UTC
from typing import Any
from uuid import UUID

import pytest

from services.dispatch.domain.model import WorkOrder
from services.dispatch.domain.roster import Roster
from services.dispatch.domain.routing import Route

# 2026-11-29 10:00 Asia/Shanghai (day shift) and 23:00 (night shift).
DAY = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
NIGHT = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)
WO_ID = UUID("3f1c1d2e-8a8b-4e57-9a53-6f1f5a2b9c10")


def roster_data() -> dict:
    return {
        "technicians": [
            {"id": "tech-li", "department": "engineering", "skills": ["plumbing", "general_repair"], "zones": ["3"],
             "load": 2},
            {"id": "tech-zhou", "department": "engineering", "skills": ["plumbing"], "zones": ["3", "5"], "load": 1},
            {"id": "tech-ma", "department": "engineering", "skills": ["plumbing"], "zones": [], "load": 1},
            {"id": "tech-sun", "department": "engineering", "skills": ["electrical"], "zones": ["3"], "load": 0},
            {"id": "tech-wang", "department": "engineering", "skills": ["plumbing", "electrical"], "load": 0},
            {"id": "lead-zhao", "department": "engineering", "skills": []},
            {"id": "sec-qian", "department": "security", "skills": ["patrol"]},
            {"id": "sec-lead-hu", "department": "security", "skills": ["patrol"]},
            {"id": "sec-night-xu", "department": "security", "skills": ["patrol"]},
            {"id": "cs-lead-guo", "department": "customer_service"},
        ],
        "calendar": [
            {"technician_id": "tech-li", "shift": "day", "date": "2026-11-29"},
            {"technician_id": "tech-zhou", "shift": "day", "date": "2026-11-29"},
            {"technician_id": "tech-ma", "shift": "day", "date": "2026-11-29"},
            {"technician_id": "tech-sun", "shift": "day", "date": "2026-11-29"},
            {"technician_id": "sec-qian", "shift": "day", "date": "2026-11-29"},
            {"technician_id": "sec-lead-hu", "shift": "day", "date": "2026-11-29", "lead": True},
            {"technician_id": "sec-night-xu", "shift": "night", "date": "2026-11-29", "lead": True},
        ],
        "on_call": {"engineering": "tech-wang"},
        "leads": {"engineering": "lead-zhao", "customer_service": "cs-lead-guo", "security": "sec-lead-hu"},
    }


@pytest.fixture
def roster() -> Roster:
    return Roster.from_config(roster_data())


def make_order(*, unit: str | None = "3-1502", paid: bool = False, route: Route | None = None,
               now: datetime = DAY, due_at: datetime | None = None, property_id: str = "LY",
               request_no: str = "LY-20261129-000042", wo_id: UUID = WO_ID) -> WorkOrder:
    wo = WorkOrder.create(
        id=wo_id, request_no=request_no, property_id=property_id,
        route=route or Route("engineering", "technician", "plumbing", "repair/plumbing/*"),
        category="repair", subcategory="plumbing", priority="urgent", building="3", unit=unit,
        area=None if unit else "3栋大堂", paid_service=paid, now=now, due_at=due_at,
    )
    return wo





def last_event(wo: WorkOrder) -> Any:
    """The latest event, typed loosely so tests can read its fields."""
    return wo.events[-1]
