"""The escalation ladder: who is told next when a clock is missed, and how long each rung has to act.

The ladder itself is policy (`Ladder`, rung names and waits). `LadderRun` is the state of one climb: it starts at
a rung (the first rung on a breach, the rule's rung on a condition), climbs one rung each time the wait at the
current rung passes, and stops when someone acknowledges it, when the clock is met, or at the top.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from services.common.domain import DomainError, Event, InvalidTransition, utc

DEFAULT_RUNGS = ("front_desk", "cs_supervisor", "cs_department", "manager", "leadership")
DEFAULT_WAIT_SECONDS = 30 * 60


@dataclass(frozen=True)
class Rung:
    name: str
    wait_seconds: int  # how long this rung has to acknowledge before the next one is told


@dataclass(frozen=True)
class Ladder:
    rungs: tuple[Rung, ...]

    def __post_init__(self) -> None:
        if not self.rungs:
            raise DomainError("the ladder needs at least one rung", field="ladder", code="invalid_policy")
        names = [r.name for r in self.rungs]
        if len(set(names)) != len(names):
            raise DomainError("rung names must be unique", field="ladder", code="invalid_policy")
        for r in self.rungs:
            if r.wait_seconds < 1:
                raise DomainError(f"rung {r.name} needs a wait of at least 1 s", field="ladder", code="invalid_policy")

    @classmethod
    def default(cls) -> Ladder:
        return cls(tuple(Rung(n, DEFAULT_WAIT_SECONDS) for n in DEFAULT_RUNGS))

    def index_of(self, name: str) -> int:
        for i, r in enumerate(self.rungs):
            if r.name == name:
                return i
        raise DomainError(f"no rung {name!r} on the ladder", field="rung", code="invalid_policy")

    def scaled(self, time_scale: float) -> Ladder:
        return Ladder(tuple(Rung(r.name, max(1, round(r.wait_seconds * time_scale))) for r in self.rungs))


@dataclass(frozen=True)
class RequestEscalated(Event):
    escalation_id: UUID
    request_no: str
    rung: str
    rung_index: int
    reason: str
    source: str  # "breach" or "condition"
    rule: str | None
    clock_id: UUID | None
    clock: str | None
    escalated_at: datetime


@dataclass(frozen=True)
class EscalationAcknowledged(Event):
    escalation_id: UUID
    request_no: str
    rung: str
    rung_index: int
    acknowledged_by: str
    acknowledged_at: datetime


@dataclass(frozen=True)
class EscalationClimb:
    rung: str
    rung_index: int
    at: datetime


@dataclass
class LadderRun:
    """One climb. `next_due` is the wall-clock instant the next rung is told, or None when the run is over."""

    escalation_id: UUID
    request_no: str
    ladder: Ladder
    reason: str
    source: str
    rule: str | None = None
    clock_id: UUID | None = None
    clock: str | None = None
    climbs: list[EscalationClimb] = field(default_factory=list)
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    stopped: bool = False  # the clock was met or cancelled, or the run was closed otherwise
    climb_further: bool = True

    @property
    def rung_index(self) -> int:
        return self.climbs[-1].rung_index if self.climbs else -1

    @property
    def rung(self) -> str | None:
        return self.climbs[-1].rung if self.climbs else None

    @property
    def active(self) -> bool:
        return not self.stopped and self.acknowledged_at is None

    @classmethod
    def start(cls, *, escalation_id: UUID, request_no: str, ladder: Ladder, rung_index: int, reason: str,
              source: str, now: datetime, rule: str | None = None, clock_id: UUID | None = None,
              clock: str | None = None, climb_further: bool = True) -> tuple[LadderRun, list[RequestEscalated]]:
        if not 0 <= rung_index < len(ladder.rungs):
            raise DomainError(f"rung index {rung_index} is not on the ladder", field="rung")
        run = cls(escalation_id=escalation_id, request_no=request_no, ladder=ladder, reason=reason, source=source,
                  rule=rule, clock_id=clock_id, clock=clock, climb_further=climb_further)
        return run, [run._climb_to(rung_index, utc(now))]

    def _climb_to(self, index: int, at: datetime) -> RequestEscalated:
        rung = self.ladder.rungs[index]
        self.climbs.append(EscalationClimb(rung.name, index, at))
        return RequestEscalated(escalation_id=self.escalation_id, request_no=self.request_no, rung=rung.name,
                                rung_index=index, reason=self.reason, source=self.source, rule=self.rule,
                                clock_id=self.clock_id, clock=self.clock, escalated_at=at)

    def next_rung_wait(self) -> int | None:
        """Seconds the current rung has before the next is told; None when there is nothing left to climb."""
        if not self.active or not self.climb_further or not self.climbs:
            return None
        if self.rung_index + 1 >= len(self.ladder.rungs):
            return None
        return self.ladder.rungs[self.rung_index].wait_seconds

    def next_due(self) -> datetime | None:
        """Wall-clock due time of the next rung (for a run that is not tied to a pausable clock)."""
        wait = self.next_rung_wait()
        if wait is None:
            return None
        return self.climbs[-1].at + timedelta(seconds=wait)

    def climb(self, at: datetime) -> list[RequestEscalated]:
        """Tell the next rung. `at` is the instant the rung was due (not when the timer happened to run), so a
        late pass does not push every later rung later."""
        if self.next_rung_wait() is None:
            return []
        return [self._climb_to(self.rung_index + 1, utc(at))]

    def acknowledge(self, by: str, now: datetime) -> list[EscalationAcknowledged]:
        if not by:
            raise DomainError("who acknowledges must be named", field="acknowledged_by")
        if self.acknowledged_at is not None:
            return []  # acknowledging twice changes nothing: the first acknowledgement stands
        if self.stopped:
            raise InvalidTransition("the escalation is over", current_state="stopped")
        self.acknowledged_by = by
        self.acknowledged_at = utc(now)
        return [EscalationAcknowledged(escalation_id=self.escalation_id, request_no=self.request_no,
                                       rung=self.rung or "", rung_index=self.rung_index, acknowledged_by=by,
                                       acknowledged_at=self.acknowledged_at)]

    def stop(self) -> None:
        self.stopped = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "escalation_id": str(self.escalation_id), "request_no": self.request_no, "reason": self.reason,
            "source": self.source, "rule": self.rule, "clock_id": str(self.clock_id) if self.clock_id else None,
            "clock": self.clock, "climbs": [{"rung": c.rung, "rung_index": c.rung_index, "at": c.at.isoformat()}
                                            for c in self.climbs],
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at.isoformat() if self.acknowledged_at else None,
            "stopped": self.stopped, "climb_further": self.climb_further,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], ladder: Ladder) -> LadderRun:
        return cls(
            escalation_id=UUID(d["escalation_id"]), request_no=d["request_no"], ladder=ladder, reason=d["reason"],
            source=d["source"], rule=d.get("rule"), clock_id=UUID(d["clock_id"]) if d.get("clock_id") else None,
            clock=d.get("clock"),
            climbs=[EscalationClimb(c["rung"], c["rung_index"], datetime.fromisoformat(c["at"])) for c in d["climbs"]],
            acknowledged_by=d.get("acknowledged_by"),
            acknowledged_at=datetime.fromisoformat(d["acknowledged_at"]) if d.get("acknowledged_at") else None,
            stopped=bool(d.get("stopped")), climb_further=bool(d.get("climb_further", True)),
        )
