"""Escalation on conditions, not only time: rules kept as policy data and evaluated here, purely.

A rule is a name, the rung it escalates to, the reason carried on the event, and clauses over a fixed vocabulary
of facts about a request (`FACTS`). A new case is a new rule in the policy file, not a new code path.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
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
    "days_open": lambda f, now: None if f.resolved else _days(f.registered_at, now),
    "days_since_dispute": lambda f, now: (
        None if f.plan_disputed_at is None or f.dispute_settled else _days(f.plan_disputed_at, now)),
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

    def holds(self, facts: RequestFacts, now: datetime) -> bool:
        actual = FACTS[self.fact](facts, now)
        if actual is None:
            return False  # an unknown fact never fires a rule: absence is not evidence
        try:
            return OPS[self.op](actual, self.value)
        except TypeError:
            return False

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

    def fires(self, facts: RequestFacts, now: datetime) -> bool:
        if not all(c.holds(facts, now) for c in self.all_of):
            return False
        return not self.any_of or any(c.holds(facts, now) for c in self.any_of)

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
             now: datetime, already_fired: Collection[str] = ()) -> list[ConditionHit]:
    """The rules that fire for `facts` at `now`, highest rung first; rules in `already_fired` are skipped so
    that re-evaluating on every new fact does not escalate the same case twice."""
    hits = [ConditionHit(r.name, r.rung, rung_index(r.rung), r.reason, r.climb)
            for r in rules if r.name not in already_fired and r.fires(facts, now)]
    return sorted(hits, key=lambda h: -h.rung_index)
