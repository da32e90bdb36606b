"""Dispatch's Postgres repository (its own schema only): work orders, rosters, handovers, daily checks."""
from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from typing import Any
from collections.abc import Iterable
from uuid import UUID

from psycopg.types.json import Jsonb

from services.common.db import BatchUnitOfWork, UnitOfWork, batch_state, dumps
from services.dispatch.domain.fees import Consent, MaterialUse, Quote, QuoteLine
from services.dispatch.domain.model import Appointment, HistoryEntry, WorkOrder
from services.dispatch.domain.roster import Roster, ShiftAssignment, ShiftPattern, Technician

TERMINAL = ("closed", "cancelled")


def _json(value: Any) -> Jsonb:
    return Jsonb(value, dumps=lambda o: dumps(o, _default))


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_ready(value: Any) -> Any:
    """Rows and documents as JSON for RPC answers: instants as ISO text, ids as strings."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_ready(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def _dt(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


# ---------------------------------------------------------------------------------------------- work orders
def to_doc(wo: WorkOrder) -> dict[str, Any]:
    return {
        "id": str(wo.id), "request_no": wo.request_no, "property_id": wo.property_id, "department": wo.department,
        "category": wo.category, "subcategory": wo.subcategory, "priority": wo.priority, "assign_to": wo.assign_to,
        "skill": wo.skill, "building": wo.building, "unit": wo.unit, "area": wo.area,
        "paid_service": wo.paid_service, "created_at": wo.created_at, "due_at": wo.due_at, "state": wo.state,
        "technician_id": wo.technician_id, "strategy": wo.strategy, "assigned_at": wo.assigned_at,
        "accept_by": wo.accept_by, "pool": list(wo.pool), "tried": sorted(wo.tried), "paused_from": wo.paused_from,
        "pause_reason": wo.pause_reason, "paused_at": wo.paused_at,
        "appointment": None if wo.appointment is None else {
            "visit_at": wo.appointment.visit_at, "booked_at": wo.appointment.booked_at,
            "booked_by": wo.appointment.booked_by, "note": wo.appointment.note},
        "quote": None if wo.quote is None else [line.to_dict() for line in wo.quote.lines],
        "consent": None if wo.consent is None else {
            "total_cents": wo.consent.total_cents, "method": wo.consent.method, "given_at": wo.consent.given_at,
            "recorded_by": wo.consent.recorded_by},
        "resolution": wo.resolution, "temporary_measure": wo.temporary_measure,
        "materials": [m.to_dict() for m in wo.materials], "fee_cents": wo.fee_cents, "resolved_at": wo.resolved_at,
        "closed_at": wo.closed_at, "night": wo.night, "rejections": wo.rejections,
        "follow_up_of": str(wo.follow_up_of) if wo.follow_up_of else None, "version": wo.version,
        "history": [{"from": h.from_state, "to": h.to_state, "at": h.at, "by": h.by, "reason": h.reason}
                    for h in wo.history],
    }


def from_doc(d: dict[str, Any]) -> WorkOrder:
    appointment = d.get("appointment")
    consent = d.get("consent")
    return WorkOrder(
        id=UUID(d["id"]), request_no=d["request_no"], property_id=d["property_id"], department=d["department"],
        category=d["category"], subcategory=d["subcategory"], priority=d["priority"], assign_to=d["assign_to"],
        skill=d["skill"], building=d["building"], unit=d["unit"], area=d["area"], paid_service=d["paid_service"],
        created_at=_dt(d["created_at"]),  # type: ignore[arg-type]
        due_at=_dt(d["due_at"]), state=d["state"], technician_id=d["technician_id"], strategy=d["strategy"],
        assigned_at=_dt(d["assigned_at"]), accept_by=_dt(d["accept_by"]), pool=tuple(d["pool"]),
        tried=set(d["tried"]), paused_from=d["paused_from"], pause_reason=d["pause_reason"],
        paused_at=_dt(d["paused_at"]),
        appointment=None if not appointment else Appointment(
            _dt(appointment["visit_at"]), _dt(appointment["booked_at"]),  # type: ignore[arg-type]
            appointment["booked_by"], appointment["note"]),
        quote=None if d["quote"] is None else Quote(tuple(
            QuoteLine(q["code"], q["name"], q["quantity"], q["unit_price_cents"]) for q in d["quote"])),
        consent=None if not consent else Consent(consent["total_cents"], consent["method"],
                                                 _dt(consent["given_at"]), consent["recorded_by"]),  # type: ignore
        resolution=d["resolution"], temporary_measure=d["temporary_measure"],
        materials=tuple(MaterialUse(m["name"], m["quantity"], m["unit"], m["amount_cents"]) for m in d["materials"]),
        fee_cents=d["fee_cents"], resolved_at=_dt(d["resolved_at"]), closed_at=_dt(d["closed_at"]),
        night=d["night"], rejections=d["rejections"],
        follow_up_of=UUID(d["follow_up_of"]) if d.get("follow_up_of") else None, version=d["version"],
        history=[HistoryEntry(h["from"], h["to"], _dt(h["at"]), h["by"], h["reason"])  # type: ignore[arg-type]
                 for h in d["history"]],
    )


def _columns(wo: WorkOrder, now: datetime) -> dict[str, Any]:
    return {"id": wo.id, "request_no": wo.request_no, "property_id": wo.property_id, "department": wo.department,
            "state": wo.state, "technician_id": wo.technician_id,
            "accept_by": wo.accept_by if wo.state in ("assigned", "offered") else None, "due_at": wo.due_at,
            "follow_up_of": wo.follow_up_of, "created_at": wo.created_at, "resolved_at": wo.resolved_at,
            "closed_at": wo.closed_at, "updated_at": now, "version": wo.version, "doc": _json(to_doc(wo))}


_WORK_ORDER_COLUMNS = ("id", "request_no", "origin", "property_id", "department", "state", "technician_id",
                       "accept_by", "due_at", "follow_up_of", "created_at", "resolved_at", "closed_at", "updated_at",
                       "version", "doc")


def insert_work_order(uow: UnitOfWork, wo: WorkOrder, origin: str, now: datetime) -> bool:
    """False when a work order of that origin exists already (another instance or delivery won)."""
    columns = {**_columns(wo, now), "origin": origin}
    # In a fast batch the batch's new work orders are one statement (a batch's only per-request round trip);
    # one whose origin exists already sends the batch round again carefully, where this answers False.
    head = f"INSERT INTO work_orders ({', '.join(_WORK_ORDER_COLUMNS)})"
    tail = "ON CONFLICT (request_no, origin) DO NOTHING"
    if uow.defer_insert(head, [columns[c] for c in _WORK_ORDER_COLUMNS], tail):
        return True
    row = uow.execute(f"{head} VALUES ({', '.join(f'%({c})s' for c in _WORK_ORDER_COLUMNS)}) {tail} RETURNING 1",
                      columns).fetchone()
    return row is not None


def save_work_order(uow: UnitOfWork, wo: WorkOrder, now: datetime) -> None:
    uow.execute(
        """UPDATE work_orders SET department = %(department)s, state = %(state)s, technician_id = %(technician_id)s,
               accept_by = %(accept_by)s, due_at = %(due_at)s, resolved_at = %(resolved_at)s,
               closed_at = %(closed_at)s, updated_at = %(updated_at)s, version = %(version)s, doc = %(doc)s
           WHERE id = %(id)s""", _columns(wo, now))


def lock_work_order(uow: UnitOfWork, work_order_id: UUID | str) -> WorkOrder | None:
    row = uow.execute("SELECT doc FROM work_orders WHERE id = %s FOR UPDATE", (str(work_order_id),)).fetchone()
    return from_doc(row["doc"]) if row else None


def current_for_request(uow: UnitOfWork, request_no: str, lock: bool = True) -> WorkOrder | None:
    """The request's live work order: the newest open one, else the newest of all."""
    row = uow.execute(
        "SELECT doc FROM work_orders WHERE request_no = %s "
        "ORDER BY (state IN ('closed', 'cancelled')), created_at DESC LIMIT 1" + (" FOR UPDATE" if lock else ""),
        (request_no,)).fetchone()
    return from_doc(row["doc"]) if row else None


def work_orders_for_request(uow: UnitOfWork, request_no: str) -> list[dict[str, Any]]:
    return [r["doc"] for r in uow.execute(
        "SELECT doc FROM work_orders WHERE request_no = %s ORDER BY created_at", (request_no,)).fetchall()]


def get_doc(uow: UnitOfWork, work_order_id: UUID | str) -> dict[str, Any] | None:
    row = uow.execute("SELECT doc FROM work_orders WHERE id = %s", (str(work_order_id),)).fetchone()
    return row["doc"] if row else None


def lock_due_acceptances(uow: UnitOfWork, now: datetime, limit: int) -> list[WorkOrder]:
    rows = uow.execute(
        "SELECT doc FROM work_orders WHERE state IN ('assigned', 'offered') AND accept_by <= %s "
        "ORDER BY accept_by LIMIT %s FOR UPDATE SKIP LOCKED", (now, limit)).fetchall()
    return [from_doc(r["doc"]) for r in rows]


def unfinished(uow: UnitOfWork, property_id: str, department: str) -> list[WorkOrder]:
    rows = uow.execute(
        "SELECT doc FROM work_orders WHERE property_id = %s AND department = %s "
        "AND state NOT IN ('closed', 'cancelled', 'resolved', 'resident_accepted')",
        (property_id, department)).fetchall()
    return [from_doc(r["doc"]) for r in rows]


def for_daily_check(uow: UnitOfWork, property_id: str, day_start: datetime, day_end: datetime) -> list[WorkOrder]:
    """Open work (any age) plus what was resolved or cancelled during the day: three indexed reads."""
    rows = uow.execute(
        """SELECT doc FROM work_orders WHERE property_id = %(p)s AND state NOT IN ('closed', 'cancelled')
           UNION
           SELECT doc FROM work_orders WHERE property_id = %(p)s AND resolved_at >= %(s)s AND resolved_at < %(e)s
           UNION
           SELECT doc FROM work_orders WHERE property_id = %(p)s AND closed_at >= %(s)s AND closed_at < %(e)s""",
        {"p": property_id, "s": day_start, "e": day_end}).fetchall()
    return [from_doc(r["doc"]) for r in rows]


def add_linked_request(uow: UnitOfWork, request_no: str, duplicate_of: str) -> None:
    uow.execute("INSERT INTO linked_requests (request_no, duplicate_of) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (request_no, duplicate_of))


def is_linked_request(uow: UnitOfWork, request_no: str) -> bool:
    return uow.execute("SELECT 1 FROM linked_requests WHERE request_no = %s", (request_no,)).fetchone() is not None


# --------------------------------------------------------------------------------------------------- load
def change_load(uow: UnitOfWork, deltas: dict[str, int]) -> None:
    """Atomic increments in a fixed order (technician id), so two transactions never deadlock on them."""
    if (b := _batch(uow)) is not None:
        b.change_load(deltas)
        return
    for tech_id in sorted(deltas):
        if deltas[tech_id]:
            uow.execute("UPDATE technicians SET load = greatest(load + %s, 0) WHERE technician_id = %s",
                        (deltas[tech_id], tech_id))


def next_round_robin(uow: UnitOfWork, property_id: str, department: str) -> str | None:
    uow.execute("INSERT INTO rr_cursors (property_id, department) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (property_id, department))
    row = uow.execute("SELECT cursor FROM rr_cursors WHERE property_id = %s AND department = %s FOR UPDATE",
                      (property_id, department)).fetchone()
    return row["cursor"] if row else None


def set_round_robin(uow: UnitOfWork, property_id: str, department: str, cursor: str) -> None:
    uow.execute("UPDATE rr_cursors SET cursor = %s WHERE property_id = %s AND department = %s",
                (cursor, property_id, department))


# -------------------------------------------------------------------------------------------------- roster
ROSTER_CACHE_SECONDS = 5.0


def roster_for(uow: UnitOfWork, property_id: str, department: str | None, now: datetime,
               shifts: tuple[ShiftPattern, ...], tz_name: str, local_today: date,
               cache: dict[Any, Any] | None = None) -> Roster:
    """The part of the roster that can matter at `now`: the property's people (of one department, when given)
    and the calendar entries of today and yesterday (a night shift started yesterday).

    People and their loads are read every time (assignment needs exact loads); the calendar, on-call people and
    leads may come from `cache` for a few seconds, so a roster change through the API applies within that time."""
    b = _batch(uow)
    techs = b.technicians(uow, property_id, department) if b is not None else _technicians(uow, property_id, department)
    days = [local_today - timedelta(days=1), local_today]
    key = (property_id, department, local_today)
    hit = cache.get(key) if cache is not None else None
    if hit is not None and hit[0] > time.monotonic():
        cal, people = hit[1], hit[2]
    else:
        cal = uow.execute(
            "SELECT s.technician_id, s.shift, s.shift_date, s.lead FROM shifts s JOIN technicians t "
            "USING (technician_id) WHERE t.property_id = %(p)s" + (" AND t.department = %(dept)s" if department else "")
            + " AND (s.shift_date IS NULL OR s.shift_date = ANY(%(d)s))",
            {"p": property_id, "d": days, "dept": department}).fetchall()
        people = uow.execute(
            "SELECT 'on_call' AS kind, department, night, technician_id FROM on_call WHERE property_id = %(p)s "
            "AND (night IS NULL OR night = ANY(%(d)s))" + (" AND department = %(dept)s" if department else "")
            + " UNION ALL SELECT 'lead', department, NULL, technician_id FROM leads WHERE property_id = %(p)s"
            + (" AND department = %(dept)s" if department else ""),
            {"p": property_id, "d": days, "dept": department}).fetchall()
        if cache is not None:
            cache[key] = (time.monotonic() + ROSTER_CACHE_SECONDS, cal, people)
    known = {t["technician_id"] for t in techs}
    calendar: list[ShiftAssignment] = []
    for c in cal:
        if c["technician_id"] not in known:
            continue
        for day in ([c["shift_date"]] if c["shift_date"] else days):
            calendar.append(ShiftAssignment(c["technician_id"], c["shift"], day, c["lead"]))
    return Roster(
        technicians={t["technician_id"]: Technician(t["technician_id"], t["department"], frozenset(t["skills"]),
                                                    frozenset(t["zones"]), t["absent"], t["load"]) for t in techs},
        calendar=tuple(calendar), shifts=shifts,
        on_call={p["department"]: p["technician_id"] for p in people if p["kind"] == "on_call" and not p["night"]},
        on_call_dated={(p["department"], p["night"]): p["technician_id"] for p in people
                       if p["kind"] == "on_call" and p["night"]},
        leads={p["department"]: p["technician_id"] for p in people if p["kind"] == "lead"},
        tz_name=tz_name,
    )


def _technicians(uow: UnitOfWork, property_id: str, department: str | None) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT technician_id, department, skills, zones, absent, load FROM technicians WHERE property_id = %s"
        + (" AND department = %s" if department else ""),
        (property_id, department) if department else (property_id,)).fetchall()


class _Batch:
    """A consumer's fast batch (services.common.db.BatchUnitOfWork): the technicians of a property's department
    are read once per batch, their loads counted in memory as the batch assigns, and the increments written in
    one statement when it finishes (still `load + n`, so other transactions' changes add up). Loads a batch reads
    are as exact as before: every change the batch makes goes through `change_load`."""

    def __init__(self) -> None:
        self.teams: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
        self.deltas: dict[str, int] = {}

    def technicians(self, uow: UnitOfWork, property_id: str, department: str | None) -> list[dict[str, Any]]:
        team = self.teams.get((property_id, department))
        if team is None:
            team = self.teams[(property_id, department)] = _technicians(uow, property_id, department)
            for t in team:  # what this batch changed already, before it read this team
                t["load"] = max(t["load"] + self.deltas.get(t["technician_id"], 0), 0)
        return team

    def change_load(self, deltas: dict[str, int]) -> None:
        for tech_id, n in deltas.items():
            self.deltas[tech_id] = self.deltas.get(tech_id, 0) + n
            for team in self.teams.values():
                for t in team:
                    if t["technician_id"] == tech_id:
                        t["load"] = max(t["load"] + n, 0)

    def write(self, uow: UnitOfWork) -> None:
        changed = sorted((t, n) for t, n in self.deltas.items() if n)
        if changed:
            # Row locks in technician order first, as change_load takes them one by one: no deadlock with it.
            uow.execute("SELECT 1 FROM technicians WHERE technician_id = ANY(%s) ORDER BY technician_id FOR UPDATE",
                        ([c[0] for c in changed],))
            uow.execute("UPDATE technicians t SET load = greatest(t.load + d.n, 0) "
                        "FROM unnest(%s::text[], %s::int[]) AS d(technician_id, n) "
                        "WHERE t.technician_id = d.technician_id",
                        ([c[0] for c in changed], [c[1] for c in changed]))


def _begin(uow: BatchUnitOfWork) -> _Batch:
    b = _Batch()
    uow.on_finish(b.write)
    return b


def _batch(uow: UnitOfWork) -> _Batch | None:
    return batch_state(uow, "dispatch", _begin)


def roster_is_empty(uow: UnitOfWork) -> bool:
    return uow.execute("SELECT 1 FROM technicians LIMIT 1").fetchone() is None


def upsert_technician(uow: UnitOfWork, t: dict[str, Any]) -> dict[str, Any]:
    return uow.execute(
        """INSERT INTO technicians (technician_id, property_id, department, display_name, skills, zones, absent)
           VALUES (%(technician_id)s, %(property_id)s, %(department)s, %(display_name)s, %(skills)s, %(zones)s,
               %(absent)s)
           ON CONFLICT (technician_id) DO UPDATE SET property_id = EXCLUDED.property_id,
               department = EXCLUDED.department, display_name = EXCLUDED.display_name, skills = EXCLUDED.skills,
               zones = EXCLUDED.zones, absent = EXCLUDED.absent, updated_at = now()
           RETURNING *""",
        {"display_name": None, "absent": False, "zones": [], "skills": [], **t}).fetchone()  # type: ignore


def set_absent(uow: UnitOfWork, technician_id: str, absent: bool) -> dict[str, Any] | None:
    return uow.execute("UPDATE technicians SET absent = %s, updated_at = now() WHERE technician_id = %s "
                       "RETURNING *", (absent, technician_id)).fetchone()


def get_technician(uow: UnitOfWork, technician_id: str) -> dict[str, Any] | None:
    return uow.execute("SELECT * FROM technicians WHERE technician_id = %s", (technician_id,)).fetchone()


def list_technicians(uow: UnitOfWork, property_id: str | None, department: str | None) -> list[dict[str, Any]]:
    where, params = [], []
    if property_id:
        where.append("property_id = %s")
        params.append(property_id)
    if department:
        where.append("department = %s")
        params.append(department)
    sql = "SELECT * FROM technicians" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY technician_id"
    return uow.execute(sql, params).fetchall()


def shifts_of(uow: UnitOfWork, technician_id: str) -> list[dict[str, Any]]:
    return uow.execute("SELECT shift, shift_date, lead FROM shifts WHERE technician_id = %s "
                       "ORDER BY shift_date NULLS FIRST, shift", (technician_id,)).fetchall()


def add_shift(uow: UnitOfWork, technician_id: str, shift: str, shift_date: date | None, lead: bool) -> None:
    uow.execute(
        "INSERT INTO shifts (technician_id, shift, shift_date, lead) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (technician_id, shift, coalesce(shift_date, '0001-01-01'::date)) "
        "DO UPDATE SET lead = EXCLUDED.lead",
        (technician_id, shift, shift_date, lead))


def remove_shift(uow: UnitOfWork, technician_id: str, shift: str, shift_date: date | None) -> int:
    cur = uow.execute("DELETE FROM shifts WHERE technician_id = %s AND shift = %s "
                      "AND shift_date IS NOT DISTINCT FROM %s", (technician_id, shift, shift_date))
    return cur.rowcount


def set_on_call(uow: UnitOfWork, property_id: str, department: str, night: date | None, technician_id: str) -> None:
    uow.execute(
        "INSERT INTO on_call (property_id, department, night, technician_id) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (property_id, department, coalesce(night, '0001-01-01'::date)) "
        "DO UPDATE SET technician_id = EXCLUDED.technician_id", (property_id, department, night, technician_id))


def set_lead(uow: UnitOfWork, property_id: str, department: str, technician_id: str) -> None:
    uow.execute("INSERT INTO leads (property_id, department, technician_id) VALUES (%s, %s, %s) "
                "ON CONFLICT (property_id, department) DO UPDATE SET technician_id = EXCLUDED.technician_id",
                (property_id, department, technician_id))


def teams(uow: UnitOfWork) -> list[dict[str, Any]]:
    """Every (property, department) that has people: the units handovers are published for."""
    return uow.execute("SELECT DISTINCT property_id, department FROM technicians ORDER BY 1, 2").fetchall()


def properties(uow: UnitOfWork) -> list[str]:
    return [r["property_id"] for r in uow.execute("SELECT DISTINCT property_id FROM technicians ORDER BY 1")]


# ------------------------------------------------------------------------------------- handovers, checks
def claim_handover(uow: UnitOfWork, h: dict[str, Any]) -> bool:
    row = uow.execute(
        """INSERT INTO handovers (id, property_id, department, incoming_shift, shift_date, outgoing_shift,
               incoming_lead, published_at, ack_due_at, items)
           VALUES (%(id)s, %(property_id)s, %(department)s, %(incoming_shift)s, %(shift_date)s, %(outgoing_shift)s,
               %(incoming_lead)s, %(published_at)s, %(ack_due_at)s, %(items)s)
           ON CONFLICT (property_id, department, incoming_shift, shift_date) DO NOTHING RETURNING 1""",
        {**h, "items": _json(h["items"])}).fetchone()
    return row is not None


def lock_handover(uow: UnitOfWork, handover_id: UUID | str) -> dict[str, Any] | None:
    return uow.execute("SELECT * FROM handovers WHERE id = %s FOR UPDATE", (str(handover_id),)).fetchone()


def save_handover_ack(uow: UnitOfWork, handover_id: UUID, by: str, at: datetime) -> None:
    uow.execute("UPDATE handovers SET acknowledged_by = %s, acknowledged_at = %s WHERE id = %s",
                (by, at, handover_id))


def lock_overdue_handovers(uow: UnitOfWork, now: datetime, limit: int) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT * FROM handovers WHERE acknowledged_at IS NULL AND NOT overdue_reported AND ack_due_at <= %s "
        "ORDER BY ack_due_at LIMIT %s FOR UPDATE SKIP LOCKED", (now, limit)).fetchall()


def mark_overdue_reported(uow: UnitOfWork, handover_id: UUID) -> None:
    uow.execute("UPDATE handovers SET overdue_reported = true WHERE id = %s", (handover_id,))


def list_handovers(uow: UnitOfWork, property_id: str | None, department: str | None,
                   unacknowledged: bool, limit: int = 100) -> list[dict[str, Any]]:
    where, params = [], []
    if property_id:
        where.append("property_id = %s")
        params.append(property_id)
    if department:
        where.append("department = %s")
        params.append(department)
    if unacknowledged:
        where.append("acknowledged_at IS NULL")
    sql = ("SELECT * FROM handovers" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY published_at DESC LIMIT %s")
    return uow.execute(sql, [*params, limit]).fetchall()


def claim_daily_check(uow: UnitOfWork, report_id: UUID, property_id: str, day: date, at: datetime) -> bool:
    row = uow.execute(
        "INSERT INTO daily_checks (id, property_id, day, generated_at, report) VALUES (%s, %s, %s, %s, '{}') "
        "ON CONFLICT (property_id, day) DO NOTHING RETURNING 1", (report_id, property_id, day, at)).fetchone()
    return row is not None


def daily_check_exists(uow: UnitOfWork, property_id: str, day: date) -> bool:
    return uow.execute("SELECT 1 FROM daily_checks WHERE property_id = %s AND day = %s",
                       (property_id, day)).fetchone() is not None


def store_daily_check(uow: UnitOfWork, report_id: UUID, property_id: str, day: date, report: dict[str, Any],
                      lines: Iterable[dict[str, Any]]) -> None:
    uow.execute("UPDATE daily_checks SET report = %s WHERE id = %s", (_json(report), report_id))
    with uow.conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO daily_check_lines (property_id, day, department, done, open, overdue, cancelled) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(property_id, day, ln["department"], ln["done"], ln["open"], ln["overdue"], ln["cancelled"])
             for ln in lines])


def daily_checks(uow: UnitOfWork, property_id: str | None, day: date | None, limit: int = 50) -> list[dict[str, Any]]:
    where: list[str] = []
    params: list[Any] = []
    if property_id:
        where.append("property_id = %s")
        params.append(property_id)
    if day:
        where.append("day = %s")
        params.append(day)
    sql = ("SELECT * FROM daily_checks" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY day DESC, property_id LIMIT %s")
    return uow.execute(sql, [*params, limit]).fetchall()


def on_duty_counts(conn: Any, now: datetime, shifts: tuple[ShiftPattern, ...], tz_name: str) -> dict[str, int]:
    """Technicians on duty now per department, all properties (for the metrics scrape)."""
    from zoneinfo import ZoneInfo

    from psycopg.rows import tuple_row

    zone = ZoneInfo(tz_name)
    today = now.astimezone(zone).date()
    days = [today - timedelta(days=1), today]
    patterns = {p.name: p for p in shifts}
    rows = conn.cursor(row_factory=tuple_row).execute(
        "SELECT t.technician_id, t.department, s.shift, s.shift_date FROM shifts s JOIN technicians t "
        "USING (technician_id) WHERE NOT t.absent AND (s.shift_date IS NULL OR s.shift_date = ANY(%s))",
        (days,)).fetchall()
    seen: dict[str, set[str]] = {}
    for tech_id, department, shift, shift_date in rows:
        pattern = patterns.get(shift)
        if pattern is None:
            continue
        for day in ([shift_date] if shift_date else days):
            start, end = pattern.window(day, zone)
            if start <= now < end:
                seen.setdefault(department, set()).add(tech_id)
    return {d: len(ids) for d, ids in seen.items()}


def seed_roster(conn: Any, data: dict[str, Any]) -> int:
    """Load the demo roster (roster.yml's template, applied to every property) when the tables are empty.
    Two instances starting together: the advisory lock makes one of them do it."""
    from psycopg.rows import tuple_row

    cur = conn.cursor(row_factory=tuple_row)
    cur.execute("SELECT pg_advisory_xact_lock(hashtext('dispatch.seed_roster'))")
    if cur.execute("SELECT 1 FROM technicians LIMIT 1").fetchone() is not None:
        return 0
    count = 0
    for prop in data.get("properties", ()):
        for dept, spec in (data.get("departments") or {}).items():
            for person in spec.get("people", ()):
                tid = f"{prop}-{person['id']}"
                zones = [str(z) for z in person.get("zones", ())]
                cur.execute("INSERT INTO technicians (technician_id, property_id, department, skills, zones) "
                            "VALUES (%s, %s, %s, %s, %s)", (tid, prop, dept, list(person.get("skills", ())), zones))
                count += 1
                for shift in ("day", "night"):
                    if person.get(shift):
                        cur.execute("INSERT INTO shifts (technician_id, shift, shift_date, lead) "
                                    "VALUES (%s, %s, NULL, %s)", (tid, shift, bool(person.get("lead"))))
            if spec.get("lead"):
                cur.execute("INSERT INTO leads (property_id, department, technician_id) VALUES (%s, %s, %s)",
                            (prop, dept, f"{prop}-{spec['lead']}"))
            if spec.get("on_call"):
                cur.execute("INSERT INTO on_call (property_id, department, night, technician_id) "
                            "VALUES (%s, %s, NULL, %s)", (prop, dept, f"{prop}-{spec['on_call']}"))
    return count
