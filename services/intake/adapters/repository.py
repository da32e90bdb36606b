"""Intake's Postgres repository (its own schema only)."""
from __future__ import annotations

import json
from datetime import date
from typing import Any

from psycopg.types.json import Jsonb

from services.common.db import UnitOfWork


def property_exists(uow: UnitOfWork, property_id: str) -> bool:
    return uow.execute("SELECT 1 FROM properties WHERE property_id = %s", (property_id,)).fetchone() is not None


def find_by_external_id(uow: UnitOfWork, source: str, external_id: str) -> str | None:
    row = uow.execute("SELECT request_no FROM requests WHERE source = %s AND external_id = %s",
                      (source, external_id)).fetchone()
    return row["request_no"] if row else None


def next_seq(uow: UnitOfWork, property_id: str, local_day: date) -> int:
    """Issue the next number in a transaction of its own: the row lock lasts one statement, not a whole
    registration. A registration that then fails leaves a gap in the day's numbers, never a duplicate."""
    with uow.pool.connection() as conn:
        row = conn.execute(
            "INSERT INTO request_numbers (property_id, local_day, last_seq) VALUES (%s, %s, 1) "
            "ON CONFLICT (property_id, local_day) DO UPDATE SET last_seq = request_numbers.last_seq + 1 "
            "RETURNING last_seq", (property_id, local_day)).fetchone()
    return int(row[0])


def insert_request(uow: UnitOfWork, r: dict[str, Any]) -> bool:
    """False when (source, external_id) was registered concurrently by another delivery."""
    row = uow.execute(
        """INSERT INTO requests (request_no, property_id, building, unit, area, channel, source, external_id,
               category, subcategory, priority, emergency, confidence, auto_classification, override_classification,
               complaint_valid, status, owner_agent, reporter_kind, description, details, paid_service, vip,
               compensation_demanded, duplicate_of, incident_id, registered_at, reported_at)
           VALUES (%(request_no)s, %(property_id)s, %(building)s, %(unit)s, %(area)s, %(channel)s, %(source)s,
               %(external_id)s, %(category)s, %(subcategory)s, %(priority)s, %(emergency)s, %(confidence)s,
               %(auto_classification)s, %(override_classification)s, %(complaint_valid)s, %(status)s,
               %(owner_agent)s, %(reporter_kind)s, %(description)s, %(details)s, %(paid_service)s, %(vip)s,
               %(compensation_demanded)s, %(duplicate_of)s, %(incident_id)s, %(registered_at)s, %(reported_at)s)
           ON CONFLICT (source, external_id) DO NOTHING RETURNING 1""",
        {**r, "auto_classification": _json(r["auto_classification"]),
         "override_classification": _json(r.get("override_classification")), "details": _json(r.get("details") or {})},
    ).fetchone()
    return row is not None


def insert_contact(uow: UnitOfWork, request_no: str, name: str | None, phone: str | None) -> None:
    if name or phone:
        uow.execute("INSERT INTO contacts (request_no, name, phone) VALUES (%s, %s, %s)", (request_no, name, phone))


def get(uow: UnitOfWork, request_no: str) -> dict[str, Any] | None:
    return uow.execute(
        "SELECT r.*, c.name AS reporter_name, c.phone AS reporter_phone FROM requests r "
        "LEFT JOIN contacts c USING (request_no) WHERE r.request_no = %s", (request_no,)).fetchone()


def set_status(uow: UnitOfWork, request_no: str, status: str, closed: bool = False) -> None:
    uow.execute("UPDATE requests SET status = %s, closed_at = CASE WHEN %s THEN now() ELSE closed_at END "
                "WHERE request_no = %s", (status, closed, request_no))


LIST_FILTERS = {
    "property_id": "r.property_id = %(property_id)s",
    "channel": "r.channel = %(channel)s",
    "category": "r.category = %(category)s",
    "status": "r.status = %(status)s",
    "registered_from": "r.registered_at >= %(registered_from)s",
    "registered_to": "r.registered_at < %(registered_to)s",
}


def list_requests(uow: UnitOfWork, query: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    where = [clause for key, clause in LIST_FILTERS.items() if query.get(key) is not None]
    page, size = int(query.get("page", 1)), int(query.get("page_size", 50))
    sql = ("SELECT r.*, c.name AS reporter_name, c.phone AS reporter_phone FROM requests r "
           "LEFT JOIN contacts c USING (request_no) "
           + ("WHERE " + " AND ".join(where) + " " if where else "")
           + "ORDER BY r.registered_at DESC, r.request_no DESC LIMIT %(limit)s OFFSET %(offset)s")
    rows = uow.execute(sql, {**query, "limit": size + 1, "offset": (page - 1) * size}).fetchall()
    return rows[:size], len(rows) > size


def _json(value: Any) -> Any:
    return None if value is None else Jsonb(value, dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))
