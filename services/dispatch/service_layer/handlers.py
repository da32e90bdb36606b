"""Dispatch's use cases: each opens the unit of work, runs the domain, writes state, load and events together.

Technician load is the number of work orders a technician holds (assigned and not yet resolved, or back after a
resident's rejection). Every use case that changes who holds a work order computes the holder before and after and
applies the difference with atomic increments in the same transaction, so the column stays exact whatever runs
concurrently.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from collections.abc import Callable
from zoneinfo import ZoneInfo

from services.common.db import UnitOfWork
from services.common.domain import DomainError, NotFound
from services.common.nameko_ext import NotReady
from services.dispatch.adapters import repository as repo
from services.dispatch.domain.assignment import (
    AssignmentPolicy, NoAssignee, choose_assignee, deadline_for, manual_assignment,
)
from services.dispatch.domain.daily_check import daily_check
from services.dispatch.domain.fees import MaterialUse, PriceList
from services.dispatch.domain.handover import DEFAULT_ACK_MINUTES, ShiftHandover
from services.dispatch.domain.model import WorkOrder
from services.dispatch.domain.roster import DEFAULT_SHIFTS, Roster, ShiftPattern
from services.dispatch.domain.routing import DEPARTMENTS, Route, RoutingTable

log = logging.getLogger(__name__)

QUEUE = "dispatch.events"
# States in which the work order's technician holds it (counts in their load).
HOLDING = frozenset({"assigned", "accepted", "en_route", "on_site", "temporary_measure", "paused",
                     "resident_rejected"})


@dataclass
class Settings:
    """Everything read once at start: tables from files and timer settings."""

    routing: RoutingTable
    policy: AssignmentPolicy
    prices: PriceList
    shifts: tuple[ShiftPattern, ...] = DEFAULT_SHIFTS
    tz: str = "Asia/Shanghai"
    check_time: time = time(18, 0)
    ack_minutes: float = DEFAULT_ACK_MINUTES
    catch_up: timedelta = timedelta(seconds=900)
    properties: tuple[str, ...] = ()
    # Per-instance memo of timer work already seen done (avoids re-reading the tables every tick).
    memo: dict[str, Any] = field(default_factory=dict)
    # Calendar, on-call and leads per (property, department, day), for a few seconds: the hot path's reads.
    roster_cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def local_date(self, now: datetime) -> date:
        return now.astimezone(self.zone).date()


def holder(wo: WorkOrder) -> str | None:
    return wo.technician_id if wo.state in HOLDING else None


def _apply_load(uow: UnitOfWork, before: str | None, wo: WorkOrder) -> None:
    after = holder(wo)
    if before == after:
        return
    deltas: dict[str, int] = {}
    if before:
        deltas[before] = deltas.get(before, 0) - 1
    if after:
        deltas[after] = deltas.get(after, 0) + 1
    repo.change_load(uow, deltas)


def _roster(uow: UnitOfWork, s: Settings, property_id: str, department: str | None, now: datetime,
            cached: bool = False) -> Roster:
    return repo.roster_for(uow, property_id, department, now, s.shifts, s.tz, s.local_date(now),
                           cache=s.roster_cache if cached else None)


def _route_of(wo: WorkOrder) -> Route:
    return Route(wo.department, wo.assign_to, wo.skill, "current")


def _assign_next(uow: UnitOfWork, s: Settings, wo: WorkOrder, now: datetime, by: str = "system") -> None:
    """Give an unassigned work order to the next person by the department's strategy, never to one who already
    declined or let it lapse. Nobody at all (no lead configured): it stays unassigned, visible in the backlog and
    the next handover, and the failure is logged."""
    roster = _roster(uow, s, wo.property_id, wo.department, now, cached=True)
    policy = s.policy.for_department(wo.department)
    cursor = repo.next_round_robin(uow, wo.property_id, wo.department) if policy.strategy == "round_robin" else None
    try:
        assignment = choose_assignee(_route_of(wo), roster, policy.strategy, now, exclude=wo.tried, zone=wo.zone,
                                     cursor=cursor)
    except NoAssignee as exc:
        log.error("no assignee for work order %s: %s", wo.id, exc.message)
        return
    accept_by = deadline_for(s.policy, roster, wo.department, now, assignment.reason)
    wo.apply(assignment, by=by, now=now, accept_by=accept_by)
    if assignment.cursor is not None:
        repo.set_round_robin(uow, wo.property_id, wo.department, assignment.cursor)


def present(wo: WorkOrder | dict[str, Any]) -> dict[str, Any]:
    doc = repo.to_doc(wo) if isinstance(wo, WorkOrder) else wo
    return repo.json_ready(doc)


# ------------------------------------------------------------------------------------------ consumed events
def on_registered(uow: UnitOfWork, s: Settings, envelope: dict[str, Any]) -> str:
    d = envelope["data"]
    with uow:
        if not uow.claim(str(envelope["event_id"]), QUEUE):
            return "duplicate"
        if d.get("duplicate_of"):
            # The original request's work order does the work: a second technician would be sent to the same leak.
            repo.add_linked_request(uow, d["request_no"], d["duplicate_of"])
            uow.commit()
            return "linked"
        now = uow.now()
        wo = _new_work_order(s, d, now, route=s.routing.route(d["category"], d.get("subcategory"), d["property_id"]))
        created = _open(uow, s, wo, "registered", now)
        uow.commit()
    return "ok" if created else "duplicate"


def _new_work_order(s: Settings, d: dict[str, Any], now: datetime, route: Route, **extra: Any) -> WorkOrder:
    return WorkOrder.create(
        id=uuid.uuid4(), request_no=d["request_no"], property_id=d["property_id"], route=route,
        category=d["category"], subcategory=d.get("subcategory"), priority=d.get("priority") or "normal",
        building=d.get("building"), unit=d.get("unit"), area=d.get("area"),
        paid_service=bool(d.get("paid_service")), now=now, **extra)


class _Exists(Exception):
    pass


def _open(uow: UnitOfWork, s: Settings, wo: WorkOrder, origin: str, now: datetime) -> bool:
    """Assign, insert (once per request and origin), count the load, publish. False: it existed already; the
    savepoint undoes the assignment's side effects while the message stays recorded in the inbox. Only a
    round-robin assignment writes before the insert (its cursor): other strategies need no savepoint, which
    saves two round trips per work order."""
    writes_first = s.policy.for_department(wo.department).strategy == "round_robin"
    try:
        with uow.conn.transaction() if writes_first else contextlib.nullcontext():
            _assign_next(uow, s, wo, now)
            if not repo.insert_work_order(uow, wo, origin, now):
                raise _Exists
            _apply_load(uow, None, wo)
            uow.publish(wo.pull_events())
    except _Exists:
        return False
    return True


def on_cancelled(uow: UnitOfWork, s: Settings, envelope: dict[str, Any]) -> str:
    d = envelope["data"]
    return _cancel_for_request(uow, envelope, d["reason"], d["cancelled_by"], lambda wo: wo.is_open)


def on_closed(uow: UnitOfWork, s: Settings, envelope: dict[str, Any]) -> str:
    """Intake closed the request itself (a consultation answered at the desk, or closed by an agent): work not yet
    done is cancelled so it leaves the backlog; resolved work keeps its record and awaits the resident as usual."""
    d = envelope["data"]
    return _cancel_for_request(uow, envelope, f"request closed at intake ({d['closed_reason']})", d["closed_by"],
                               lambda wo: wo.is_unfinished)


def _cancel_for_request(uow: UnitOfWork, envelope: dict[str, Any], reason: str, by: str,
                        applies: Callable[[WorkOrder], bool]) -> str:
    request_no = envelope["data"]["request_no"]
    with uow:
        if not uow.claim(str(envelope["event_id"]), QUEUE):
            return "duplicate"
        wo = repo.current_for_request(uow, request_no)
        if wo is None:
            if repo.is_linked_request(uow, request_no):
                uow.commit()
                return "ok"
            raise NotReady(f"no work order yet for {request_no}")
        if applies(wo):
            now = uow.now()
            before = holder(wo)
            wo.cancel(reason=reason, by=by, now=now)
            _save(uow, wo, before, now)
        uow.commit()
    return "ok"


def on_reclassified(uow: UnitOfWork, s: Settings, envelope: dict[str, Any]) -> str:
    """Same department: the work order takes the new class and priority and keeps its assignee. Another
    department: the open work order is cancelled (reason names the new department) and a new one is opened there.
    Work already resolved or finished is left alone: the reclassification came too late to move it."""
    d = envelope["data"]
    with uow:
        if not uow.claim(str(envelope["event_id"]), QUEUE):
            return "duplicate"
        wo = repo.current_for_request(uow, d["request_no"])
        if wo is None:
            if repo.is_linked_request(uow, d["request_no"]):
                uow.commit()
                return "ok"
            raise NotReady(f"no work order yet for {d['request_no']}")
        now = uow.now()
        route = s.routing.route(d["category"], d.get("subcategory"), d["property_id"])
        if not wo.is_unfinished:
            uow.commit()
            return "ignored"
        if route.department == wo.department:
            wo.category, wo.subcategory, wo.priority = d["category"], d.get("subcategory"), d["priority"]
            wo.skill, wo.assign_to = route.skill, route.assign_to
            repo.save_work_order(uow, wo, now)
            uow.commit()
            return "updated"
        before = holder(wo)
        wo.cancel(reason=f"reclassified to {route.department}", by=d["reclassified_by"], now=now)
        _save(uow, wo, before, now)
        new = WorkOrder.create(
            id=uuid.uuid4(), request_no=wo.request_no, property_id=wo.property_id, route=route,
            category=d["category"], subcategory=d.get("subcategory"), priority=d["priority"], building=wo.building,
            unit=wo.unit, area=wo.area, paid_service=wo.paid_service, now=now, by=d["reclassified_by"],
            due_at=wo.due_at)
        _open(uow, s, new, f"reclassified:{envelope['event_id']}", now)
        uow.commit()
    return "rerouted"


def on_follow_up(uow: UnitOfWork, s: Settings, envelope: dict[str, Any]) -> str:
    """A return visit found the work unfinished: a linked work order (follow_up_of) in the same department unless
    feedback names another; once per follow_up_id."""
    d = envelope["data"]
    with uow:
        if not uow.claim(str(envelope["event_id"]), QUEUE):
            return "duplicate"
        original = (repo.lock_work_order(uow, d["work_order_id"]) if d.get("work_order_id") else None) \
            or repo.current_for_request(uow, d["request_no"], lock=False)
        if original is None and not d.get("department"):
            raise NotReady(f"no work order for {d['request_no']} to follow up")
        now = uow.now()
        category = original.category if original else "repair"
        subcategory = d.get("subcategory") or (original.subcategory if original else None)
        route = s.routing.route(category, subcategory, d["property_id"])
        department = d.get("department") or (original.department if original else route.department)
        if department != route.department:
            if department not in DEPARTMENTS:
                raise DomainError(f"unknown department {department!r}", field="department", code="invalid_route")
            route = Route(department, "department", None, "follow_up")
        wo = WorkOrder.create(
            id=uuid.uuid4(), request_no=d["request_no"], property_id=d["property_id"], route=route,
            category=category, subcategory=subcategory, priority=original.priority if original else "urgent",
            building=d.get("building") or (original.building if original else None),
            unit=d.get("unit") or (original.unit if original else None),
            area=original.area if original else None, paid_service=False, now=now, by="feedback",
            due_at=d["due_at"], follow_up_of=original.id if original else d.get("work_order_id"))
        created = _open(uow, s, wo, f"follow_up:{d['follow_up_id']}", now)
        uow.commit()
    return "ok" if created else "duplicate"


def _save(uow: UnitOfWork, wo: WorkOrder, before: str | None, now: datetime) -> None:
    repo.save_work_order(uow, wo, now)
    _apply_load(uow, before, wo)
    uow.publish(wo.pull_events())


# ----------------------------------------------------------------------------------------------- commands
def assign(uow: UnitOfWork, s: Settings, request_no: str, body: dict[str, Any]) -> dict[str, Any]:
    """A dispatcher's assignment or reassignment, with a reason."""
    with uow:
        wo = repo.current_for_request(uow, request_no)
        if wo is None:
            raise NotFound(f"no work order for request {request_no}", field="request_no")
        result = _manual(uow, s, wo, body)
        uow.commit()
    return result


def _manual(uow: UnitOfWork, s: Settings, wo: WorkOrder, body: dict[str, Any]) -> dict[str, Any]:
    now = uow.now()
    tech = repo.get_technician(uow, body["technician_id"])
    if tech is None:
        raise NotFound(f"technician {body['technician_id']!r} is not on the roster", field="technician_id")
    roster = _roster(uow, s, tech["property_id"], tech["department"], now)
    choice = manual_assignment(roster, tech["technician_id"], wo.department, now, body.get("reason") or "")
    accept_by = deadline_for(s.policy, roster, wo.department, now, "manual")
    before = holder(wo)
    if wo.state == "unassigned":
        wo.assign(choice.technician_id or "", strategy="manual", reason=choice.detail, by=body["by"], now=now,
                  accept_by=accept_by, night=choice.night)
    else:
        wo.reassign(choice.technician_id or "", reason=body["reason"], by=body["by"], now=now, accept_by=accept_by,
                    night=choice.night)
    _save(uow, wo, before, now)
    return present(wo)


def resolve(uow: UnitOfWork, s: Settings, request_no: str, body: dict[str, Any]) -> dict[str, Any]:
    with uow:
        wo = repo.current_for_request(uow, request_no)
        if wo is None:
            raise NotFound(f"no work order for request {request_no}", field="request_no")
        now = uow.now()
        before = holder(wo)
        materials = [MaterialUse(m, 1) if isinstance(m, str) else _material(m) for m in body.get("materials") or ()]
        wo.resolve(body["resolution"], by=body["by"], now=now, materials=materials, fee_cents=body.get("fee_cents"))
        _save(uow, wo, before, now)
        uow.commit()
    return present(wo)


def _material(m: dict[str, Any]) -> MaterialUse:
    return MaterialUse(m["name"], int(m.get("quantity", 1)), m.get("unit") or "个", int(m.get("amount_cents", 0)))


def _tech_of(body: dict[str, Any]) -> str:
    return body.get("technician_id") or body["by"]


def _arrive(wo: WorkOrder, by: str, now: datetime) -> None:
    # Arriving straight from "accepted" (the technician was already in the building) records the departure at
    # the same instant, so the history still reads accepted -> en_route -> on_site.
    if wo.state == "accepted":
        wo.depart(by=by, now=now)
    wo.arrive(by=by, now=now)


ACTIONS: dict[str, Callable[[WorkOrder, Settings, dict[str, Any], datetime], None]] = {
    "accept": lambda wo, s, b, now: wo.accept(_tech_of(b), now=now),
    "grab": lambda wo, s, b, now: wo.grab(_tech_of(b), now=now),
    "decline": lambda wo, s, b, now: wo.decline(_tech_of(b), reason=b.get("reason") or "", now=now),
    "depart": lambda wo, s, b, now: wo.depart(by=b["by"], now=now),
    "arrive": lambda wo, s, b, now: _arrive(wo, b["by"], now),
    "temporary_measure": lambda wo, s, b, now: wo.take_temporary_measure(b.get("measure") or "", by=b["by"], now=now),
    "pause": lambda wo, s, b, now: wo.pause(b.get("reason") or "", by=b["by"], now=now, until=b.get("until"),
                                            note=b.get("note")),
    "resume": lambda wo, s, b, now: wo.resume(by=b["by"], now=now),
    "appointment": lambda wo, s, b, now: wo.book_appointment(b["visit_at"], by=b["by"], now=now, note=b.get("note")),
    "quote": lambda wo, s, b, now: wo.issue_quote(
        s.prices.quote([(i["code"], int(i["quantity"])) for i in b.get("items") or ()]), by=b["by"], now=now),
    "consent": lambda wo, s, b, now: wo.record_consent(method=b.get("method") or "", by=b["by"], now=now),
    "resolve": lambda wo, s, b, now: wo.resolve(
        b.get("resolution") or "", by=b["by"], now=now,
        materials=[MaterialUse(m, 1) if isinstance(m, str) else _material(m) for m in b.get("materials") or ()],
        fee_cents=b.get("fee_cents")),
    "resident_accept": lambda wo, s, b, now: wo.resident_accept(by=b["by"], now=now, note=b.get("note")),
    "resident_reject": lambda wo, s, b, now: wo.resident_reject(reason=b.get("reason") or "", by=b["by"], now=now),
    "close": lambda wo, s, b, now: wo.close(by=b["by"], now=now),
    "cancel": lambda wo, s, b, now: wo.cancel(reason=b.get("reason") or "", by=b["by"], now=now),
}


def act(uow: UnitOfWork, s: Settings, work_order_id: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
    """One lifecycle step on a work order by its id; refusals name the current state (409) or the field (422)."""
    if action not in ACTIONS and action != "reassign":
        raise DomainError(f"unknown action {action!r}", field="action", code="unknown_action")
    with uow:
        wo = repo.lock_work_order(uow, _uuid(work_order_id))
        if wo is None:
            raise NotFound(f"no work order {work_order_id}", field="work_order_id")
        if action == "reassign":
            result = _manual(uow, s, wo, body)
            uow.commit()
            return result
        now = uow.now()
        before = holder(wo)
        ACTIONS[action](wo, s, body, now)
        if action == "decline":
            _assign_next(uow, s, wo, now)
        _save(uow, wo, before, now)
        uow.commit()
    return present(wo)


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"no work order {value}", field="work_order_id") from None


def get_work_order(uow: UnitOfWork, work_order_id: str) -> dict[str, Any]:
    with uow:
        doc = repo.get_doc(uow, _uuid(work_order_id))
    if doc is None:
        raise NotFound(f"no work order {work_order_id}", field="work_order_id")
    return present(doc)


def request_work_orders(uow: UnitOfWork, request_no: str) -> dict[str, Any]:
    with uow:
        docs = repo.work_orders_for_request(uow, request_no)
    return {"request_no": request_no, "items": [present(d) for d in docs]}


def summary(uow: UnitOfWork, request_no: str) -> dict[str, Any] | None:
    """The `state` part of timeline(): the request's live work order in short."""
    with uow:
        wo = repo.current_for_request(uow, request_no, lock=False)
    if wo is None:
        return None
    return repo.json_ready({
        "work_order_id": wo.id, "state": wo.state, "department": wo.department, "technician_id": wo.technician_id,
        "follow_up_of": wo.follow_up_of,
        "history": [{"from": h.from_state, "to": h.to_state, "at": h.at, "by": h.by, "reason": h.reason}
                    for h in wo.history],
    })


# ------------------------------------------------------------------------------------------------ rosters
def put_technician(uow: UnitOfWork, technician_id: str, body: dict[str, Any]) -> dict[str, Any]:
    if body.get("department") not in DEPARTMENTS:
        raise DomainError(f"department must be one of {', '.join(DEPARTMENTS)}", field="department",
                          code="invalid_department")
    with uow:
        row = repo.upsert_technician(uow, {**body, "technician_id": technician_id})
        uow.commit()
    return repo.json_ready(row)


def set_absent(uow: UnitOfWork, technician_id: str, absent: bool) -> dict[str, Any]:
    with uow:
        row = repo.set_absent(uow, technician_id, absent)
        if row is None:
            raise NotFound(f"technician {technician_id!r} is not on the roster", field="technician_id")
        uow.commit()
    return repo.json_ready(row)


def get_technician(uow: UnitOfWork, s: Settings, technician_id: str) -> dict[str, Any]:
    with uow:
        row = repo.get_technician(uow, technician_id)
        if row is None:
            raise NotFound(f"technician {technician_id!r} is not on the roster", field="technician_id")
        now = uow.now()
        shifts = repo.shifts_of(uow, technician_id)
        roster = _roster(uow, s, row["property_id"], row["department"], now)
    out = repo.json_ready(row)
    out["shifts"] = [repo.json_ready(x) for x in shifts]
    out["on_duty"] = roster.is_on_duty(technician_id, now)
    return out


def list_technicians(uow: UnitOfWork, query: dict[str, Any]) -> dict[str, Any]:
    with uow:
        rows = repo.list_technicians(uow, query.get("property_id"), query.get("department"))
    return {"items": [repo.json_ready(r) for r in rows]}


def add_shifts(uow: UnitOfWork, s: Settings, entries: list[dict[str, Any]]) -> dict[str, Any]:
    names = {p.name for p in s.shifts}
    with uow:
        for i, e in enumerate(entries):
            if e["shift"] not in names:
                raise DomainError(f"entries[{i}]: shift must be one of {', '.join(sorted(names))}", field="shift",
                                  code="invalid_shift")
            if repo.get_technician(uow, e["technician_id"]) is None:
                raise NotFound(f"entries[{i}]: technician {e['technician_id']!r} is not on the roster",
                               field="technician_id")
            day = date.fromisoformat(e["date"]) if e.get("date") else None
            if e.get("remove"):
                repo.remove_shift(uow, e["technician_id"], e["shift"], day)
            else:
                repo.add_shift(uow, e["technician_id"], e["shift"], day, bool(e.get("lead")))
        uow.commit()
    return {"count": len(entries)}


def set_team_person(uow: UnitOfWork, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    with uow:
        tech = repo.get_technician(uow, body["technician_id"])
        if tech is None:
            raise NotFound(f"technician {body['technician_id']!r} is not on the roster", field="technician_id")
        if (tech["property_id"], tech["department"]) != (body["property_id"], body["department"]):
            raise DomainError(f"{body['technician_id']} works in {tech['property_id']}/{tech['department']}",
                              field="technician_id", code="wrong_team")
        if kind == "lead":
            repo.set_lead(uow, body["property_id"], body["department"], body["technician_id"])
        else:
            night = date.fromisoformat(body["night"]) if body.get("night") else None
            repo.set_on_call(uow, body["property_id"], body["department"], night, body["technician_id"])
        uow.commit()
    return {kind: body}


def team(uow: UnitOfWork, s: Settings, property_id: str, department: str) -> dict[str, Any]:
    """Who answers for a department now: on duty, the duty lead, the on-call person and the lead."""
    with uow:
        now = uow.now()
        roster = _roster(uow, s, property_id, department, now)
    current = roster.current_shift(now)
    return {"property_id": property_id, "department": department, "at": now.isoformat(),
            "shift": current[0].name if current else None,
            "on_duty": [{"technician_id": t.id, "load": t.load, "skills": sorted(t.skills)}
                        for t in roster.on_duty(department, now)],
            "duty_lead": roster.duty_lead(department, now), "on_call": roster.on_call_for(department, now),
            "lead": roster.lead_for(department)}


# ------------------------------------------------------------------------------------------------- timers
def time_out_acceptances(uow: UnitOfWork, s: Settings, limit: int = 100) -> int:
    """Lapsed assignments and offers: the miss is an event and the work goes to the next candidate. Rows are
    locked with SKIP LOCKED, so two instances never time out the same one; a redone pass finds nothing due."""
    with uow:
        now = uow.now()
        due = repo.lock_due_acceptances(uow, now, limit)
        for wo in due:
            before = holder(wo)
            wo.time_out(now=now)
            _assign_next(uow, s, wo, now)
            _save(uow, wo, before, now)
        uow.commit()
    return len(due)


def current_shift(s: Settings, now: datetime) -> tuple[ShiftPattern, date, datetime] | None:
    found = Roster({}, shifts=s.shifts, tz_name=s.tz).current_shift(now)
    if found is None:
        return None
    pattern, shift_date = found
    return pattern, shift_date, pattern.window(shift_date, s.zone)[0]


def publish_handovers(uow_factory: Callable[[], UnitOfWork], s: Settings) -> int:
    """At a shift change, one handover per property and department with people; the unique key (property,
    department, shift, date) makes it fire once whichever instance gets there first."""
    probe = uow_factory()
    with probe:
        now = probe.now()
        found = current_shift(s, now)
        if found is None:
            return 0
        pattern, shift_date, started = found
        key = f"handover:{pattern.name}:{shift_date}"
        if s.memo.get("handover") == key or now - started > s.catch_up:
            return 0
        teams = repo.teams(probe)
        done = {(r["property_id"], r["department"]) for r in probe.execute(
            "SELECT property_id, department FROM handovers WHERE incoming_shift = %s AND shift_date = %s",
            (pattern.name, shift_date)).fetchall()}
    outgoing = next((p.name for p in s.shifts if p.end == pattern.start and p.name != pattern.name), None)
    published = 0
    for t in teams:
        if (t["property_id"], t["department"]) in done:
            continue
        uow = uow_factory()
        with uow:
            roster = _roster(uow, s, t["property_id"], t["department"], now)
            orders = repo.unfinished(uow, t["property_id"], t["department"])
            handover, event = ShiftHandover.publish(
                id=uuid.uuid4(), property_id=t["property_id"], department=t["department"], orders=orders,
                incoming_shift=pattern.name, shift_date=shift_date, now=now, outgoing_shift=outgoing,
                incoming_lead=roster.duty_lead(t["department"], now), ack_minutes=s.ack_minutes)
            claimed = repo.claim_handover(uow, {
                "id": handover.id, "property_id": handover.property_id, "department": handover.department,
                "incoming_shift": handover.incoming_shift, "shift_date": handover.shift_date,
                "outgoing_shift": handover.outgoing_shift, "incoming_lead": handover.incoming_lead,
                "published_at": handover.published_at, "ack_due_at": handover.ack_due_at,
                "items": repo.json_ready(handover.items)})
            if claimed:
                uow.publish(event)
                uow.commit()
                published += 1
    s.memo["handover"] = key
    return published


def _handover_from_row(r: dict[str, Any]) -> ShiftHandover:
    return ShiftHandover(r["id"], r["property_id"], r["department"], r["outgoing_shift"], r["incoming_shift"],
                         r["shift_date"], r["incoming_lead"], r["published_at"], r["ack_due_at"], r["items"],
                         r["acknowledged_by"], r["acknowledged_at"], r["overdue_reported"])


def report_unacknowledged_handovers(uow: UnitOfWork, limit: int = 100) -> int:
    with uow:
        now = uow.now()
        rows = repo.lock_overdue_handovers(uow, now, limit)
        for r in rows:
            event = _handover_from_row(r).check_overdue(now=now)
            repo.mark_overdue_reported(uow, r["id"])
            if event is not None:
                uow.publish(event)
        uow.commit()
    return len(rows)


def acknowledge_handover(uow: UnitOfWork, handover_id: str, by: str) -> dict[str, Any]:
    with uow:
        try:
            hid = uuid.UUID(str(handover_id))
        except ValueError:
            raise NotFound(f"no handover {handover_id}", field="handover_id") from None
        row = repo.lock_handover(uow, hid)
        if row is None:
            raise NotFound(f"no handover {handover_id}", field="handover_id")
        handover = _handover_from_row(row)
        event = handover.acknowledge(by=by, now=uow.now())
        repo.save_handover_ack(uow, hid, by, event.acknowledged_at)
        uow.publish(event)
        uow.commit()
        row = {**row, "acknowledged_by": by, "acknowledged_at": event.acknowledged_at}
    return repo.json_ready(row)


def list_handovers(uow: UnitOfWork, query: dict[str, Any]) -> dict[str, Any]:
    with uow:
        rows = repo.list_handovers(uow, query.get("property_id"), query.get("department"),
                                   bool(query.get("unacknowledged")))
    return {"items": [repo.json_ready(r) for r in rows]}


def run_daily_checks(uow_factory: Callable[[], UnitOfWork], s: Settings) -> int:
    """At the check time (local), one report per property and day: the unique key makes it fire once. A service
    that was down at 18:00 publishes the day's check when it is back, the same evening."""
    probe = uow_factory()
    with probe:
        now = probe.now()
        local = now.astimezone(s.zone)
        if local.time() < s.check_time or s.memo.get("daily") == local.date():
            return 0
        props = sorted(set(s.properties) | set(repo.properties(probe)))
    day = local.date()
    day_start = datetime.combine(day, time(0, 0), tzinfo=s.zone)
    published = 0
    for property_id in props:
        uow = uow_factory()
        with uow:
            if repo.daily_check_exists(uow, property_id, day):
                continue
            report_id = uuid.uuid4()
            if not repo.claim_daily_check(uow, report_id, property_id, day, now):
                continue
            orders = repo.for_daily_check(uow, property_id, day_start, day_start + timedelta(days=1))
            report = daily_check(orders, property_id=property_id, now=now, tz=s.tz)
            event = report.to_event(report_id)
            lines = [d.to_dict() for d in report.departments]
            repo.store_daily_check(uow, report_id, property_id, day, repo.json_ready(
                {"totals": report.totals(), "departments": lines}), lines)
            uow.publish(event)
            uow.commit()
            published += 1
    s.memo["daily"] = day
    return published


def list_daily_checks(uow: UnitOfWork, query: dict[str, Any]) -> dict[str, Any]:
    day = query.get("day")
    with uow:
        rows = repo.daily_checks(uow, query.get("property_id"),
                                 date.fromisoformat(day) if isinstance(day, str) else day)
    return {"items": [repo.json_ready(r) for r in rows]}
