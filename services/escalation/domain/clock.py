"""The Clock aggregate: one SLA clock of one request, under the policy version frozen when it started.

Time on a clock is *running time*: wall time since the start minus every pause. The target, the warning share
and each rung of the ladder are points in running time; `timers()` turns them into wall-clock due instants (valid
while the clock runs; a paused clock has no due timers) for the adapter's indexed deadlines table. Firing a timer
(`fire(kind, token, now)`) is idempotent: a token fires once, and a stale token (the clock was paused, retargeted
or stopped since the row was written) does nothing.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from services.common.domain import DomainError, Event, InvalidTransition, utc
from services.escalation.domain.calendar import WorkingCalendar
from services.escalation.domain.ladder import LadderRun
from services.escalation.domain.policy import ClockFacts, Policy


class ClockState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    BREACHED = "breached"  # past its deadline and still open; the ladder is climbing
    MET = "met"
    CANCELLED = "cancelled"


TERMINAL = (ClockState.MET, ClockState.CANCELLED)
_NO_PAUSE = timedelta(0)


def check_transition(previous: ClockState | None, current: ClockState) -> None:
    """The one table of allowed clock state changes."""
    S = ClockState
    match (previous, current):
        case (None, S.RUNNING):
            return  # started
        case (S.RUNNING, S.PAUSED) | (S.BREACHED, S.PAUSED):
            return  # paused with a reason
        case (S.PAUSED, S.RUNNING) | (S.PAUSED, S.BREACHED):
            return  # resumed; a clock breached before its pause stays breached
        case (S.RUNNING, S.BREACHED):
            return  # deadline passed
        case (S.RUNNING, S.RUNNING) | (S.PAUSED, S.PAUSED) | (S.BREACHED, S.BREACHED):
            return  # warned, or retargeted (a breach is a fact a later reclassification does not undo)
        case (S.RUNNING | S.PAUSED | S.BREACHED, S.MET):
            return  # stopped by the fact it waits for, on time or late
        case (S.RUNNING | S.PAUSED | S.BREACHED, S.CANCELLED):
            return  # request cancelled, or the clock no longer applies after a reclassification
        case _:
            raise InvalidTransition(f"a clock cannot go from {previous} to {current}",
                                    current_state=str(previous) if previous else "none")


# -- events -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClockStarted(Event):
    clock_id: UUID
    request_no: str
    clock: str
    policy_version: int
    target_seconds: int
    started_at: datetime
    deadline: datetime
    calendar_fallback: bool
    warn_at: datetime
    rule: str


@dataclass(frozen=True)
class ClockPaused(Event):
    clock_id: UUID
    request_no: str
    clock: str
    reason: str
    paused_at: datetime


@dataclass(frozen=True)
class ClockResumed(Event):
    clock_id: UUID
    request_no: str
    clock: str
    reason: str
    paused_at: datetime
    resumed_at: datetime
    paused_seconds: int
    total_paused_seconds: int
    deadline: datetime


@dataclass(frozen=True)
class ClockWarned(Event):
    clock_id: UUID
    request_no: str
    clock: str
    warned_at: datetime
    deadline: datetime
    elapsed_seconds: int
    target_seconds: int


@dataclass(frozen=True)
class ClockBreached(Event):
    clock_id: UUID
    request_no: str
    clock: str
    breached_at: datetime
    deadline: datetime
    target_seconds: int


@dataclass(frozen=True)
class ClockMet(Event):
    clock_id: UUID
    request_no: str
    clock: str
    met_at: datetime
    elapsed_seconds: int
    paused_seconds: int
    target_seconds: int
    deadline: datetime
    on_time: bool


@dataclass(frozen=True)
class ClockRetargeted(Event):
    clock_id: UUID
    request_no: str
    clock: str
    policy_version: int
    previous_target_seconds: int
    target_seconds: int
    elapsed_seconds: int
    previous_deadline: datetime
    deadline: datetime
    retargeted_at: datetime
    reason: str
    rule: str
    calendar_fallback: bool


@dataclass(frozen=True)
class ClockCancelled(Event):
    clock_id: UUID
    request_no: str
    clock: str
    cancelled_at: datetime
    reason: str


# -- value objects -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pause:
    reason: str
    paused_at: datetime
    resumed_at: datetime | None = None

    def seconds(self, until: datetime | None = None) -> float:
        end = self.resumed_at or until
        return 0.0 if end is None else max(0.0, (end - self.paused_at).total_seconds())


@dataclass(frozen=True)
class Timer:
    """A due timer for the adapter's deadlines table: fire `kind` with `token` at `due_at`."""

    kind: str  # "warning", "breach" or "rung"
    due_at: datetime
    token: str


TIMER_KINDS = ("warning", "breach", "rung")


# -- the aggregate -------------------------------------------------------------------------------------------------

@dataclass
class Clock:
    clock_id: UUID
    request_no: str
    kind: str
    policy: Policy
    facts: ClockFacts
    rule: str
    target_seconds: int
    started_at: datetime
    calendar_fallback: bool = False
    state: ClockState = ClockState.RUNNING
    pauses: list[Pause] = field(default_factory=list)
    warned_at: datetime | None = None
    breached_at: datetime | None = None
    last_climb_running: float | None = None  # running seconds at the last rung told
    escalation: LadderRun | None = None
    met_at: datetime | None = None
    elapsed_at_stop: int | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    fired: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)

    # -- starting --------------------------------------------------------------------------------------------

    @classmethod
    def start(cls, *, clock_id: UUID, request_no: str, kind: str, policy: Policy, facts: ClockFacts,
              started_at: datetime, calendar: WorkingCalendar) -> Clock:
        """Start `kind` under `policy` (frozen on the clock from now on). Raises DomainError with code
        `clock_not_applicable` when no rule of the policy matches; `start_clock` returns None instead."""
        started_at = utc(started_at)
        resolved = policy.resolve(kind, facts, started_at, calendar)
        if resolved is None:
            raise DomainError(f"the policy has no {kind} clock for this request", field="clock",
                              code="clock_not_applicable")
        check_transition(None, ClockState.RUNNING)
        clock = cls(clock_id=clock_id, request_no=request_no, kind=kind, policy=policy, facts=facts,
                    rule=resolved.rule, target_seconds=resolved.target_seconds, started_at=started_at,
                    calendar_fallback=resolved.calendar_fallback)
        clock._record(ClockStarted(
            clock_id=clock_id, request_no=request_no, clock=kind, policy_version=policy.version,
            target_seconds=clock.target_seconds, started_at=started_at, deadline=clock.deadline,
            calendar_fallback=clock.calendar_fallback, warn_at=clock._wall_at(clock._warn_running()),
            rule=clock.rule))
        return clock

    # -- derived times ---------------------------------------------------------------------------------------

    @property
    def policy_version(self) -> int:
        return self.policy.version

    @property
    def current_pause(self) -> Pause | None:
        return self.pauses[-1] if self.pauses and self.pauses[-1].resumed_at is None else None

    def paused_seconds(self, now: datetime | None = None) -> float:
        """Completed pauses, plus the open one up to `now` when given."""
        return sum(p.seconds(now) for p in self.pauses)

    def _completed_paused(self) -> timedelta:
        if not self.pauses:  # most clocks never pause; `deadline` asks on every save (2.4 % of escalation)
            return _NO_PAUSE
        return timedelta(seconds=sum(p.seconds() for p in self.pauses if p.resumed_at is not None))

    @property
    def deadline(self) -> datetime:
        """Start + target + every completed pause. During a pause it is the deadline as of the pause's start;
        the resume moves it by exactly the paused time."""
        return self.started_at + timedelta(seconds=self.target_seconds) + self._completed_paused()

    def elapsed_seconds(self, now: datetime) -> float:
        """Running time: wall time since the start minus paused time. Frozen once the clock stops."""
        if self.elapsed_at_stop is not None:
            return float(self.elapsed_at_stop)
        now = utc(now)
        return max(0.0, (now - self.started_at).total_seconds() - self.paused_seconds(now))

    def _wall_at(self, running_seconds: float) -> datetime:
        return self.started_at + timedelta(seconds=running_seconds) + self._completed_paused()

    def _warn_running(self) -> float:
        return self.target_seconds * self.policy.warning_share

    def timers(self) -> list[Timer]:
        """The clock's due timers now, as (kind, due_at, token) rows. Empty while paused or stopped."""
        rows: list[Timer] = []
        if self.state is ClockState.RUNNING:
            if self.warned_at is None:
                rows.append(self._timer("warning", self._wall_at(self._warn_running())))
            rows.append(self._timer("breach", self.deadline))
        elif self.state is ClockState.BREACHED and self.escalation is not None:
            wait = self.escalation.next_rung_wait()
            if wait is not None and self.last_climb_running is not None:
                rows.append(self._timer("rung", self._wall_at(self.last_climb_running + wait),
                                        f"rung{self.escalation.rung_index + 1}"))
        return rows

    def _timer(self, kind: str, due_at: datetime, label: str | None = None) -> Timer:
        return Timer(kind, due_at, f"{label or kind}@{due_at.isoformat()}")

    # -- changes ---------------------------------------------------------------------------------------------

    def _record(self, event: Event) -> list[Event]:
        self.events.append(event)
        return [event]

    def _move(self, to: ClockState) -> None:
        check_transition(self.state, to)
        self.state = to

    def _not_before_start(self, now: datetime) -> datetime:
        now = utc(now)
        if now < self.started_at:
            raise DomainError("the clock has not started yet at that instant", field="at")
        return now

    def pause(self, reason: str, now: datetime) -> list[Event]:
        """Stop the clock with a reason (waiting for the resident, for parts, no access). A second pause while
        paused changes nothing, so a redelivered event is harmless."""
        if not reason or len(reason) > 200:
            raise DomainError("a pause needs a reason (at most 200 characters)", field="reason")
        if self.state is ClockState.PAUSED:
            return []
        now = self._not_before_start(now)
        self._move(ClockState.PAUSED)
        self.pauses.append(Pause(reason, now))
        return self._record(ClockPaused(clock_id=self.clock_id, request_no=self.request_no, clock=self.kind,
                                        reason=reason, paused_at=now))

    def resume(self, now: datetime) -> list[Event]:
        """Run again; the deadline moves by exactly the paused time. Resuming a running clock changes nothing."""
        if self.state in (ClockState.RUNNING, ClockState.BREACHED):
            return []
        pause = self.current_pause
        if pause is None:
            raise InvalidTransition("the clock is not paused", current_state=str(self.state))
        now = utc(now)
        if now < pause.paused_at:
            raise DomainError("a resume cannot come before its pause", field="at")
        self._move(ClockState.BREACHED if self.breached_at is not None else ClockState.RUNNING)
        self.pauses[-1] = Pause(pause.reason, pause.paused_at, now)
        return self._record(ClockResumed(
            clock_id=self.clock_id, request_no=self.request_no, clock=self.kind, reason=pause.reason,
            paused_at=pause.paused_at, resumed_at=now, paused_seconds=round(self.pauses[-1].seconds()),
            total_paused_seconds=round(self.paused_seconds()), deadline=self.deadline))

    def meet(self, now: datetime) -> list[Event]:
        """The fact the clock waits for happened: record the running time (pauses excluded). Meeting a met
        clock again changes nothing."""
        if self.state is ClockState.MET:
            return []
        now = self._not_before_start(now)
        self._move(ClockState.MET)
        pause = self.current_pause
        if pause is not None:
            self.pauses[-1] = Pause(pause.reason, pause.paused_at, max(now, pause.paused_at))
        self.elapsed_at_stop = round(max(0.0, (now - self.started_at).total_seconds() - self.paused_seconds()))
        self.met_at = now
        if self.escalation is not None:
            self.escalation.stop()
        return self._record(ClockMet(
            clock_id=self.clock_id, request_no=self.request_no, clock=self.kind, met_at=now,
            elapsed_seconds=self.elapsed_at_stop, paused_seconds=round(self.paused_seconds()),
            target_seconds=self.target_seconds, deadline=self.deadline,
            on_time=self.breached_at is None and self.elapsed_at_stop <= self.target_seconds))

    def cancel(self, reason: str, now: datetime) -> list[Event]:
        if self.state is ClockState.CANCELLED:
            return []
        now = utc(now)
        self._move(ClockState.CANCELLED)
        pause = self.current_pause
        if pause is not None:
            self.pauses[-1] = Pause(pause.reason, pause.paused_at, max(now, pause.paused_at))
        self.elapsed_at_stop = round(max(0.0, (now - self.started_at).total_seconds() - self.paused_seconds()))
        self.cancelled_at = now
        self.cancel_reason = reason
        if self.escalation is not None:
            self.escalation.stop()
        return self._record(ClockCancelled(clock_id=self.clock_id, request_no=self.request_no, clock=self.kind,
                                           cancelled_at=now, reason=reason))

    def retarget(self, facts: ClockFacts, now: datetime, calendar: WorkingCalendar,
                 reason: str = "reclassified") -> list[Event]:
        """Reclassification: the target follows the new facts under the *frozen* policy, evaluated at the
        original start (its time of day, its calendar), so the running time so far carries over. A clock the
        new facts no longer call for is cancelled."""
        if self.state in TERMINAL:
            raise InvalidTransition("a stopped clock cannot be retargeted", current_state=str(self.state))
        now = utc(now)
        resolved = self.policy.resolve(self.kind, facts, self.started_at, calendar)
        if resolved is None:
            self.facts = facts
            return self.cancel(f"{reason}: the {self.kind} clock no longer applies", now)
        self._move(self.state)
        previous_target, previous_deadline = self.target_seconds, self.deadline
        self.facts = facts
        self.rule = resolved.rule
        self.target_seconds = resolved.target_seconds
        self.calendar_fallback = resolved.calendar_fallback
        elapsed = self.elapsed_seconds(now)
        if self.warned_at is not None and elapsed < self._warn_running():
            self.warned_at = None  # the new target has its own warning point still ahead
        return self._record(ClockRetargeted(
            clock_id=self.clock_id, request_no=self.request_no, clock=self.kind, policy_version=self.policy.version,
            previous_target_seconds=previous_target, target_seconds=self.target_seconds,
            elapsed_seconds=round(elapsed), previous_deadline=previous_deadline, deadline=self.deadline,
            retargeted_at=now, reason=reason, rule=self.rule, calendar_fallback=self.calendar_fallback))

    def fire(self, kind: str, token: str, now: datetime) -> list[Event]:
        """Fire a stored timer. Does nothing if the token already fired, is stale, or is not due yet."""
        if kind not in TIMER_KINDS:
            raise DomainError(f"unknown timer kind {kind!r}", field="kind")
        if token in self.fired:
            return []
        now = utc(now)
        timer = next((t for t in self.timers() if t.kind == kind and t.token == token), None)
        if timer is None or timer.due_at > now:
            return []
        self.fired.add(token)
        if kind == "warning":
            return self._warn(now)
        if kind == "breach":
            return self._breach(timer.due_at, now)
        return self._climb(timer.due_at)

    def fire_due(self, now: datetime) -> list[Event]:
        """Fire every timer due at `now`, in order (catching up after downtime, and for tests)."""
        out: list[Event] = []
        while True:
            due = sorted((t for t in self.timers() if t.due_at <= utc(now)), key=lambda t: t.due_at)
            if not due:
                return out
            fired = self.fire(due[0].kind, due[0].token, now)
            if not fired:
                return out
            out.extend(fired)

    def _warn(self, at: datetime) -> list[Event]:
        # `at` is when the warning was given: a warning is only worth what it leaves of the target.
        self._move(ClockState.RUNNING)
        self.warned_at = at
        return self._record(ClockWarned(
            clock_id=self.clock_id, request_no=self.request_no, clock=self.kind, warned_at=at,
            deadline=self.deadline, elapsed_seconds=round(self._warn_running()), target_seconds=self.target_seconds))

    def _breach(self, at: datetime, now: datetime) -> list[Event]:
        """`at` is the deadline (the fact); the ladder starts from `now`, when the breach was seen, so that a
        breach discovered late (a reclassification, downtime) does not race up every rung at once."""
        self._move(ClockState.BREACHED)
        self.breached_at = at
        self.last_climb_running = self.elapsed_seconds(now)
        events = self._record(ClockBreached(clock_id=self.clock_id, request_no=self.request_no, clock=self.kind,
                                           breached_at=at, deadline=self.deadline,
                                           target_seconds=self.target_seconds))
        # The escalation id is derived from the clock so that a replay builds the same one.
        self.escalation, climbed = LadderRun.start(
            escalation_id=uuid5(self.clock_id, "breach"), request_no=self.request_no,
            ladder=self.policy.scaled_ladder, rung_index=0, reason=f"{self.kind} clock breached",
            source="breach", now=now, clock_id=self.clock_id, clock=self.kind)
        for e in climbed:
            events += self._record(e)
        return events

    def _climb(self, at: datetime) -> list[Event]:
        assert self.escalation is not None and self.last_climb_running is not None
        wait = self.escalation.next_rung_wait()
        assert wait is not None
        self.last_climb_running += wait
        events: list[Event] = []
        for e in self.escalation.climb(at):
            events += self._record(e)
        return events

    def acknowledge_escalation(self, by: str, now: datetime) -> list[Event]:
        """Someone took charge of the breach: the ladder stops climbing (the clock keeps running to be met)."""
        if self.escalation is None:
            raise InvalidTransition("the clock has not escalated", current_state=str(self.state))
        events: list[Event] = []
        for e in self.escalation.acknowledge(by, now):
            events += self._record(e)
        return events

    def pull_events(self) -> list[Event]:
        out, self.events = self.events, []
        return out

    # -- reading and storing ---------------------------------------------------------------------------------

    def view(self, now: datetime) -> dict[str, Any]:
        """What the API shows for one clock."""
        return {
            "clock_id": str(self.clock_id), "request_no": self.request_no, "clock": self.kind,
            "state": str(self.state), "policy_version": self.policy.version, "rule": self.rule,
            "target_seconds": self.target_seconds, "started_at": self.started_at, "deadline": self.deadline,
            "elapsed_seconds": round(self.elapsed_seconds(now)), "paused_seconds": round(self.paused_seconds(now)),
            "pauses": [{"reason": p.reason, "paused_at": p.paused_at, "resumed_at": p.resumed_at}
                       for p in self.pauses],
            "warned_at": self.warned_at, "breached_at": self.breached_at, "met_at": self.met_at,
            "cancelled_at": self.cancelled_at, "calendar_fallback": self.calendar_fallback,
            "escalation_rung": self.escalation.rung if self.escalation else None,
            "escalation_acknowledged_by": self.escalation.acknowledged_by if self.escalation else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the clock (JSON-friendly); the policy is stored by version."""
        def iso(d: datetime | None) -> str | None:
            return d.isoformat() if d else None

        f = self.facts
        return {
            "clock_id": str(self.clock_id), "request_no": self.request_no, "kind": self.kind,
            "policy_version": self.policy.version, "rule": self.rule, "target_seconds": self.target_seconds,
            "started_at": iso(self.started_at), "calendar_fallback": self.calendar_fallback,
            "state": str(self.state),
            "facts": {"category": f.category, "priority": f.priority, "channel": f.channel,
                      "subcategory": f.subcategory, "emergency": f.emergency, "property_id": f.property_id},
            "pauses": [{"reason": p.reason, "paused_at": iso(p.paused_at), "resumed_at": iso(p.resumed_at)}
                       for p in self.pauses],
            "warned_at": iso(self.warned_at), "breached_at": iso(self.breached_at),
            "last_climb_running": self.last_climb_running,
            "escalation": self.escalation.to_dict() if self.escalation else None,
            "met_at": iso(self.met_at), "elapsed_at_stop": self.elapsed_at_stop,
            "cancelled_at": iso(self.cancelled_at), "cancel_reason": self.cancel_reason,
            "fired": sorted(self.fired),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], policy: Policy) -> Clock:
        if policy.version != d["policy_version"]:
            raise DomainError("the clock must be rebuilt with the policy version it started under",
                              field="policy_version")

        def dt(v: str | None) -> datetime | None:
            return datetime.fromisoformat(v) if v else None

        started = dt(d["started_at"])
        assert started is not None
        return cls(
            clock_id=UUID(d["clock_id"]), request_no=d["request_no"], kind=d["kind"], policy=policy,
            facts=ClockFacts(**d["facts"]), rule=d["rule"], target_seconds=int(d["target_seconds"]),
            started_at=started, calendar_fallback=bool(d["calendar_fallback"]), state=ClockState(d["state"]),
            pauses=[Pause(p["reason"], datetime.fromisoformat(p["paused_at"]), dt(p["resumed_at"]))
                    for p in d["pauses"]],
            warned_at=dt(d["warned_at"]), breached_at=dt(d["breached_at"]),
            last_climb_running=d.get("last_climb_running"),
            escalation=LadderRun.from_dict(d["escalation"], policy.scaled_ladder) if d.get("escalation") else None,
            met_at=dt(d["met_at"]), elapsed_at_stop=d.get("elapsed_at_stop"), cancelled_at=dt(d["cancelled_at"]),
            cancel_reason=d.get("cancel_reason"), fired=set(d.get("fired", [])),
        )


def start_clock(*, clock_id: UUID, request_no: str, kind: str, policy: Policy, facts: ClockFacts,
                started_at: datetime, calendar: WorkingCalendar) -> Clock | None:
    """Start the clock if the policy calls for it for these facts (e.g. `acknowledge` only for online)."""
    if not policy.applies(kind, facts, utc(started_at)):
        return None
    return Clock.start(clock_id=clock_id, request_no=request_no, kind=kind, policy=policy, facts=facts,
                       started_at=started_at, calendar=calendar)
