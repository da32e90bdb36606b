"""The escalation policy: which clocks a request gets, their targets, the warning share, the ladder and the
condition rules. A `Policy` is an immutable, versioned snapshot; a request's clocks keep the version they started
under, so editing the policy never moves a running deadline.

The policy is plain data (`Policy.from_dict` / `to_dict`): the service loads it from `services/escalation/policy.yml`
or from its versions table and passes it in. `DEFAULT_POLICY_DICT` mirrors that file.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from services.common.domain import DomainError, utc
from services.escalation.domain.calendar import SHANGHAI, WorkingCalendar
from services.escalation.domain.conditions import ConditionHit, ConditionRule, RequestFacts, evaluate, schedule
from services.escalation.domain.ladder import Ladder, Rung

CLOCKS = (
    "acknowledge", "first_response", "supervisor_answer", "on_site", "resolution", "plan",
    "complaint_reply", "return_visit", "revisit_fix", "letter_confirmation", "handover",
)

_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


def _invalid(message: str, where: str) -> DomainError:
    return DomainError(message, field=where, code="invalid_policy")


def _duration_seconds(d: Any, where: str) -> int:
    """{"minutes": 15} -> 900. Exactly one unit, a positive number."""
    if not isinstance(d, Mapping) or len(d) != 1 or next(iter(d)) not in _UNITS:
        raise _invalid(f"a duration is one of {sorted(_UNITS)}, e.g. {{minutes: 15}}", where)
    unit, amount = next(iter(d.items()))
    if not isinstance(amount, int | float) or isinstance(amount, bool) or amount <= 0:
        raise _invalid("a duration must be a positive number", where)
    return round(amount * _UNITS[unit])


@dataclass(frozen=True)
class ClockFacts:
    """What a clock's target depends on (known at registration, changed by a reclassification)."""

    category: str
    priority: str
    channel: str
    subcategory: str | None = None
    emergency: bool = False
    property_id: str | None = None


@dataclass(frozen=True)
class Match:
    """Criteria of a clock rule; None means "any". `local_time` is a Shanghai wall-clock window, may wrap
    midnight ("22:00-07:00"), evaluated at the clock's start."""

    category: frozenset[str] | None = None
    subcategory: frozenset[str] | None = None
    priority: frozenset[str] | None = None
    channel: frozenset[str] | None = None
    property_id: frozenset[str] | None = None
    emergency: bool | None = None
    local_time: tuple[time, time] | None = None

    _LIST_KEYS = ("category", "subcategory", "priority", "channel", "property_id")

    def matches(self, facts: ClockFacts, at: datetime) -> bool:
        for key in self._LIST_KEYS:
            wanted = getattr(self, key)
            if wanted is not None and getattr(facts, key) not in wanted:
                return False
        if self.emergency is not None and facts.emergency != self.emergency:
            return False
        if self.local_time is not None:
            start, end = self.local_time
            t = utc(at).astimezone(SHANGHAI).time()
            inside = start <= t < end if start < end else (t >= start or t < end)
            if not inside:
                return False
        return True

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Match:
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise _invalid("'when' is an object", where)
        unknown = set(d) - set(cls._LIST_KEYS) - {"emergency", "local_time"}
        if unknown:
            raise _invalid(f"unknown criterion {sorted(unknown)[0]!r}", where)
        kwargs: dict[str, Any] = {}
        for key in cls._LIST_KEYS:
            if key in d:
                values = d[key] if isinstance(d[key], list) else [d[key]]
                if not values or not all(isinstance(v, str) for v in values):
                    raise _invalid(f"{key} is a list of names", f"{where}.{key}")
                kwargs[key] = frozenset(values)
        if "emergency" in d:
            if not isinstance(d["emergency"], bool):
                raise _invalid("emergency is true or false", f"{where}.emergency")
            kwargs["emergency"] = d["emergency"]
        if "local_time" in d:
            kwargs["local_time"] = _parse_window(d["local_time"], f"{where}.local_time")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for key in self._LIST_KEYS:
            if getattr(self, key) is not None:
                d[key] = sorted(getattr(self, key))
        if self.emergency is not None:
            d["emergency"] = self.emergency
        if self.local_time is not None:
            d["local_time"] = f"{self.local_time[0]:%H:%M}-{self.local_time[1]:%H:%M}"
        return d


def _parse_window(value: Any, where: str) -> tuple[time, time]:
    try:
        a, b = str(value).split("-")
        start, end = time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
    except ValueError:
        raise _invalid("a time window is 'HH:MM-HH:MM'", where) from None
    if start == end:
        raise _invalid("an empty time window", where)
    return start, end


@dataclass(frozen=True)
class Target:
    """Either a 24x7 duration (`seconds`) or `working_days` on the Chinese calendar, optionally capped by
    `max_days` calendar days."""

    seconds: int | None = None
    working_days: int | None = None
    max_days: int | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Target:
        if isinstance(d, Mapping) and "working_days" in d:
            unknown = set(d) - {"working_days", "max_days"}
            if unknown:
                raise _invalid(f"unknown key {sorted(unknown)[0]!r}", where)
            wd, cap = d["working_days"], d.get("max_days")
            if not isinstance(wd, int) or isinstance(wd, bool) or wd < 1:
                raise _invalid("working_days is a positive integer", f"{where}.working_days")
            if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
                raise _invalid("max_days is a positive integer", f"{where}.max_days")
            return cls(working_days=wd, max_days=cap)
        return cls(seconds=_duration_seconds(d, where))

    def to_dict(self) -> dict[str, Any]:
        if self.working_days is not None:
            d: dict[str, Any] = {"working_days": self.working_days}
            if self.max_days is not None:
                d["max_days"] = self.max_days
            return d
        return {"seconds": self.seconds}


@dataclass(frozen=True)
class ClockRule:
    name: str
    when: Match
    target: Target

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "target": self.target.to_dict()}
        if self.when != Match():
            d["when"] = self.when.to_dict()
        return d


@dataclass(frozen=True)
class ResolvedTarget:
    """A clock's target at one start instant under one policy version."""

    clock: str
    rule: str
    target_seconds: int
    calendar_fallback: bool
    policy_version: int


@dataclass(frozen=True)
class Policy:
    version: int
    clocks: tuple[tuple[str, tuple[ClockRule, ...]], ...]
    ladder: Ladder
    conditions: tuple[ConditionRule, ...] = ()
    warning_share: float = 0.8
    time_scale: float = 1.0
    description: str = ""
    _by_clock: Mapping[str, tuple[ClockRule, ...]] = field(default_factory=dict, init=False, compare=False, repr=False)
    _working_day_clocks: frozenset[str] = field(default=frozenset(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.version, int) or self.version < 1:
            raise _invalid("version is a positive integer", "version")
        if not 0 < self.warning_share < 1:
            raise _invalid("warning_share is between 0 and 1", "warning_share")
        if not self.time_scale > 0:
            raise _invalid("time_scale must be positive", "time_scale")
        for i, rule in enumerate(self.conditions):
            if rule.rung not in {r.name for r in self.ladder.rungs}:
                raise _invalid(f"rung {rule.rung!r} is not on the ladder", f"conditions[{i}].rung")
        object.__setattr__(self, "_by_clock", dict(self.clocks))
        object.__setattr__(self, "_working_day_clocks", frozenset(
            name for name, rules in self.clocks if any(r.target.working_days for r in rules)))

    # -- asking the policy ---------------------------------------------------------------------------------

    def counts_working_days(self, clock: str) -> bool:
        """Whether any target of `clock` is in working days (only those need the calendar)."""
        return clock in self._working_day_clocks

    def rule_for(self, clock: str, facts: ClockFacts, at: datetime) -> ClockRule | None:
        """The first rule of `clock` whose criteria match; None means the clock does not apply."""
        if clock not in CLOCKS:
            raise DomainError(f"unknown clock {clock!r}", field="clock")
        for rule in self._by_clock.get(clock, ()):
            if rule.when.matches(facts, at):
                return rule
        return None

    def applies(self, clock: str, facts: ClockFacts, at: datetime) -> bool:
        return self.rule_for(clock, facts, at) is not None

    def resolve(self, clock: str, facts: ClockFacts, start: datetime,
                calendar: WorkingCalendar) -> ResolvedTarget | None:
        """Target of `clock` for a clock started at `start`, in seconds of running time.

        A working-day target becomes the seconds from `start` to its calendar deadline. Under a scaled policy
        (time_scale != 1, used by tests) working days count as calendar days times the scale and the calendar is
        not consulted.
        """
        rule = self.rule_for(clock, facts, start)
        if rule is None:
            return None
        t = rule.target
        fallback = False
        if t.working_days is None:
            assert t.seconds is not None
            seconds = max(1, round(t.seconds * self.time_scale))
        elif self.time_scale != 1.0:
            days = t.working_days if t.max_days is None else min(t.working_days, t.max_days)
            seconds = max(1, round(days * 86400 * self.time_scale))
        else:
            deadline, fallback = calendar.working_days_capped(start, t.working_days, t.max_days)
            seconds = max(1, round((deadline - utc(start)).total_seconds()))
        return ResolvedTarget(clock, rule.name, seconds, fallback, self.version)

    def warning_offset(self, target_seconds: int) -> timedelta:
        return timedelta(seconds=target_seconds * self.warning_share)

    def rung_index(self, name: str) -> int:
        return self.ladder.index_of(name)

    def evaluate_conditions(self, facts: RequestFacts, now: datetime,
                            already_fired: tuple[str, ...] | frozenset[str] = ()) -> list[ConditionHit]:
        return evaluate(self.conditions, self.rung_index, facts, now, already_fired, self.time_scale)

    def condition_schedule(self, facts: RequestFacts, now: datetime,
                           already_fired: tuple[str, ...] | frozenset[str] = ()) -> dict[str, datetime | None]:
        """When each time-based condition rule must be re-evaluated (None: no re-evaluation pending)."""
        return schedule(self.conditions, facts, now, already_fired, self.time_scale)

    # -- as data -------------------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: Any) -> Policy:
        if not isinstance(d, Mapping):
            raise _invalid("a policy is an object", "policy")
        unknown = set(d) - {"version", "description", "warning_share", "time_scale", "ladder", "clocks", "conditions"}
        if unknown:
            raise _invalid(f"unknown key {sorted(unknown)[0]!r}", sorted(unknown)[0])
        version = d.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise _invalid("version is a positive integer", "version")
        time_scale = d.get("time_scale", 1.0)
        if not isinstance(time_scale, int | float) or isinstance(time_scale, bool):
            raise _invalid("time_scale is a number", "time_scale")
        share = d.get("warning_share", 0.8)
        if not isinstance(share, int | float) or isinstance(share, bool):
            raise _invalid("warning_share is a number", "warning_share")

        raw_ladder = d.get("ladder")
        if not isinstance(raw_ladder, list) or not raw_ladder:
            raise _invalid("ladder is a non-empty list of rungs", "ladder")
        rungs = []
        for i, r in enumerate(raw_ladder):
            if not isinstance(r, Mapping) or not isinstance(r.get("rung"), str) or "wait" not in r:
                raise _invalid("a rung is {rung: name, wait: {minutes: N}}", f"ladder[{i}]")
            rungs.append(Rung(r["rung"], _duration_seconds(r["wait"], f"ladder[{i}].wait")))
        ladder = Ladder(tuple(rungs))

        raw_clocks = d.get("clocks")
        if not isinstance(raw_clocks, Mapping):
            raise _invalid("clocks maps a clock name to its rules", "clocks")
        clocks = []
        for name, rules in raw_clocks.items():
            if name not in CLOCKS:
                raise _invalid(f"unknown clock {name!r}", f"clocks.{name}")
            if not isinstance(rules, list) or not rules:
                raise _invalid("a clock has a non-empty list of rules", f"clocks.{name}")
            parsed = []
            for i, r in enumerate(rules):
                where = f"clocks.{name}[{i}]"
                if not isinstance(r, Mapping) or "target" not in r:
                    raise _invalid("a clock rule has a target", where)
                extra = set(r) - {"name", "when", "target"}
                if extra:
                    raise _invalid(f"unknown key {sorted(extra)[0]!r}", where)
                parsed.append(ClockRule(str(r.get("name", f"{name}#{i}")),
                                        Match.from_dict(r.get("when"), f"{where}.when"),
                                        Target.from_dict(r["target"], f"{where}.target")))
            clocks.append((name, tuple(parsed)))

        raw_conditions = d.get("conditions", [])
        if not isinstance(raw_conditions, list):
            raise _invalid("conditions is a list of rules", "conditions")
        conditions = tuple(ConditionRule.from_dict(c, f"conditions[{i}]") for i, c in enumerate(raw_conditions))
        names = [c.name for c in conditions]
        if len(set(names)) != len(names):
            raise _invalid("condition rule names must be unique", "conditions")
        return cls(version=version, clocks=tuple(clocks), ladder=ladder, conditions=conditions,
                   warning_share=float(share), time_scale=float(time_scale), description=str(d.get("description", "")))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "description": self.description,
            "warning_share": self.warning_share,
            "time_scale": self.time_scale,
            "ladder": [{"rung": r.name, "wait": {"seconds": r.wait_seconds}} for r in self.ladder.rungs],
            "clocks": {name: [r.to_dict() for r in rules] for name, rules in self.clocks},
            "conditions": [c.to_dict() for c in self.conditions],
        }

    def with_version(self, version: int) -> Policy:
        """The same rules under a new version number (an edit through the API saves a new version)."""
        d = self.to_dict()
        d["version"] = version
        return Policy.from_dict(d)

    @property
    def scaled_ladder(self) -> Ladder:
        return self.ladder.scaled(self.time_scale)


_REPAIR_LIKE = ["repair", "emergency_medical", "security_incident", "disaster", "other"]

DEFAULT_POLICY_DICT: dict[str, Any] = {
    "version": 1,
    "description": "Defaults from the company's service standards (issue 5).",
    "warning_share": 0.8,
    "time_scale": 1.0,
    "ladder": [
        {"rung": "front_desk", "wait": {"minutes": 30}},
        {"rung": "cs_supervisor", "wait": {"minutes": 30}},
        {"rung": "cs_department", "wait": {"minutes": 30}},
        {"rung": "manager", "wait": {"minutes": 30}},
        {"rung": "leadership", "wait": {"minutes": 30}},
    ],
    "clocks": {
        "acknowledge": [{"name": "online", "when": {"channel": ["online"]}, "target": {"minutes": 15}}],
        "first_response": [{"name": "all", "target": {"minutes": 30}}],
        "supervisor_answer": [{"name": "all", "target": {"minutes": 10}}],
        "on_site": [
            {"name": "emergency_night", "when": {"emergency": True, "local_time": "22:00-07:00"},
             "target": {"hours": 1}},
            {"name": "emergency_day", "when": {"emergency": True}, "target": {"minutes": 15}},
            {"name": "ordinary", "target": {"hours": 2}},
        ],
        "resolution": [
            {"name": "emergency", "when": {"emergency": True, "category": _REPAIR_LIKE}, "target": {"hours": 3}},
            {"name": "ordinary", "when": {"category": _REPAIR_LIKE}, "target": {"hours": 24}},
        ],
        "plan": [{"name": "complex", "target": {"hours": 48}}],
        "complaint_reply": [{"name": "complaint", "when": {"category": ["complaint"]},
                             "target": {"working_days": 3, "max_days": 7}}],
        "return_visit": [{"name": "all", "target": {"days": 3}}],
        "revisit_fix": [{"name": "all", "target": {"hours": 24}}],
        "letter_confirmation": [{"name": "all", "target": {"days": 3}}],
        "handover": [{"name": "all", "target": {"minutes": 30}}],
    },
    "conditions": [
        {"name": "repeat_repair", "rung": "cs_department",
         "reason": "同一户同一类问题20天内再次报修,或工单两次重开",
         "all": [{"fact": "category", "op": "==", "value": "repair"}],
         "any": [{"fact": "days_since_previous_repair", "op": "<=", "value": 20},
                 {"fact": "reopen_count", "op": ">=", "value": 2}]},
        {"name": "repair_delayed", "rung": "cs_department", "reason": "维修延误7天以上",
         "all": [{"fact": "category", "op": "==", "value": "repair"},
                 {"fact": "days_open", "op": ">=", "value": 7}]},
        {"name": "quality_dispute_unsettled", "rung": "cs_department",
         "reason": "重大质量问题(渗水、大面积裂缝)业主对方案有异议,2天内未协调解决",
         "all": [{"fact": "major_quality_issue", "op": "==", "value": True},
                 {"fact": "days_since_dispute", "op": ">=", "value": 2}]},
        {"name": "compensation", "rung": "cs_department", "reason": "业主提出补偿要求,或维修将给业主造成较大损失",
         "any": [{"fact": "compensation_demanded", "op": "==", "value": True},
                 {"fact": "large_loss_expected", "op": "==", "value": True}]},
        {"name": "many_residents", "rung": "cs_department", "reason": "反映人数较多、影响面较大,或个案性质严重",
         "any": [{"fact": "cluster_size", "op": ">=", "value": 5},
                 {"fact": "serious_case", "op": "==", "value": True}]},
        {"name": "vip_or_directed", "rung": "cs_supervisor", "reason": "VIP或指定督办个案",
         "any": [{"fact": "vip", "op": "==", "value": True},
                 {"fact": "directed", "op": "==", "value": True}]},
        {"name": "emergency_medical", "rung": "manager", "reason": "急救病人求助,立即报告公司经理",
         "all": [{"fact": "category", "op": "==", "value": "emergency_medical"}]},
    ],
}


def default_policy() -> Policy:
    return Policy.from_dict(DEFAULT_POLICY_DICT)
