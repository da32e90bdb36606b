"""Working-day arithmetic on the official Chinese calendar (Asia/Shanghai; instants stored in UTC).

Precedence for each day:
1. year data loaded by ops (`YearCalendar`: the holidays and make-up working days (调休) of a year);
2. the maintained `chinese-calendar` package (it has data for 2004-2026 and raises NotImplementedError beyond);
3. the documented fallback rule (`FALLBACK_RULE`), and the answer is then marked `fallback_used=True` so the
   caller can mark the clock, emit an event and count it. We never crash and never silently guess.

Fallback rules:
- ``weekends_and_statutory`` (default): Monday-Friday are working days, except the statutory public holidays the
  `holidays` package computes for China; no make-up working days are assumed (they are announced, not derived).
  This errs on the side of a later deadline, never an earlier one than the lunar holidays allow.
- ``weekdays``: Monday-Friday are working days, nothing else is known.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, UTC
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar

from services.common.domain import DomainError, utc

SHANGHAI = ZoneInfo("Asia/Shanghai")
FALLBACK_RULES = ("weekends_and_statutory", "weekdays")
FALLBACK_RULE = "weekends_and_statutory"


def _parse_day(value: Any, field_name: str) -> date:
    if isinstance(value, datetime):
        raise DomainError("a calendar day is a date, not an instant", field=field_name, code="invalid_calendar")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise DomainError(f"not an ISO date: {value!r}", field=field_name, code="invalid_calendar")


@dataclass(frozen=True)
class YearCalendar:
    """The official schedule of one year as loaded by ops: holidays and make-up working days (调休).

    Every other day follows the week: Monday-Friday working, Saturday and Sunday off.
    """

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]
    version: int = 1
    source: str = "ops"

    def __post_init__(self) -> None:
        if not 1900 <= self.year <= 2200:
            raise DomainError(f"year {self.year} out of range", field="year", code="invalid_calendar")
        if self.version < 1:
            raise DomainError("version must be >= 1", field="version", code="invalid_calendar")
        for name, days in (("holidays", self.holidays), ("workdays", self.workdays)):
            stray = sorted(d for d in days if d.year != self.year)
            if stray:
                raise DomainError(f"{name} holds days outside {self.year}: {stray[0].isoformat()}",
                                  field=name, code="invalid_calendar")
        both = sorted(self.holidays & self.workdays)
        if both:
            raise DomainError(f"{both[0].isoformat()} is both a holiday and a make-up working day",
                              field="workdays", code="invalid_calendar")
        # A make-up working day on a weekday changes nothing, so it is almost certainly a typo in the file.
        weekday_makeups = sorted(d for d in self.workdays if d.weekday() < 5)
        if weekday_makeups:
            raise DomainError(f"make-up working day {weekday_makeups[0].isoformat()} is not a weekend day",
                              field="workdays", code="invalid_calendar")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> YearCalendar:
        if not isinstance(d, Mapping):
            raise DomainError("year calendar must be an object", field="calendar", code="invalid_calendar")
        unknown = set(d) - {"year", "holidays", "workdays", "version", "source"}
        if unknown:
            name = sorted(unknown)[0]
            raise DomainError(f"unknown field {name!r}", field=name, code="invalid_calendar")
        year = d.get("year")
        if not isinstance(year, int) or isinstance(year, bool):
            raise DomainError("year must be an integer", field="year", code="invalid_calendar")
        version = d.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool):
            raise DomainError("version must be an integer", field="version", code="invalid_calendar")
        lists = {}
        for name in ("holidays", "workdays"):
            raw = d.get(name, [])
            if not isinstance(raw, list):
                raise DomainError(f"{name} must be a list of ISO dates", field=name, code="invalid_calendar")
            lists[name] = frozenset(_parse_day(v, name) for v in raw)
        return cls(year=year, holidays=lists["holidays"], workdays=lists["workdays"], version=version,
                   source=str(d.get("source", "ops")))

    def to_dict(self) -> dict[str, Any]:
        return {"year": self.year, "version": self.version, "source": self.source,
                "holidays": [d.isoformat() for d in sorted(self.holidays)],
                "workdays": [d.isoformat() for d in sorted(self.workdays)]}

    def is_working_day(self, day: date) -> bool:
        if day in self.holidays:
            return False
        if day in self.workdays:
            return True
        return day.weekday() < 5


@dataclass(frozen=True)
class DayAnswer:
    working: bool
    fallback_used: bool
    source: str  # "ops", "chinese_calendar" or "fallback:<rule>"


@dataclass(frozen=True)
class WorkingCalendar:
    """Answers "is this a working day" and adds working days. Immutable: loading a year returns a new one."""

    years: Mapping[int, YearCalendar] = field(default_factory=dict)
    fallback_rule: str = FALLBACK_RULE

    def __post_init__(self) -> None:
        if self.fallback_rule not in FALLBACK_RULES:
            raise DomainError(f"unknown fallback rule {self.fallback_rule!r}", field="fallback_rule",
                              code="invalid_calendar")

    @classmethod
    def with_years(cls, years: Iterable[YearCalendar], fallback_rule: str = FALLBACK_RULE) -> WorkingCalendar:
        """Keeps, for each year, the highest version given (ops may load several versions of one year)."""
        chosen: dict[int, YearCalendar] = {}
        for y in years:
            if y.year not in chosen or y.version > chosen[y.year].version:
                chosen[y.year] = y
        return cls(years=chosen, fallback_rule=fallback_rule)

    def load(self, year: YearCalendar) -> WorkingCalendar:
        current = self.years.get(year.year)
        if current is not None and year.version <= current.version:
            raise DomainError(f"year {year.year} already loaded at version {current.version}",
                              field="version", code="stale_calendar_version")
        return WorkingCalendar(years={**self.years, year.year: year}, fallback_rule=self.fallback_rule)

    def has_data_for(self, year: int) -> bool:
        if year in self.years:
            return True
        try:
            chinese_calendar.is_workday(date(year, 6, 1))
        except NotImplementedError:
            return False
        return True

    def day(self, day: date) -> DayAnswer:
        loaded = self.years.get(day.year)
        if loaded is not None:
            return DayAnswer(loaded.is_working_day(day), False, "ops")
        try:
            return DayAnswer(bool(chinese_calendar.is_workday(day)), False, "chinese_calendar")
        except NotImplementedError:
            return DayAnswer(self._fallback(day), True, f"fallback:{self.fallback_rule}")

    def _fallback(self, day: date) -> bool:
        if day.weekday() >= 5:
            return False
        if self.fallback_rule == "weekends_and_statutory":
            return day not in _statutory_holidays(day.year)
        return True

    def add_working_days(self, start: datetime, n: int) -> tuple[datetime, bool]:
        """The instant `n` working days after `start`, at the same local (Shanghai) time of day.

        A start on a non-working day counts from 00:00 of the next working day, so that one working day is
        always one whole working day. Returns (deadline in UTC, fallback_used).
        """
        if n < 0:
            raise DomainError("cannot add a negative number of working days", field="working_days")
        local = utc(start).astimezone(SHANGHAI)
        day = local.date()
        clock_time = local.timetz().replace(tzinfo=None)
        fallback = False
        answer = self.day(day)
        fallback |= answer.fallback_used
        if not answer.working:
            while True:
                day += timedelta(days=1)
                answer = self.day(day)
                fallback |= answer.fallback_used
                if answer.working:
                    break
            clock_time = time(0, 0)
        counted = 0
        while counted < n:
            day += timedelta(days=1)
            answer = self.day(day)
            fallback |= answer.fallback_used
            if answer.working:
                counted += 1
        deadline = datetime.combine(day, clock_time, tzinfo=SHANGHAI).astimezone(UTC)
        return deadline, fallback

    def working_days_capped(self, start: datetime, working_days: int,
                            max_calendar_days: int | None) -> tuple[datetime, bool]:
        """min(`working_days` working days, `max_calendar_days` calendar days).

        The fallback mark stays even when the cap wins: the true calendar could have made the working-day
        deadline earlier than the cap (a make-up day we could not know), so the answer is still a guess."""
        deadline, fallback = self.add_working_days(start, working_days)
        if max_calendar_days is not None:
            deadline = min(deadline, utc(start) + timedelta(days=max_calendar_days))
        return deadline, fallback


_STATUTORY_CACHE: dict[int, frozenset[date]] = {}


def _statutory_holidays(year: int) -> frozenset[date]:
    cached = _STATUTORY_CACHE.get(year)
    if cached is None:
        try:
            import holidays as holidays_lib

            cached = frozenset(holidays_lib.country_holidays("CN", years=year).keys())
        except Exception:  # noqa: BLE001 - the fallback must never crash; weekdays alone is still documented
            cached = frozenset()
        _STATUTORY_CACHE[year] = cached
    return cached


DEFAULT_CALENDAR = WorkingCalendar()


def add_working_days(start: datetime, n: int, calendar: WorkingCalendar = DEFAULT_CALENDAR) -> tuple[datetime, bool]:
    return calendar.add_working_days(start, n)


def complaint_reply_deadline(start: datetime, calendar: WorkingCalendar = DEFAULT_CALENDAR, working_days: int = 3,
                             max_calendar_days: int = 7) -> tuple[datetime, bool]:
    """Complaint reply: 3 working days, never more than 7 calendar days."""
    return calendar.working_days_capped(start, working_days, max_calendar_days)
