"""People and time: technicians, shift patterns, the shift calendar, on-call people and department leads.

A roster is data. The service layer builds it with `Roster.from_config` from what the API stored and keeps the
technicians' loads in its own tables; the domain only reads it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from collections.abc import Iterable, Mapping
from zoneinfo import ZoneInfo

from services.common.domain import DomainError, NotFound, utc

DEFAULT_TZ = "Asia/Shanghai"


@dataclass(frozen=True)
class ShiftPattern:
    """A named daily window in local time; `end <= start` means it runs past midnight (the night shift)."""

    name: str
    start: time
    end: time

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def window(self, shift_date: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """The UTC instants this shift covers when it starts on local `shift_date`."""
        start = datetime.combine(shift_date, self.start, tzinfo=tz)
        end_date = shift_date + timedelta(days=1) if self.crosses_midnight else shift_date
        end = datetime.combine(end_date, self.end, tzinfo=tz)
        return utc(start), utc(end)

    def covering_date(self, now: datetime, tz: ZoneInfo) -> date | None:
        """The local start date of the occurrence of this shift that covers `now`, or None."""
        local = now.astimezone(tz)
        for shift_date in (local.date(), local.date() - timedelta(days=1)):
            start, end = self.window(shift_date, tz)
            if start <= now < end:
                return shift_date
        return None


DEFAULT_SHIFTS = (
    ShiftPattern("day", time(7, 0), time(22, 0)),
    ShiftPattern("night", time(22, 0), time(7, 0)),
)
NIGHT_SHIFT = "night"


@dataclass(frozen=True)
class Technician:
    id: str
    department: str
    skills: frozenset[str] = frozenset()
    zones: frozenset[str] = frozenset()  # buildings or areas served; empty means the whole property
    absent: bool = False  # on leave or off sick: never assigned, whatever the calendar says
    load: int = 0  # open work orders held now

    def has_skill(self, skill: str | None) -> bool:
        return skill is None or skill in self.skills

    def serves(self, zone: str | None) -> bool:
        return zone is None or not self.zones or zone in self.zones


@dataclass(frozen=True)
class ShiftAssignment:
    """`technician_id` works shift `shift` starting on local date `shift_date`; `lead` marks the duty lead."""

    technician_id: str
    shift: str
    shift_date: date
    lead: bool = False


@dataclass(frozen=True)
class Roster:
    technicians: Mapping[str, Technician]
    calendar: tuple[ShiftAssignment, ...] = ()
    shifts: tuple[ShiftPattern, ...] = DEFAULT_SHIFTS
    on_call: Mapping[str, str] = field(default_factory=dict)  # department -> night on-call technician
    on_call_dated: Mapping[tuple[str, date], str] = field(default_factory=dict)  # (department, night date) override
    leads: Mapping[str, str] = field(default_factory=dict)  # department -> department lead
    tz_name: str = DEFAULT_TZ

    def __post_init__(self) -> None:
        names = {s.name for s in self.shifts}
        for entry in self.calendar:
            if entry.shift not in names:
                raise DomainError(f"unknown shift {entry.shift!r}", field="calendar", code="invalid_roster")
            if entry.technician_id not in self.technicians:
                raise NotFound(f"technician {entry.technician_id!r} is not on the roster", field="calendar")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.tz_name)

    # -- reading ---------------------------------------------------------------------------------------------

    def technician(self, technician_id: str) -> Technician:
        try:
            return self.technicians[technician_id]
        except KeyError:
            raise NotFound(f"technician {technician_id!r} is not on the roster", field="technician_id") from None

    def shift_pattern(self, name: str) -> ShiftPattern:
        for s in self.shifts:
            if s.name == name:
                return s
        raise NotFound(f"shift {name!r} is not defined", field="shift")

    def current_shift(self, now: datetime) -> tuple[ShiftPattern, date] | None:
        """The shift pattern covering `now` and the local date that occurrence started on."""
        for pattern in self.shifts:
            shift_date = pattern.covering_date(now, self.tz)
            if shift_date is not None:
                return pattern, shift_date
        return None

    def is_night(self, now: datetime) -> bool:
        current = self.current_shift(now)
        return current is not None and current[0].name == NIGHT_SHIFT

    def _covering(self, now: datetime) -> list[ShiftAssignment]:
        covering = []
        for entry in self.calendar:
            start, end = self.shift_pattern(entry.shift).window(entry.shift_date, self.tz)
            if start <= now < end:
                covering.append(entry)
        return covering

    def is_on_duty(self, technician_id: str, now: datetime) -> bool:
        tech = self.technician(technician_id)
        return not tech.absent and any(e.technician_id == technician_id for e in self._covering(now))

    def on_duty(self, department: str, now: datetime) -> list[Technician]:
        ids = {e.technician_id for e in self._covering(now)}
        return sorted(
            (t for t in self.technicians.values() if t.id in ids and t.department == department and not t.absent),
            key=lambda t: t.id,
        )

    def duty_lead(self, department: str, now: datetime) -> str | None:
        leads = sorted(
            e.technician_id for e in self._covering(now)
            if e.lead and self.technician(e.technician_id).department == department
            and not self.technician(e.technician_id).absent
        )
        return leads[0] if leads else None

    def on_call_for(self, department: str, now: datetime) -> str | None:
        """The on-call person, dated by the night the call belongs to (a 03:00 call is the previous evening's)."""
        local = now.astimezone(self.tz)
        night = local.date() - timedelta(days=1) if local.time() < time(12, 0) else local.date()
        for tech_id in (self.on_call_dated.get((department, night)), self.on_call.get(department)):
            if tech_id is not None and tech_id in self.technicians and not self.technicians[tech_id].absent:
                return tech_id
        return None

    def lead_for(self, department: str) -> str | None:
        return self.leads.get(department)

    # -- changing (returns a new roster: the caller stores it) -----------------------------------------------

    def with_technician(self, technician: Technician) -> Roster:
        return replace(self, technicians={**self.technicians, technician.id: technician})

    def with_absent(self, technician_id: str, absent: bool) -> Roster:
        return self.with_technician(replace(self.technician(technician_id), absent=absent))

    def with_load(self, technician_id: str, delta: int) -> Roster:
        tech = self.technician(technician_id)
        return self.with_technician(replace(tech, load=max(0, tech.load + delta)))

    def with_shifts(self, entries: Iterable[ShiftAssignment]) -> Roster:
        return replace(self, calendar=self.calendar + tuple(entries))

    # -- building from plain data ----------------------------------------------------------------------------

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> Roster:
        """Build from plain data, e.g.
        {"timezone": "Asia/Shanghai",
         "shifts": [{"name": "day", "start": "07:00", "end": "22:00"}, ...],   # optional, default day/night
         "technicians": [{"id": "tech-li", "department": "engineering", "skills": ["plumbing"],
                          "zones": ["3"], "absent": false, "load": 0}],
         "calendar": [{"technician_id": "tech-li", "shift": "day", "date": "2026-11-29", "lead": false}],
         "on_call": {"engineering": "tech-wang"},
         "on_call_dated": [{"department": "engineering", "date": "2026-11-29", "technician_id": "tech-li"}],
         "leads": {"engineering": "lead-zhao"}}
        """
        shifts = tuple(
            ShiftPattern(s["name"], time.fromisoformat(s["start"]), time.fromisoformat(s["end"]))
            for s in data.get("shifts", ())
        ) or DEFAULT_SHIFTS
        techs = {
            t["id"]: Technician(
                id=t["id"], department=t["department"], skills=frozenset(t.get("skills", ())),
                zones=frozenset(str(z) for z in t.get("zones", ())), absent=bool(t.get("absent", False)),
                load=int(t.get("load", 0)),
            )
            for t in data.get("technicians", ())
        }
        calendar = tuple(
            ShiftAssignment(c["technician_id"], c["shift"], _as_date(c["date"]), bool(c.get("lead", False)))
            for c in data.get("calendar", ())
        )
        dated = {(o["department"], _as_date(o["date"])): o["technician_id"] for o in data.get("on_call_dated", ())}
        return cls(
            technicians=techs, calendar=calendar, shifts=shifts, on_call=dict(data.get("on_call", {})),
            on_call_dated=dated, leads=dict(data.get("leads", {})), tz_name=data.get("timezone", DEFAULT_TZ),
        )


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
