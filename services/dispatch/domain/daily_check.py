"""The assistant's daily completion check (每日18:00对当日的派工完成情况作检查), per department.

Counted for the local day of the check: `done` = resolved during the day (awaiting or past the resident's
acceptance); `open` = unfinished work that was created during the day or carried over from earlier days (an old
order does not vanish from the check because it is old); `overdue` = open ones past their resolution deadline;
`cancelled` = cancelled during the day.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from collections.abc import Iterable
from uuid import UUID
from zoneinfo import ZoneInfo

from services.common.domain import utc
from services.dispatch.domain import events as ev
from services.dispatch.domain.model import WorkOrder

DEFAULT_CHECK_TIME = time(18, 0)
DEFAULT_TZ = "Asia/Shanghai"


@dataclass(frozen=True)
class DepartmentCheck:
    department: str
    done: int
    open: int
    overdue: int
    cancelled: int
    open_orders: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"department": self.department, "done": self.done, "open": self.open, "overdue": self.overdue,
                "cancelled": self.cancelled, "open_orders": list(self.open_orders)}


@dataclass(frozen=True)
class DailyCheckReport:
    property_id: str
    day: date
    generated_at: datetime
    departments: tuple[DepartmentCheck, ...]

    def totals(self) -> dict[str, int]:
        return {k: sum(getattr(d, k) for d in self.departments) for k in ("done", "open", "overdue", "cancelled")}

    def to_event(self, report_id: UUID) -> ev.DailyCheckPublished:
        return ev.DailyCheckPublished(report_id=report_id, property_id=self.property_id, day=self.day.isoformat(),
                                      generated_at=self.generated_at, totals=self.totals(),
                                      departments=[d.to_dict() for d in self.departments])


def next_check_at(now: datetime, *, check_time: time = DEFAULT_CHECK_TIME, tz: str = DEFAULT_TZ) -> datetime:
    """The next check instant strictly after `now`, in UTC."""
    zone = ZoneInfo(tz)
    local = utc(now).astimezone(zone)
    candidate = datetime.combine(local.date(), check_time, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), check_time, tzinfo=zone)
    return utc(candidate)


def _open_item(wo: WorkOrder, now: datetime) -> dict[str, Any]:
    return {"work_order_id": wo.id, "request_no": wo.request_no, "state": wo.state,
            "technician_id": wo.technician_id, "priority": wo.priority, "due_at": wo.due_at,
            "overdue": wo.due_at is not None and now >= wo.due_at}


def daily_check(orders: Iterable[WorkOrder], *, property_id: str, now: datetime,
                tz: str = DEFAULT_TZ) -> DailyCheckReport:
    """The report for the local day containing `now` (the caller runs it at the configured check time)."""
    now = utc(now)
    zone = ZoneInfo(tz)
    day = now.astimezone(zone).date()
    day_start = utc(datetime.combine(day, time(0, 0), tzinfo=zone))
    day_end = day_start + timedelta(days=1)

    def today(t: datetime | None) -> bool:
        return t is not None and day_start <= t < day_end

    by_dept: dict[str, list[WorkOrder]] = {}
    for wo in orders:
        if wo.property_id == property_id and wo.created_at <= now:
            by_dept.setdefault(wo.department, []).append(wo)

    checks = []
    for dept in sorted(by_dept):
        wos = by_dept[dept]
        done = [w for w in wos if today(w.resolved_at) and not w.is_unfinished and w.state != "cancelled"]
        open_ = sorted((w for w in wos if w.is_unfinished), key=lambda w: (w.due_at or day_end, w.request_no))
        cancelled = [w for w in wos if w.state == "cancelled" and today(w.closed_at)]
        items = tuple(_open_item(w, now) for w in open_)
        if not (done or open_ or cancelled):
            continue
        checks.append(DepartmentCheck(dept, len(done), len(open_), sum(1 for i in items if i["overdue"]),
                                      len(cancelled), items))
    return DailyCheckReport(property_id, day, now, tuple(checks))
