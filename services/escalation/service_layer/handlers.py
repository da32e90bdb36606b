"""Escalation's use cases: consume facts, keep the clocks, fire due timers, answer the API.

Ordering: every handler first locks the subject's facts row (`requests`, created empty when an event overtakes
the registration), so the events of one request apply one at a time. An event that needs the request's facts
(a clock start, a reclassification) waits for the registration (NotReady, retried); a stop, pause, resume or
cancel for a clock that has not started yet is kept as a pending fact and applied when the clock starts, and a
resume that overtook its pause is applied right after the pause. The result is the same whatever the order.

Condition rules are evaluated whenever a request's facts change, and again, by a due row in `request_timers`, at
the instant a time-based rule would come true (a repair open 7 policy days): `fire_due_requests`, next to the
clocks' timer pass, locks the due rows and their requests with SKIP LOCKED and re-evaluates with its `now`;
`condition_fired` keeps a rule to one escalation. A condition escalation whose rule says `climb: true` climbs the
ladder with the same table (kind 'climb', one pending row per escalation, token = the next rung) until someone
acknowledges it or it reaches the top.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from services.common.db import UnitOfWork
from services.common.domain import DomainError, Event, NotFound, utc
from services.common.nameko_ext import NotReady
from services.escalation.adapters import repository as repo
from services.escalation.domain.calendar import WorkingCalendar, YearCalendar
from services.escalation.domain.clock import (TERMINAL, Clock, ClockBreached, ClockMet, ClockRetargeted,
                                              ClockStarted, ClockState, start_clock)
from services.escalation.domain.conditions import RequestFacts
from services.escalation.domain.ladder import LadderRun, RequestEscalated
from services.escalation.domain.mapping import CLOCK_TABLE, ClockAction, Verb, actions_for, moves_no_clock
from services.escalation.domain.policy import ClockFacts, Policy

log = logging.getLogger(__name__)

QUEUE = "escalation.events"
NS = UUID("6f1c2b8e-5a4d-4e3f-9b2a-1c0d8e7f6a5b")
# Bucket bounds of sla_clock_elapsed_seconds (every SLA target is a boundary).
ELAPSED_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 259200, 432000, 604800)
REGISTRATION_CLOCKS = tuple(r.clock for r in CLOCK_TABLE["RequestRegistered"])
# A supervisor called in again after answering owes a new answer within the target: the clock starts again
# (one row per request and kind: the met clock is replaced; its verdict is counted and its events are kept).
STARTS_AGAIN_AFTER_MET = frozenset({"supervisor_answer"})
# Events that change the request's facts here (handle_event's updates), whatever they do to clocks.
FACT_BEARING = frozenset({"RequestRegistered", "ShiftHandoverPublished", "RequestReclassified", "WorkOrderAssigned",
                          "WorkOrderResolved", "ResidentRejected", "RequestCancelled", "RequestClosed",
                          "IncidentClustered"})
HANDOVER_FACTS = {"category": "handover", "priority": "normal", "channel": "internal"}


def clock_id_for(subject: str, kind: str) -> UUID:
    """Derived, so that a replay or a racing duplicate builds the same clock."""
    return uuid5(NS, f"{subject}/{kind}")


def policy_digest(policy: Policy) -> str:
    d = policy.to_dict()
    d.pop("version", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass
class Runtime:
    """Per-process caches: policy versions are immutable; the calendar is reloaded when its table changes."""

    fallback_rule: str = "weekends_and_statutory"
    policies: dict[int, Policy] = field(default_factory=dict)
    calendar_stamp: int = -1
    calendar: WorkingCalendar = field(default_factory=WorkingCalendar)

    def policy(self, uow: UnitOfWork, version: int) -> Policy:
        cached = self.policies.get(version)
        if cached is None:
            row = repo.get_policy(uow, version)
            if row is None:
                raise NotFound(f"no policy version {version}", field="version")
            cached = self.policies[version] = Policy.from_dict(row["policy"])
        return cached

    def working_calendar(self, uow: UnitOfWork) -> WorkingCalendar:
        stamp = repo.calendar_stamp(uow)
        if stamp != self.calendar_stamp:
            years = [YearCalendar.from_dict(r["data"]) for r in repo.calendar_years(uow)]
            self.calendar = WorkingCalendar.with_years(years, self.fallback_rule)
            self.calendar_stamp = stamp
        return self.calendar

    def calendar_for(self, uow: UnitOfWork, policy: Policy, kind: str) -> WorkingCalendar:
        # Only working-day targets read the calendar; 24x7 clocks skip the query.
        if policy.counts_working_days(kind):
            return self.working_calendar(uow)
        return self.calendar


# -- policy ------------------------------------------------------------------------------------------------------

def ensure_policy(uow: UnitOfWork, rt: Runtime, policy_doc: dict[str, Any], source: str) -> int:
    """Save the configured policy as a new version when it differs from the latest; returns the latest."""
    parsed = Policy.from_dict({**policy_doc, "version": policy_doc.get("version", 1)})
    with uow:
        repo.lock_policy_table(uow)
        latest = repo.latest_policy(uow)
        digest = policy_digest(parsed)
        if latest is not None and latest["digest"] == digest:
            uow.commit()
            return int(latest["version"])
        version = 1 if latest is None else int(latest["version"]) + 1
        saved = parsed.with_version(version)
        repo.insert_policy(uow, version, saved.to_dict(), digest, source)
        uow.commit()
    rt.policies[version] = saved
    log.info("escalation policy version %d saved from %s", version, source)
    return version


def add_policy(uow: UnitOfWork, rt: Runtime, doc: dict[str, Any], by: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise DomainError("a policy is an object", field="policy", code="invalid_policy")
    doc = {k: v for k, v in doc.items() if k != "version"}
    parsed = Policy.from_dict({**doc, "version": 1})  # validates; the version is the table's to assign
    with uow:
        repo.lock_policy_table(uow)
        latest = repo.latest_policy(uow)
        version = 1 if latest is None else int(latest["version"]) + 1
        saved = parsed.with_version(version)
        digest = policy_digest(saved)
        if latest is not None and latest["digest"] == digest:
            return {"version": int(latest["version"]), "created": False, "policy": latest["policy"]}
        repo.insert_policy(uow, version, saved.to_dict(), digest, f"api:{by}")
        uow.commit()
    rt.policies[version] = saved
    return {"version": version, "created": True, "policy": saved.to_dict()}


def get_policy(uow: UnitOfWork, version: int | None = None) -> dict[str, Any]:
    with uow:
        row = repo.latest_policy(uow) if version is None else repo.get_policy(uow, version)
    if row is None:
        raise NotFound("no such policy version", field="version")
    return {"version": row["version"], "source": row["source"], "created_at": row["created_at"].isoformat(),
            "policy": row["policy"]}


def policy_versions(uow: UnitOfWork) -> dict[str, Any]:
    with uow:
        rows = repo.list_policy_versions(uow)
    return {"versions": [{"version": r["version"], "source": r["source"], "digest": r["digest"],
                          "description": r["description"], "created_at": r["created_at"].isoformat()}
                         for r in rows]}


# -- calendar years ----------------------------------------------------------------------------------------------

def load_year(uow: UnitOfWork, rt: Runtime, doc: dict[str, Any], by: str) -> dict[str, Any]:
    """Validate a year's holidays and make-up working days and save it as that year's next version."""
    if not isinstance(doc, dict):
        raise DomainError("year calendar must be an object", field="calendar", code="invalid_calendar")
    YearCalendar.from_dict({**doc, "version": 1})  # validates everything but the version
    with uow:
        year = int(doc["year"])
        repo.lock_calendar_table(uow)
        latest = repo.latest_year_version(uow, year)
        version = doc.get("version")
        if version is None:
            version = latest + 1
        elif not isinstance(version, int) or isinstance(version, bool) or version <= latest:
            raise DomainError(f"year {year} already loaded at version {latest}", field="version",
                              code="stale_calendar_version")
        cal = YearCalendar.from_dict({**doc, "version": version})
        repo.insert_year(uow, year, version, cal.to_dict(), cal.source, by)
        uow.commit()
    rt.calendar_stamp = -1
    return {**cal.to_dict(), "created": True}


def list_years(uow: UnitOfWork) -> dict[str, Any]:
    with uow:
        rows = repo.calendar_years(uow)
    return {"years": [{"year": r["year"], "version": r["version"], "source": r["source"],
                       "loaded_by": r["loaded_by"], "loaded_at": r["loaded_at"].isoformat(),
                       "holidays": r["data"]["holidays"], "workdays": r["data"]["workdays"]} for r in rows]}


# -- applying changes ----------------------------------------------------------------------------------------------

@dataclass
class Changes:
    """What one transaction changed: saved together, counted together, published together."""

    clocks: dict[UUID, Clock] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    runs: list[LadderRun] = field(default_factory=list)
    verdicts: dict[tuple[str, ...], int] = field(default_factory=lambda: defaultdict(int))
    elapsed: dict[tuple[Any, ...], list[float]] = field(default_factory=lambda: defaultdict(list))
    escalations: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    fallbacks: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # (request_no, kind, ref, due_at or None to drop, token): see repo.set_request_timers
    request_timers: list[tuple[str, str, str, datetime | None, str | None]] = field(default_factory=list)

    def arm_climb(self, run: LadderRun) -> None:
        """The next rung of a condition run as a due row (or none: acknowledged, at the top, not climbing)."""
        due = run.next_due()
        self.request_timers.append((run.request_no, "climb", str(run.escalation_id), due,
                                    f"rung{run.rung_index + 1}" if due is not None else None))

    def touch(self, clock: Clock) -> None:
        self.clocks[clock.clock_id] = clock
        for e in clock.pull_events():
            self.record(e, clock)

    def record(self, e: Event, clock: Clock | None = None) -> None:
        self.events.append(e)
        if clock is not None:
            f = clock.facts
            labels = (clock.kind, f.category, f.priority, f.channel, f.property_id or "")
            if isinstance(e, ClockBreached):
                self.verdicts[(clock.kind, "breached", *labels[1:])] += 1
            elif isinstance(e, ClockMet):
                # One verdict per clock: a clock breached earlier was counted when its breach fired, even if
                # the stop it now records happened before that (processed late): never count it twice.
                if clock.breached_at is None:
                    self.verdicts[(clock.kind, "met" if e.on_time else "breached", *labels[1:])] += 1
                bucket = next((i for i, b in enumerate(ELAPSED_BUCKETS) if e.elapsed_seconds <= b),
                              len(ELAPSED_BUCKETS))
                self.elapsed[(*labels, bucket)].append(float(e.elapsed_seconds))
            elif isinstance(e, ClockStarted) and e.calendar_fallback:
                self.fallbacks[clock.kind] += 1
            elif isinstance(e, ClockRetargeted) and e.calendar_fallback:
                self.fallbacks[clock.kind] += 1
        if isinstance(e, RequestEscalated):
            self.escalations[(e.rung, e.rule or f"{e.clock}_breached")] += 1

    def save(self, uow: UnitOfWork, timers: bool = True) -> None:
        rows, runs = [], [r for r in self.runs]
        for clock in self.clocks.values():
            warn_at = None if clock.state in TERMINAL else clock._wall_at(clock._warn_running())
            rows.append(repo.clock_row(clock, warn_at))
            if clock.escalation is not None:
                runs.append(clock.escalation)
        repo.save_clocks(uow, rows)
        if timers:
            repo.replace_timers(uow, {cid: c.timers() for cid, c in self.clocks.items()})
        repo.save_escalations(uow, [repo.escalation_row(r) for r in runs])
        repo.set_request_timers(uow, self.request_timers)
        uow.publish(self.events)
        repo.bump_counters(uow, dict(self.verdicts), dict(self.elapsed), dict(self.escalations),
                           dict(self.fallbacks))


def _facts_of(row: dict[str, Any]) -> ClockFacts:
    return ClockFacts(category=row["category"], priority=row["priority"], channel=row["channel"],
                      subcategory=row["subcategory"], emergency=bool(row["emergency"]),
                      property_id=row["property_id"])


def _load_clocks(uow: UnitOfWork, rt: Runtime, subject: str) -> dict[str, Clock]:
    out: dict[str, Clock] = {}
    for r in repo.clocks_of(uow, subject, lock=True):
        out[r["kind"]] = Clock.from_dict(r["data"], rt.policy(uow, r["policy_version"]))
    return out


def _apply(clock: Clock, verb: Verb, at: datetime, reason: str | None, changes: Changes,
           uow: UnitOfWork, rt: Runtime, facts: ClockFacts | None = None) -> bool:
    """Apply one verb to one existing clock; False when the clock was not in a state to take it."""
    at = max(utc(at), clock.started_at)
    if clock.state in TERMINAL:
        return verb is not Verb.RESUME  # nothing more happens to a stopped clock
    if verb is Verb.STOP:
        clock.meet(at)
    elif verb is Verb.PAUSE:
        clock.pause(reason or "paused", at)
    elif verb is Verb.RESUME:
        if clock.state is not ClockState.PAUSED:
            return False
        clock.resume(max(at, clock.pauses[-1].paused_at))
    elif verb is Verb.CANCEL:
        clock.cancel(reason or "cancelled", at)
    elif verb is Verb.RETARGET:
        assert facts is not None
        clock.retarget(facts, at, rt.calendar_for(uow, clock.policy, clock.kind), reason or "reclassified")
    changes.touch(clock)
    return True


def _start(uow: UnitOfWork, rt: Runtime, subject_row: dict[str, Any], kind: str, at: datetime,
           clocks: dict[str, Clock], changes: Changes) -> None:
    existing = clocks.get(kind)
    if existing is not None and not (kind in STARTS_AGAIN_AFTER_MET and existing.met_at is not None
                                     and utc(at) > existing.met_at):
        return  # started already (a redelivery under another id, a second assignment)
    policy = rt.policy(uow, subject_row["policy_version"])
    facts = _facts_of(subject_row)
    clock = start_clock(clock_id=clock_id_for(subject_row["request_no"], kind), request_no=subject_row["request_no"],
                        kind=kind, policy=policy, facts=facts, started_at=at,
                        calendar=rt.calendar_for(uow, policy, kind))
    if clock is None:
        return
    clocks[kind] = clock
    changes.touch(clock)
    # Facts that overtook the start, in the order they happened.
    applied = []
    for p in repo.pending_for(uow, subject_row["request_no"]):
        if p["clock"] not in (kind, "*") or utc(p["at"]) < clock.started_at:
            continue
        if _apply(clock, Verb(p["verb"]), p["at"], p["reason"], changes, uow, rt) and p["clock"] != "*":
            applied.append(p["id"])
    repo.delete_pending(uow, subject_row["request_no"], applied)


def _act(uow: UnitOfWork, rt: Runtime, subject_row: dict[str, Any], a: ClockAction, clocks: dict[str, Clock],
         changes: Changes) -> None:
    if a.verb is Verb.START:
        _start(uow, rt, subject_row, a.clock, a.at, clocks, changes)
        return
    if a.verb is Verb.RETARGET:
        facts = _facts_of(subject_row)
        for clock in clocks.values():
            if clock.state not in TERMINAL:
                _apply(clock, a.verb, a.at, a.reason, changes, uow, rt, facts)
        return
    targets = list(clocks.values()) if a.clock == "*" else [c for c in [clocks.get(a.clock)] if c is not None]
    if a.clock == "*" or not targets:
        # Later-starting clocks must still see this fact (it may have overtaken their start).
        repo.add_pending(uow, a.subject, a.clock, str(a.verb), a.at, a.reason)
    for clock in targets:
        was_paused = clock.state is ClockState.PAUSED
        done = _apply(clock, a.verb, a.at, a.reason, changes, uow, rt)
        if a.verb is Verb.RESUME and not done:
            repo.add_pending(uow, a.subject, a.clock, str(a.verb), a.at, a.reason)  # overtook its pause
        if a.verb is Verb.PAUSE and not was_paused and clock.state is ClockState.PAUSED:
            for p in repo.pending_for(uow, a.subject):
                if p["clock"] == a.clock and p["verb"] == "resume" and utc(p["at"]) >= clock.pauses[-1].paused_at:
                    _apply(clock, Verb.RESUME, p["at"], p["reason"], changes, uow, rt)
                    repo.delete_pending(uow, a.subject, [p["id"]])
                    break


def _request_facts(row: dict[str, Any]) -> RequestFacts:
    extra = row["facts"] or {}
    prev = extra.get("previous_repair_at")
    return RequestFacts(
        request_no=row["request_no"], category=row["category"], registered_at=row["registered_at"],
        subcategory=row["subcategory"], priority=row["priority"], emergency=bool(row["emergency"]),
        resolved=row["resolved_at"] is not None,
        previous_repair_at=datetime.fromisoformat(prev) if prev else None, reopen_count=row["reopen_count"],
        cluster_size=row["cluster_size"], vip=bool(row["vip"]),
        compensation_demanded=bool(row["compensation_demanded"]), closed=bool(extra.get("closed_at")))


def _evaluate_conditions(uow: UnitOfWork, rt: Runtime, row: dict[str, Any], changes: Changes,
                         now: datetime | None = None) -> None:
    """Escalate on every rule that holds now and has not fired yet; then keep one due row per time-based rule
    at the instant it would come true (dropped when it no longer can: resolved, closed, fired)."""
    if not row["registered"] or row["category"] == "handover":
        return
    policy = rt.policy(uow, row["policy_version"])
    if not policy.conditions:
        return
    now = now or uow.now()
    facts = _request_facts(row)
    fired = frozenset(repo.fired_conditions(uow, row["request_no"]))
    hits = policy.evaluate_conditions(facts, now, fired)
    for hit in hits:
        escalation_id = uuid5(NS, f"{row['request_no']}/condition/{hit.rule}")
        run, events = LadderRun.start(escalation_id=escalation_id, request_no=row["request_no"],
                                      ladder=policy.scaled_ladder, rung_index=hit.rung_index, reason=hit.reason,
                                      source="condition", now=now, rule=hit.rule, climb_further=hit.climb)
        repo.record_condition(uow, row["request_no"], hit.rule, escalation_id, now)
        changes.runs.append(run)
        changes.arm_climb(run)
        for e in events:
            changes.record(e)
    for rule, due in policy.condition_schedule(facts, now, fired | {h.rule for h in hits}).items():
        changes.request_timers.append((row["request_no"], "condition", rule, due,
                                       f"{rule}@{due.isoformat()}" if due is not None else None))


def _register(uow: UnitOfWork, rt: Runtime, subject: str, row: dict[str, Any], data: dict[str, Any],
              event_type: str) -> dict[str, Any]:
    if row["registered"]:
        return row
    version = repo.latest_policy_version(uow)
    if version is None:
        raise NotReady("no escalation policy saved yet")
    if event_type == "ShiftHandoverPublished":
        values: dict[str, Any] = {**HANDOVER_FACTS, "registered": True, "policy_version": version,
                                  "property_id": data["property_id"], "department": data.get("department"),
                                  "registered_at": data["published_at"]}
    else:
        values = {"registered": True, "policy_version": version, "property_id": data["property_id"],
                  "building": data.get("building"), "unit": data.get("unit"), "channel": data["channel"],
                  "category": data["category"], "subcategory": data.get("subcategory"),
                  "priority": data["priority"], "emergency": bool(data["emergency"]),
                  "vip": bool(data.get("vip")), "compensation_demanded": bool(data.get("compensation_demanded")),
                  "registered_at": data["registered_at"]}
        if data.get("unit") and data.get("subcategory"):
            prev = repo.previous_repair_resolved_at(uow, data["property_id"], data["unit"], data["subcategory"],
                                                    subject, data["registered_at"])
            if prev is not None:
                values["facts"] = {**(row["facts"] or {}), "previous_repair_at": prev.isoformat()}
    repo.update_subject(uow, subject, **values)
    return {**row, **values}


def concerns_us(body: dict[str, Any]) -> bool:
    """Whether a delivered event (its envelope valid, its data not yet loaded) can change anything here. A
    WorkOrderCreated that no return visit raised cannot: a third of this service's deliveries under load, whose
    data it then reads none of, so it does not pay to validate it (the envelope is still validated; what this
    service reads of an event it does handle is validated in full, and dead-lettered when it fails)."""
    data = body.get("data")
    event_type = body.get("event_type")
    return not (isinstance(data, dict) and isinstance(event_type, str) and event_type not in FACT_BEARING
                and moves_no_clock(event_type, data))


def handle_event(uow: UnitOfWork, rt: Runtime, env: dict[str, Any]) -> str | None:
    event_type, data = env["event_type"], env["data"]
    if event_type not in CLOCK_TABLE and event_type not in ("IncidentClustered", "ResidentRejected"):
        return None
    if not concerns_us(env):
        # e.g. a WorkOrderCreated that no return visit raised: nothing to record, so no transaction at all
        # (the consumer's loader already acknowledges those unread; this covers other callers).
        return "ignored"
    actions = actions_for(event_type, data, env["occurred_at"])
    with uow:
        if not uow.claim(str(env["event_id"]), QUEUE):
            return "duplicate"
        changes = Changes()
        if event_type == "IncidentClustered":
            # The incident escalates once: its size is a fact of its first report (intake's parent of the cluster).
            first = data["request_nos"][0]
            row = repo.lock_subject(uow, first)
            size = max(int(row["cluster_size"]), int(data["children_count"]))
            repo.update_subject(uow, first, cluster_size=size)
            _evaluate_conditions(uow, rt, {**row, "cluster_size": size}, changes)
            changes.save(uow)
            uow.commit()
            return "ok"
        subject = actions[0].subject if actions else str(data["request_no"])
        row = repo.lock_subject(uow, subject)
        if event_type in ("RequestRegistered", "ShiftHandoverPublished"):
            row = _register(uow, rt, subject, row, data, event_type)
        needs_facts = any(a.verb in (Verb.START, Verb.RETARGET) for a in actions)
        if needs_facts and not row["registered"]:
            raise NotReady(f"{event_type} for {subject} before its registration")
        facts_changed = event_type in ("RequestRegistered", "RequestReclassified", "ResidentRejected",
                                       "WorkOrderResolved", "RequestCancelled", "RequestClosed")
        updates: dict[str, Any] = {}
        if event_type == "RequestReclassified":
            updates = {k: data.get(k) for k in ("category", "subcategory", "priority", "emergency")}
        elif event_type == "WorkOrderAssigned":
            updates = {"department": data["department"]}
        elif event_type == "WorkOrderResolved":
            updates = {"resolved_at": data["resolved_at"], "department": data["department"]}
        elif event_type == "ResidentRejected":
            updates = {"reopen_count": max(int(row["reopen_count"]), int(data["rejection_count"]))}
        elif event_type in ("RequestCancelled", "RequestClosed"):
            # No longer open: a time-based rule over days open stops counting (its due row is dropped).
            at = data.get("cancelled_at") or data.get("closed_at") or env["occurred_at"]
            updates = {"facts": {**(row["facts"] or {}), "closed_at": utc(at).isoformat()}}
        if updates:
            repo.update_subject(uow, subject, **updates)
            row = {**row, **updates}
        clocks = _load_clocks(uow, rt, subject)
        for a in actions:
            _act(uow, rt, row, a, clocks, changes)
        if event_type == "RequestReclassified" and row["registered"]:
            # A clock the old class did not call for may apply now, counted from the registration.
            for kind in REGISTRATION_CLOCKS:
                _start(uow, rt, row, kind, row["registered_at"], clocks, changes)
        if facts_changed:
            _evaluate_conditions(uow, rt, row, changes)
        changes.save(uow)
        uow.commit()
    return "ok"


# -- the due-timer pass ----------------------------------------------------------------------------------------------

def fire_due(uow: UnitOfWork, rt: Runtime, limit: int) -> tuple[int, list[float]]:
    """One batch of due timers: lock them (skipping other instances' rows), fire each on its clock, save, publish,
    mark fired, commit. Returns (rows taken, lateness of each fired timer in seconds)."""
    with uow:
        now = uow.now()
        due = repo.due_timers(uow, now, limit)
        if not due:
            return 0, []
        locked = {r["clock_id"]: r for r in repo.lock_clocks_skip_locked(uow, sorted({d["clock_id"] for d in due}))}
        changes = Changes()
        clocks: dict[UUID, Clock] = {}
        fired_ids: list[int] = []
        for d in due:
            r = locked.get(d["clock_id"])
            if r is None:
                continue  # a handler holds this clock now; the next pass takes the timer
            clock = clocks.get(d["clock_id"])
            if clock is None:
                clock = clocks[d["clock_id"]] = Clock.from_dict(r["data"], rt.policy(uow, r["policy_version"]))
            if clock.fire(d["kind"], d["token"], now):
                changes.touch(clock)
            fired_ids.append(d["id"])
        fired_at = uow.now()
        repo.mark_fired(uow, fired_ids, fired_at)
        changes.save(uow)
        uow.commit()
    taken = set(fired_ids)
    late = [(fired_at - d["due_at"]).total_seconds() for d in due if d["id"] in taken]
    return len(due), late


def fire_due_requests(uow: UnitOfWork, rt: Runtime, limit: int) -> tuple[int, list[float]]:
    """One batch of due request timers (time-based condition rules, condition ladder climbs): lock them and their
    requests (skipping what another instance or a handler holds), mark them fired, act, commit. Returns (rows
    taken, lateness of each in seconds); rows whose request was busy are left for the next pass."""
    with uow:
        now = uow.now()
        due = repo.due_request_timers(uow, now, limit)
        if not due:
            return 0, []
        subjects = {r["request_no"]: r
                    for r in repo.lock_subjects_skip_locked(uow, sorted({d["request_no"] for d in due}))}
        taken = [d for d in due if d["request_no"] in subjects]
        fired_at = uow.now()
        # Marked before acting: re-arming a rule replaces only unfired rows, and the fired row is the record.
        repo.mark_request_timers_fired(uow, [d["id"] for d in taken], fired_at)
        changes = Changes()
        evaluated: set[str] = set()
        for d in taken:
            row = subjects[d["request_no"]]
            if d["kind"] == "condition":
                if d["request_no"] not in evaluated:  # one evaluation covers every rule of the request
                    evaluated.add(d["request_no"])
                    _evaluate_conditions(uow, rt, row, changes, now)
            elif d["kind"] == "climb":
                _climb_condition_run(uow, rt, row, d, changes)
        changes.save(uow)
        uow.commit()
    return len(taken), [(fired_at - d["due_at"]).total_seconds() for d in taken]


def _climb_condition_run(uow: UnitOfWork, rt: Runtime, subject: dict[str, Any], timer: dict[str, Any],
                         changes: Changes) -> None:
    esc = repo.lock_escalation(uow, UUID(timer["ref"]))
    if esc is None:
        return
    run = LadderRun.from_dict(esc["data"], rt.policy(uow, subject["policy_version"]).scaled_ladder)
    due = run.next_due()
    if due is None or timer["token"] != f"rung{run.rung_index + 1}":
        return  # stale: acknowledged, at the top, or this rung was told already
    # The rung is told as of its due instant, so a late pass does not push every later rung later.
    for e in run.climb(due):
        changes.record(e)
    changes.runs.append(run)
    changes.arm_climb(run)


# -- staff actions ---------------------------------------------------------------------------------------------------

def acknowledge(uow: UnitOfWork, rt: Runtime, escalation_id: UUID, by: str) -> dict[str, Any]:
    with uow:
        row = repo.get_escalation(uow, escalation_id)
        if row is None:
            raise NotFound(f"no escalation {escalation_id}", field="escalation_id")
        subject = repo.lock_subject(uow, row["request_no"])
        changes = Changes()
        now = uow.now()
        if row["clock_id"] is not None:
            clocks = _load_clocks(uow, rt, row["request_no"])
            clock = next(c for c in clocks.values() if c.clock_id == row["clock_id"])
            clock.acknowledge_escalation(by, now)
            changes.touch(clock)
            run = clock.escalation
        else:
            row = repo.lock_escalation(uow, escalation_id)
            assert row is not None
            policy = rt.policy(uow, subject["policy_version"])
            run = LadderRun.from_dict(row["data"], policy.scaled_ladder)
            for e in run.acknowledge(by, now):
                changes.record(e)
            changes.runs.append(run)
            changes.arm_climb(run)  # acknowledged: its pending rung, if any, is dropped
        changes.save(uow)
        uow.commit()
    assert run is not None
    return _escalation_view(repo.escalation_row(run) | {"data": run.to_dict()})


# -- reading ---------------------------------------------------------------------------------------------------------

def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def _clock_view(clock: Clock, now: datetime) -> dict[str, Any]:
    v = clock.view(now)
    v["pauses"] = [{k: _iso(x) for k, x in p.items()} for p in v["pauses"]]
    out = {k: _iso(x) for k, x in v.items()}
    out["target_seconds"] = clock.target_seconds
    if clock.state not in TERMINAL:
        out["warn_at"] = clock._wall_at(clock._warn_running()).isoformat()
        deadline = clock.deadline + (timedelta(seconds=clock.paused_seconds(now) - clock.paused_seconds())
                                     if clock.current_pause else timedelta(0))
        out["deadline"] = deadline.isoformat()
        out["overdue"] = clock.breached_at is not None or (clock.state is ClockState.RUNNING and deadline <= now)
    return out


def _escalation_view(r: dict[str, Any]) -> dict[str, Any]:
    d = r["data"] if isinstance(r["data"], dict) else {}
    return {"escalation_id": str(r["escalation_id"]), "request_no": r["request_no"], "source": r["source"],
            "rule": r["rule"], "reason": r["reason"], "clock": r["clock"],
            "clock_id": str(r["clock_id"]) if r["clock_id"] else None, "rung": r["rung"],
            "rung_index": r["rung_index"], "climbs": d.get("climbs", []),
            "acknowledged_by": r["acknowledged_by"], "acknowledged_at": _iso(r["acknowledged_at"]),
            "stopped": r["stopped"]}


def request_clocks(uow: UnitOfWork, rt: Runtime, request_no: str) -> dict[str, Any]:
    with uow:
        now = uow.now()
        rows = repo.clocks_for_view(uow, request_no)
        clocks = [Clock.from_dict(r["data"], rt.policy(uow, r["policy_version"])) for r in rows]
        escalations = repo.escalations_of(uow, request_no)
    if not clocks and not escalations:
        raise NotFound(f"no clocks for request {request_no}", field="request_no")
    return {"request_no": request_no, "clocks": [_clock_view(c, now) for c in clocks],
            "escalations": [_escalation_view(e) for e in escalations]}


def clocks_at_risk(uow: UnitOfWork, rt: Runtime, property_id: str | None, department: str | None,
                   limit: int = 500) -> dict[str, Any]:
    with uow:
        now = uow.now()
        rows = repo.at_risk(uow, now, property_id, department, limit)
        items = []
        for r in rows:
            view = _clock_view(Clock.from_dict(r["data"], rt.policy(uow, r["policy_version"])), now)
            view["property_id"], view["department"] = r["property_id"], r["department"]
            view["risk"] = "overdue" if view.get("overdue") else "warning"
            items.append(view)
    return {"at": now.isoformat(), "items": items, "truncated": len(items) >= limit}


def clock_state_summary(uow: UnitOfWork, request_no: str) -> list[dict[str, Any]]:
    with uow:
        rows = repo.rows(uow, "SELECT kind, state, deadline FROM clocks WHERE request_no = %s ORDER BY started_at",
                         (request_no,))
    return [{"clock": r["kind"], "state": r["state"], "deadline": r["deadline"].isoformat()} for r in rows]

