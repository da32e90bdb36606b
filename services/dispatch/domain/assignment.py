"""Who gets a work order, and why.

`choose_assignee` is pure: it reads a route, a roster and the time and answers with an `Assignment`. Strategies are
chosen per department (`AssignmentPolicy`). When nobody on duty fits, the department's on-call person takes it, then
the department lead: dispatch never leaves a request unowned in silence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from collections.abc import Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from services.common.domain import DomainError, utc
from services.dispatch.domain.roster import Roster, ShiftPattern, Technician
from services.dispatch.domain.routing import Route

STRATEGIES = ("least_loaded", "round_robin", "grab")
DEFAULT_ACCEPT_TIMEOUT_MINUTES = 5

# Why an assignment went where it did (Assignment.reason).
REASONS = (
    "least_loaded", "round_robin", "grab_pool", "duty_lead", "department", "on_call", "department_lead", "manual",
)


class NoAssignee(DomainError):
    """Nobody at all can take the work: no candidate, no on-call person, no lead. The caller must escalate."""

    def __init__(self, message: str):
        super().__init__(message, field="department", code="no_assignee")


@dataclass(frozen=True)
class DepartmentPolicy:
    strategy: str = "least_loaded"
    accept_timeout_minutes: int = DEFAULT_ACCEPT_TIMEOUT_MINUTES
    # The shifts whose minutes count towards the acceptance timeout; empty means the clock runs around the clock.
    working_shifts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise DomainError(f"unknown strategy {self.strategy!r}", field="strategy", code="invalid_policy")
        if self.accept_timeout_minutes <= 0:
            raise DomainError("accept timeout must be above 0 minutes", field="accept_timeout_minutes",
                              code="invalid_policy")


@dataclass(frozen=True)
class AssignmentPolicy:
    departments: Mapping[str, DepartmentPolicy] = field(default_factory=dict)
    default: DepartmentPolicy = DepartmentPolicy()

    def for_department(self, department: str) -> DepartmentPolicy:
        return self.departments.get(department, self.default)

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> AssignmentPolicy:
        """{"default": {"strategy": "least_loaded", "accept_timeout_minutes": 5},
            "departments": {"cleaning": {"strategy": "grab", "accept_timeout_minutes": 10,
                                         "working_shifts": ["day"]}}}"""
        def build(raw: Mapping[str, Any], base: DepartmentPolicy) -> DepartmentPolicy:
            return DepartmentPolicy(
                strategy=str(raw.get("strategy", base.strategy)),
                accept_timeout_minutes=int(raw.get("accept_timeout_minutes", base.accept_timeout_minutes)),
                working_shifts=tuple(raw.get("working_shifts", base.working_shifts)),
            )

        default = build(data.get("default", {}), DepartmentPolicy())
        return cls({d: build(raw or {}, default) for d, raw in data.get("departments", {}).items()}, default)


@dataclass(frozen=True)
class Assignment:
    """The answer: `technician_id` (None only for a grab offer, whose `pool` is then non-empty) and why."""

    department: str
    strategy: str
    reason: str
    detail: str
    night: bool
    technician_id: str | None = None
    pool: tuple[str, ...] = ()
    cursor: str | None = None  # round robin: persist this and pass it back next time

    @property
    def is_offer(self) -> bool:
        return self.technician_id is None


def _candidates(route: Route, roster: Roster, now: datetime, zone: str | None,
                exclude: frozenset[str]) -> list[Technician]:
    return [
        t for t in roster.on_duty(route.department, now)
        if t.id not in exclude and t.has_skill(route.skill) and t.serves(zone)
    ]


def _fallback(route: Route, roster: Roster, now: datetime, strategy: str, night: bool, exclude: frozenset[str],
              why: str) -> Assignment:
    on_call = roster.on_call_for(route.department, now)
    if on_call is not None and on_call not in exclude:
        return Assignment(route.department, strategy, "on_call", f"{why}; on-call person takes it", night, on_call)
    lead = roster.lead_for(route.department)
    if lead is not None:
        # The lead is the last rung: even a lead who already let it lapse gets it again rather than nobody.
        return Assignment(route.department, strategy, "department_lead", f"{why}; department lead takes it", night,
                          lead)
    raise NoAssignee(f"{route.department}: {why}, and no on-call person or lead is set")


def choose_assignee(route: Route, roster: Roster, strategy: str, now: datetime, *,
                    exclude: Iterable[str] = (), zone: str | None = None, cursor: str | None = None) -> Assignment:
    """Pick who gets a work order routed by `route` at `now`.

    `exclude`: technicians who already declined or let it time out. `zone`: the building or area of the work.
    `cursor`: the last technician round robin gave work to in this department (the caller persists it).
    """
    now = utc(now)
    if strategy not in STRATEGIES:
        raise DomainError(f"unknown strategy {strategy!r}", field="strategy", code="invalid_policy")
    excluded = frozenset(exclude)
    night = roster.is_night(now)
    dept = route.department

    if route.assign_to == "duty_lead":
        lead = roster.duty_lead(dept, now)
        if lead is not None and lead not in excluded:
            return Assignment(dept, strategy, "duty_lead", f"{dept} duty lead on shift", night, lead)
        return _fallback(route, roster, now, strategy, night, excluded, f"no {dept} duty lead on shift")

    if route.assign_to == "department":
        # A complaint is investigated by whoever answers for the department, not by the technician complained of.
        for reason, person in (("department", roster.lead_for(dept)), ("duty_lead", roster.duty_lead(dept, now))):
            if person is not None and person not in excluded:
                return Assignment(dept, strategy, reason, f"{dept} investigates", night, person)
        return _fallback(route, roster, now, strategy, night, excluded, f"no {dept} lead available")

    candidates = _candidates(route, roster, now, zone, excluded)
    if not candidates:
        why = f"no on-duty {dept} technician with skill {route.skill} for zone {zone or '*'}"
        return _fallback(route, roster, now, strategy, night, excluded, why)

    if strategy == "least_loaded":
        chosen = min(candidates, key=lambda t: (t.load, t.id))
        return Assignment(dept, strategy, "least_loaded",
                          f"lowest load ({chosen.load}) of {len(candidates)} on duty", night, chosen.id)
    if strategy == "round_robin":
        ordered = sorted(t.id for t in candidates)
        after = [tid for tid in ordered if cursor is not None and tid > cursor]
        chosen_id = after[0] if after else ordered[0]
        return Assignment(dept, strategy, "round_robin", f"next after {cursor or 'start'} of {len(ordered)}",
                          night, chosen_id, cursor=chosen_id)
    pool = tuple(sorted(t.id for t in candidates))
    return Assignment(dept, strategy, "grab_pool", f"offered to {len(pool)} on duty", night, None, pool=pool)


def manual_assignment(roster: Roster, technician_id: str, department: str, now: datetime, reason: str) -> Assignment:
    """A dispatcher's own choice. Refuses unknown and absent people; off-duty people may be called in on purpose."""
    if not reason or not reason.strip():
        raise DomainError("a manual assignment needs a reason", field="reason", code="reason_required")
    tech = roster.technician(technician_id)
    if tech.absent:
        raise DomainError(f"technician {technician_id} is absent", field="technician_id", code="technician_absent")
    on_duty = roster.is_on_duty(technician_id, now)
    detail = reason.strip() + ("" if on_duty else " (called in off duty)")
    return Assignment(department, "manual", "manual", detail, roster.is_night(now), technician_id)


def acceptance_deadline(assigned_at: datetime, minutes: int, *, working_shifts: Sequence[ShiftPattern] = (),
                        tz: ZoneInfo | str = "Asia/Shanghai") -> datetime:
    """When an assignment made at `assigned_at` lapses if not accepted, counting only minutes inside the given
    shifts (a day-only department's timer stands still overnight). No shifts: plain elapsed minutes."""
    assigned_at = utc(assigned_at)
    if not working_shifts:
        return assigned_at + timedelta(minutes=minutes)
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    remaining = timedelta(minutes=minutes)
    local_day = assigned_at.astimezone(zone).date() - timedelta(days=1)
    for _ in range(400):  # bounded: a shift pattern occurs at least yearly or the config is wrong
        windows = sorted(p.window(local_day, zone) for p in working_shifts)
        for start, end in windows:
            start = max(start, assigned_at)
            if end <= start:
                continue
            if start + remaining <= end:
                return start + remaining
            remaining -= end - start
        local_day += timedelta(days=1)
    raise DomainError("working shifts never cover enough time", field="working_shifts", code="invalid_policy")


def deadline_for(policy: AssignmentPolicy, roster: Roster, department: str, assigned_at: datetime,
                 reason: str = "") -> datetime:
    """The acceptance deadline of an assignment under the department's policy. On-call and lead fallbacks run on
    plain minutes: they are called at night precisely because the shift is not working."""
    dept = policy.for_department(department)
    if reason in ("on_call", "department_lead") or not dept.working_shifts:
        return acceptance_deadline(assigned_at, dept.accept_timeout_minutes)
    patterns = [roster.shift_pattern(name) for name in dept.working_shifts]
    return acceptance_deadline(assigned_at, dept.accept_timeout_minutes, working_shifts=patterns, tz=roster.tz)
