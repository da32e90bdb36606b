"""Escalation on conditions, not only time: rules kept as policy data and evaluated here, purely.

A rule is a name, the rung it escalates to, the reason carried on the event, and clauses over a fixed vocabulary
of facts about a request (`FACTS`). A new case is a new rule in the policy file, not a new code path.

Some facts grow with time alone (`GROWING`: days open, days since a dispute), so a rule over them can come true
while no new fact arrives. `ConditionRule.due_at` is the instant such a rule would come true (the service stores
it as a due row and re-evaluates at that instant); `schedule` gives it for every rule of a policy. Day-valued facts
are counted in policy days: a policy's `time_scale` (tests use seconds-scale policies) shrinks a day like it
shrinks every target and ladder wait.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
import math
from datetime import datetime, timedelta
from typing import Any

from services.common.domain import DomainError, utc


@dataclass(frozen=True)
class RequestFacts:
    """What the escalation service knows about a request when it evaluates the condition rules.

    The service layer fills it from its own read model (events from intake, dispatch and feedback).
    """

    request_no: str
    category: str
    registered_at: datetime
    subcategory: str | None = None
    priority: str | None = None
    emergency: bool = False
    resolved: bool = False
    # last resolved repair of the same unit and subclass, before this request
    previous_repair_at: datetime | None = None
    reopen_count: int = 0
    major_quality_issue: bool = False  # seepage, large cracks and the like
    plan_disputed_at: datetime | None = None
    dispute_settled: bool = False
    compensation_demanded: bool = False
    large_loss_expected: bool = False
    cluster_size: int = 1  # residents in the intake incident cluster this request belongs to
    serious_case: bool = False
    vip: bool = False
    directed: bool = False  # 指定/督办 case: named by leadership or an authority
    closed: bool = False  # cancelled or closed without a resolution: no longer open, so no longer delayed


def _days(a: datetime | None, b: datetime) -> float | None:
    if a is None:
        return None
    return (utc(b) - utc(a)).total_seconds() / 86400


# Derived facts take `now`; plain ones read the dataclass. Unknown names are refused when the policy loads.
FACTS: dict[str, Callable[[RequestFacts, datetime], Any]] = {
    "category": lambda f, now: f.category,
    "subcategory": lambda f, now: f.subcategory,
    "priority": lambda f, now: f.priority,
    "emergency": lambda f, now: f.emergency,
    "resolved": lambda f, now: f.resolved,
    "reopen_count": lambda f, now: f.reopen_count,
    "major_quality_issue": lambda f, now: f.major_quality_issue,
    "dispute_settled": lambda f, now: f.dispute_settled,
    "compensation_demanded": lambda f, now: f.compensation_demanded,
    "large_loss_expected": lambda f, now: f.large_loss_expected,
    "cluster_size": lambda f, now: f.cluster_size,
    "serious_case": lambda f, now: f.serious_case,
    "vip": lambda f, now: f.vip,
    "directed": lambda f, now: f.directed,
    # days between the previous repair of the same unit+subclass and this request's registration
    "days_since_previous_repair": lambda f, now: (
        None if f.previous_repair_at is None else _days(f.previous_repair_at, f.registered_at)),
    "days_open": lambda f, now: None if f.resolved or f.closed else _days(f.registered_at, now),
    "days_since_dispute": lambda f, now: (
        None if f.plan_disputed_at is None or f.dispute_settled else _days(f.plan_disputed_at, now)),
}

# Facts measured in days: divided by the policy's time_scale, so that "7 days" means 7 policy days.
DAY_FACTS = frozenset({"days_since_previous_repair", "days_open", "days_since_dispute"})

# Facts that grow with `now` alone, each as the instant it counts from (None: it is not counting, e.g. the
# request is resolved). Must agree with FACTS above: FACTS[name](f, now) == (now - GROWING[name](f)) in days.
GROWING: dict[str, Callable[[RequestFacts], datetime | None]] = {
    "days_open": lambda f: None if f.resolved or f.closed else f.registered_at,
    "days_since_dispute": lambda f: None if f.plan_disputed_at is None or f.dispute_settled else f.plan_disputed_at,
}

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    ">=": lambda a, b: bool(a >= b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    "<": lambda a, b: bool(a < b),
    "in": lambda a, b: a in b,
}


@dataclass(frozen=True)
class Clause:
    fact: str
    op: str
    value: Any

    def holds(self, facts: RequestFacts, now: datetime, time_scale: float = 1.0) -> bool:
        actual = FACTS[self.fact](facts, now)
        if actual is None:
            return False  # an unknown fact never fires a rule: absence is not evidence
        if self.fact in DAY_FACTS:
            actual = actual / time_scale
        try:
            return OPS[self.op](actual, self.value)
        except TypeError:
            return False

    @property
    def timed(self) -> bool:
        """True when time alone can make this clause come true (a growing fact compared from below)."""
        return (self.fact in GROWING and self.op in (">=", ">") and isinstance(self.value, int | float)
                and not isinstance(self.value, bool))

    def true_from(self, facts: RequestFacts, time_scale: float = 1.0) -> datetime | None:
        """For a timed clause: the first instant it holds (None while its fact is not counting)."""
        start = GROWING[self.fact](facts)
        if start is None:
            return None
        # Rounded up to the microsecond, plus one for '>' (and for float error on '>='), so that evaluating the
        # clause at the returned instant finds it true.
        micros = math.ceil(float(self.value) * 86400 * time_scale * 1_000_000) + 1
        return utc(start) + timedelta(microseconds=max(0, micros))

    def to_dict(self) -> dict[str, Any]:
        return {"fact": self.fact, "op": self.op, "value": list(self.value) if self.op == "in" else self.value}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Clause:
        if not isinstance(d, Mapping) or set(d) != {"fact", "op", "value"}:
            raise DomainError("a clause is {fact, op, value}", field=where, code="invalid_policy")
        if d["fact"] not in FACTS:
            raise DomainError(f"unknown fact {d['fact']!r}", field=f"{where}.fact", code="invalid_policy")
        if d["op"] not in OPS:
            raise DomainError(f"unknown operator {d['op']!r}", field=f"{where}.op", code="invalid_policy")
        value = d["value"]
        if d["op"] == "in":
            if not isinstance(value, list | tuple):
                raise DomainError("'in' needs a list", field=f"{where}.value", code="invalid_policy")
            value = tuple(value)
        return cls(d["fact"], d["op"], value)


@dataclass(frozen=True)
class ConditionRule:
    """Fires when all of `all_of` hold and, if `any_of` is given, at least one of it does."""

    name: str
    rung: str
    reason: str
    all_of: tuple[Clause, ...] = ()
    any_of: tuple[Clause, ...] = ()
    climb: bool = False  # whether the escalation keeps climbing the ladder until acknowledged

    def fires(self, facts: RequestFacts, now: datetime, time_scale: float = 1.0) -> bool:
        if not all(c.holds(facts, now, time_scale) for c in self.all_of):
            return False
        return not self.any_of or any(c.holds(facts, now, time_scale) for c in self.any_of)

    @property
    def timed(self) -> bool:
        return any(c.timed for c in (*self.all_of, *self.any_of))

    def due_at(self, facts: RequestFacts, now: datetime, time_scale: float = 1.0) -> datetime | None:
        """The instant time alone could make this rule fire, given `facts`; None when it cannot (no timed clause,
        a timed fact not counting, or a clause only a new fact can change is false now). The caller re-evaluates
        the rule at that instant: the due time is when to look, `fires` decides."""
        if not self.timed:
            return None
        dues: list[datetime] = []
        for c in self.all_of:
            if c.timed:
                at = c.true_from(facts, time_scale)
                if at is None:
                    return None
                dues.append(at)
            elif c.fact not in GROWING and not c.holds(facts, now, time_scale):
                return None  # only a new fact can change this clause, and a new fact re-schedules the rule
        timed_any = [c for c in self.any_of if c.timed]
        if timed_any:
            starts = [at for c in timed_any if (at := c.true_from(facts, time_scale)) is not None]
            if starts:
                dues.append(min(starts))
            elif not dues:
                return None
        return max(dues) if dues else None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "rung": self.rung, "reason": self.reason, "climb": self.climb}
        if self.all_of:
            d["all"] = [c.to_dict() for c in self.all_of]
        if self.any_of:
            d["any"] = [c.to_dict() for c in self.any_of]
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str) -> ConditionRule:
        if not isinstance(d, Mapping):
            raise DomainError("a condition rule is an object", field=where, code="invalid_policy")
        unknown = set(d) - {"name", "rung", "reason", "all", "any", "climb"}
        if unknown:
            raise DomainError(f"unknown key {sorted(unknown)[0]!r}", field=where, code="invalid_policy")
        for key in ("name", "rung", "reason"):
            if not isinstance(d.get(key), str) or not d[key]:
                raise DomainError(f"{key} is required", field=f"{where}.{key}", code="invalid_policy")
        all_of = tuple(Clause.from_dict(c, f"{where}.all[{i}]") for i, c in enumerate(d.get("all", [])))
        any_of = tuple(Clause.from_dict(c, f"{where}.any[{i}]") for i, c in enumerate(d.get("any", [])))
        if not all_of and not any_of:
            raise DomainError("a rule needs at least one clause", field=where, code="invalid_policy")
        return cls(d["name"], d["rung"], d["reason"], all_of, any_of, bool(d.get("climb", False)))


@dataclass(frozen=True)
class ConditionHit:
    rule: str
    rung: str
    rung_index: int
    reason: str
    climb: bool


def evaluate(rules: tuple[ConditionRule, ...], rung_index: Callable[[str], int], facts: RequestFacts,
             now: datetime, already_fired: Collection[str] = (), time_scale: float = 1.0) -> list[ConditionHit]:
    """The rules that fire for `facts` at `now`, highest rung first; rules in `already_fired` are skipped so
    that re-evaluating on every new fact does not escalate the same case twice."""
    hits = [ConditionHit(r.name, r.rung, rung_index(r.rung), r.reason, r.climb)
            for r in rules if r.name not in already_fired and r.fires(facts, now, time_scale)]
    return sorted(hits, key=lambda h: -h.rung_index)


def schedule(rules: tuple[ConditionRule, ...], facts: RequestFacts, now: datetime,
             already_fired: Collection[str] = (), time_scale: float = 1.0) -> dict[str, datetime | None]:
    """For every timed rule: the future instant to re-evaluate it, or None (no re-evaluation pending: fired
    already, not possible by time alone, or already due, in which case the evaluation at `now` decided)."""
    out: dict[str, datetime | None] = {}
    for r in rules:
        if not r.timed:
            continue
        due = None if r.name in already_fired else r.due_at(facts, now, time_scale)
        out[r.name] = due if due is not None and due > utc(now) else None
    return out
