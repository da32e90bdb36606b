"""Intake's Postgres repository (its own schema only)."""
from __future__ import annotations

import uuid
from collections import Counter
from datetime import date, datetime
from typing import Any
from collections.abc import Callable

from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from services.common.db import UnitOfWork, batch_state, dumps, json_rows
from services.intake.domain.classification import Classification
from services.intake.domain.duplicates import Incident
from services.intake.domain.letters import Letter
from services.intake.domain.model import (
    Acknowledgement,
    Handover,
    Reporter,
    Request,
    StaffNote,
    SupervisorCall,
    masked_channel_details,
)


# --- places ---------------------------------------------------------------------------------------------------------

def lookup_place(uow: UnitOfWork, property_id: str, unit: str | None) -> dict[str, Any] | None:
    """The property (None when unknown), whether it keeps a unit list, and the unit's building if listed."""
    if (b := _batch(uow)) is not None:
        return b.place(uow, property_id, unit)
    return _lookup_place(uow, property_id, unit)


def _lookup_place(uow: UnitOfWork, property_id: str, unit: str | None) -> dict[str, Any] | None:
    return uow.execute(
        "SELECT p.property_id, EXISTS (SELECT 1 FROM units x WHERE x.property_id = p.property_id) AS has_units, "
        "u.building AS unit_building FROM properties p "
        "LEFT JOIN units u ON u.property_id = p.property_id AND u.unit = %s WHERE p.property_id = %s",
        (unit, property_id)).fetchone()


def property_exists(uow: UnitOfWork, property_id: str) -> bool:
    return uow.execute("SELECT 1 FROM properties WHERE property_id = %s", (property_id,)).fetchone() is not None


def property_ids(uow: UnitOfWork) -> list[str]:
    return [r["property_id"] for r in uow.execute("SELECT property_id FROM properties ORDER BY 1").fetchall()]


# --- numbering and idempotency --------------------------------------------------------------------------------------

def find_by_external_id(uow: UnitOfWork, source: str, external_id: str) -> str | None:
    if (b := _batch(uow)) is not None:
        read, found = b.registered(uow, source, external_id)
        if read:
            return found
    row = uow.execute("SELECT request_no FROM requests WHERE source = %s AND external_id = %s",
                      (source, external_id)).fetchone()
    return row["request_no"] if row else None


def next_seq(uow: UnitOfWork, property_id: str, local_day: date) -> tuple[int, datetime]:
    """Issue the next number in a transaction of its own: the row lock lasts one statement, not a whole
    registration. A registration that then fails leaves a gap in the day's numbers, never a duplicate.

    `UnitOfWork.short_transaction` says on which connection (the unit's own for a single registration, a pooled
    one inside a consumer's batch transaction).

    Also returns the instant read under the counter's row lock: used as the registration time, numbers and
    times then sort the same way (a clock read before or after the counter would not)."""
    if (b := _batch(uow)) is not None:
        return b.next_seq(uow, property_id, local_day)
    return _take_blocks(uow, local_day, {property_id: 1})[property_id]


def _take_blocks(uow: UnitOfWork, local_day: date, wanted: dict[str, int]) -> dict[str, tuple[int, datetime]]:
    """For each property, the last of `wanted[property]` numbers taken and the instant they were taken at; the
    counters' rows locked in property order, as every multi-row lock here."""
    props = sorted(wanted)
    with uow.short_transaction() as conn, conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "INSERT INTO request_numbers (property_id, local_day, last_seq) "
            "SELECT w.p, %s, w.n FROM unnest(%s::text[], %s::int[]) AS w(p, n) ORDER BY w.p "
            "ON CONFLICT (property_id, local_day) DO UPDATE "
            "SET last_seq = request_numbers.last_seq + EXCLUDED.last_seq "
            "RETURNING property_id, last_seq, clock_timestamp()",
            (local_day, props, [wanted[p] for p in props])).fetchall()
    return {r[0]: (int(r[1]), r[2]) for r in rows}


# --- duplicates and clusters ----------------------------------------------------------------------------------------
# Each read is written once, for many requests: the requests' parameters travel as one JSON array (one row each,
# numbered `i`) and each row's reads run as a lateral subquery, index range scans keyed by that row. A single
# registration sends one row; a consumer's fast batch sends every message's row at its first read (`read_ahead`).

_DUPLICATE_KEYS = ("property_id", "unit", "category", "phone", "since", "until")
_DUPLICATES = (
    "SELECT k.i, d.* FROM json_to_recordset(%s::json) AS k(i int, property_id text, unit text, category text, "
    "phone text, since timestamptz, until timestamptz) CROSS JOIN LATERAL ("
    "(SELECT r.request_no, r.property_id, r.registered_at, r.category, r.subcategory, r.building, r.unit, r.area, "
    "        NULL::text AS phone, r.status, r.duplicate_of"
    "   FROM requests r"
    "  WHERE k.unit IS NOT NULL AND r.property_id = k.property_id AND r.unit = k.unit AND r.category = k.category"
    "    AND r.registered_at BETWEEN k.since AND k.until AND r.status <> 'cancelled'"
    "  ORDER BY r.registered_at, r.request_no LIMIT 1)"
    " UNION ALL "
    "(SELECT r.request_no, r.property_id, r.registered_at, r.category, r.subcategory, r.building, r.unit, r.area, "
    "        c.contact_phone, r.status, r.duplicate_of"
    "   FROM contacts c JOIN requests r USING (request_no)"
    "  WHERE k.phone IS NOT NULL AND c.property_id = k.property_id AND c.contact_phone = k.phone"
    "    AND c.registered_at BETWEEN k.since AND k.until AND r.status <> 'cancelled'"
    "  ORDER BY c.registered_at, c.request_no LIMIT 1)) d")

_CLUSTER_KEYS = ("property_id", "category", "subcategory", "building", "area", "anywhere", "since", "until", "limit")
_CLUSTER_COLUMNS = ("r.request_no, r.property_id, r.registered_at, r.category, r.subcategory, r.building, r.unit, "
                    "r.area, r.status, r.duplicate_of, r.incident_id")


def _cluster_part(place: str, where: str) -> str:
    """The latest clustered and the oldest unclustered related reports in one kind of place."""
    common = (f"k.place = '{place}' AND r.property_id = k.property_id AND r.subcategory = k.subcategory "
              f"AND r.category = k.category AND {where} AND r.registered_at BETWEEN k.since AND k.until "
              "AND r.status <> 'cancelled'")
    return (f"(SELECT {_CLUSTER_COLUMNS} FROM requests r WHERE {common} AND r.incident_id IS NOT NULL"
            " ORDER BY r.registered_at DESC LIMIT 1) UNION ALL "
            f"(SELECT {_CLUSTER_COLUMNS} FROM requests r WHERE {common} AND r.incident_id IS NULL"
            " ORDER BY r.registered_at, r.request_no LIMIT k.lim)")


# A row per place of a request (its building, its area, or the whole property); each kind of place ranges over its
# own index (requests_cluster_building, requests_cluster_area, requests_cluster), the others' parts stop at the
# place test.
_CLUSTERS = (
    "SELECT k.i, c.* FROM json_to_recordset(%s::json) AS k(i int, place text, property_id text, category text, "
    "subcategory text, building text, area text, since timestamptz, until timestamptz, lim int) "
    "CROSS JOIN LATERAL (" + " UNION ALL ".join((
        _cluster_part("building", "r.building = k.building"), _cluster_part("area", "r.area = k.area"),
        _cluster_part("property", "TRUE"))) + ") c")


def _by_key(names: tuple[str, ...], params: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(params[n] for n in names)


def _read_duplicates(uow: UnitOfWork, wanted: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """For each of `wanted` (a `probable_duplicates` read), at most two rows: the earliest live request of the
    same unit and class, and the earliest from the same phone, both within [since, until]. Each is one range scan
    of an index (requests_unit_class, contacts_caller)."""
    rows = [(i, *_by_key(_DUPLICATE_KEYS, w)) for i, w in enumerate(wanted)]
    return _split(len(wanted), uow.read_past_deferred(
        _DUPLICATES, (json_rows(("i", *_DUPLICATE_KEYS), rows),)).fetchall())


def _read_clusters(uow: UnitOfWork, wanted: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """For each of `wanted` (a `cluster_candidates` read), the latest clustered related request and up to
    `limit` unclustered ones, oldest first, in each of its places: index ranges on (property_id, subcategory,
    place, registered_at), so rows read are related rows, bounded by the limits."""
    rows = []
    for i, w in enumerate(wanted):
        places = ["property"] if w["anywhere"] else [p for p in ("building", "area") if w[p]]
        rows += [(i, place, w["property_id"], w["category"], w["subcategory"], w["building"], w["area"],
                  w["since"], w["until"], w["limit"]) for place in places]
    if not rows:
        return [[] for _ in wanted]
    return _split(len(wanted), uow.read_past_deferred(_CLUSTERS, (json_rows(
        ("i", "place", "property_id", "category", "subcategory", "building", "area", "since", "until", "lim"),
        rows),)).fetchall())


def _split(n: int, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for r in rows:
        out[r.pop("i")].append(r)
    return out


def read_ahead(uow: UnitOfWork, duplicates: list[dict[str, Any]], clusters: list[dict[str, Any]]) -> None:
    """In a consumer's fast batch: make the `probable_duplicates` and `cluster_candidates` reads of the batch's
    coming registrations now, one statement each; each of those reads then takes its rows from here when it is
    made with the same parameters (else it reads for itself). Rows are read past the batch's deferred inserts,
    as those reads are; the batch's own requests are added when each read is made."""
    b = _batch(uow)
    if b is None:
        return
    b.ahead = {}
    for name, keys, wanted, read in (("duplicates", _DUPLICATE_KEYS, duplicates, _read_duplicates),
                                     ("clusters", _CLUSTER_KEYS, clusters, _read_clusters)):
        unique = list({_by_key(keys, w): w for w in wanted}.values())
        if unique:
            for w, rows in zip(unique, read(uow, unique), strict=True):
                b.ahead[(name, _by_key(keys, w))] = rows


def wants_read_ahead(uow: UnitOfWork) -> bool:
    """Whether this is a fast batch whose coming reads have not been read ahead yet."""
    b = _batch(uow)
    return b is not None and b.ahead is None


def registration_time(uow: UnitOfWork, property_id: str, local_day: date) -> datetime | None:
    """In a fast batch: the registration time of the property's requests today, if the batch took their numbers
    (the one instant of the block the batch took for them)."""
    b = _batch(uow)
    block = b.numbers.get((property_id, local_day)) if b is not None else None
    return block[2] if block is not None else None


def _ahead_or_read(uow: UnitOfWork, name: str, keys: tuple[str, ...], params: dict[str, Any],
                   read: Callable[[UnitOfWork, list[dict[str, Any]]], list[list[dict[str, Any]]]]
                   ) -> list[dict[str, Any]]:
    b = _batch(uow)
    if b is not None and b.ahead and (rows := b.ahead.get((name, _by_key(keys, params)))) is not None:
        return list(rows)
    return read(uow, [params])[0]


def probable_duplicates(uow: UnitOfWork, *, property_id: str, unit: str | None, category: str, phone: str | None,
                        since: datetime, until: datetime) -> list[dict[str, Any]]:
    """At most two rows (`_read_duplicates`); in a fast batch, also the batch's own requests that match (their
    rows are not written yet)."""
    params = {"property_id": property_id, "unit": unit, "category": category, "phone": phone, "since": since,
              "until": until}
    rows = _ahead_or_read(uow, "duplicates", _DUPLICATE_KEYS, params, _read_duplicates)
    return _with_own(uow, rows, lambda r: r["property_id"] == property_id and since <= r["registered_at"] <= until
                     and ((unit is not None and r["unit"] == unit and r["category"] == category)
                          or (phone is not None and r["phone"] == phone)))


def cluster_candidates(uow: UnitOfWork, *, property_id: str, category: str, subcategory: str,
                       building: str | None, area: str | None, anywhere: bool, since: datetime, until: datetime,
                       limit: int) -> list[dict[str, Any]]:
    """The latest clustered related request (the incident to join) and up to `limit` unclustered ones, oldest
    first (`_read_clusters`), and in a fast batch the batch's own related requests."""
    params = {"property_id": property_id, "category": category, "subcategory": subcategory, "building": building,
              "area": area, "anywhere": anywhere, "since": since, "until": until, "limit": limit}
    found = _ahead_or_read(uow, "clusters", _CLUSTER_KEYS, params, _read_clusters)
    rows = _with_own(uow, found, lambda r: r["property_id"] == property_id and r["category"] == category
                     and r["subcategory"] == subcategory and since <= r["registered_at"] <= until
                     and (anywhere or (building is not None and r["building"] == building)
                          or (area is not None and r["area"] == area)))
    if (anywhere or not (building and area)) and rows is found:
        return rows
    # A report in both the building and the area came twice; keep what one range over either place would give.
    unique = list({r["request_no"]: r for r in rows}.values())
    joined = sorted((r for r in unique if r["incident_id"] is not None), key=lambda r: r["registered_at"])[-1:]
    loose = sorted((r for r in unique if r["incident_id"] is None), key=lambda r: (r["registered_at"],
                                                                                    r["request_no"]))[:limit]
    return joined + loose


def _with_own(uow: UnitOfWork, rows: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]
              ) -> list[dict[str, Any]]:
    """`rows` (read past the deferred inserts) and, in a fast batch, the batch's own requests that `keep` matches
    and the read did not return (their rows are not written yet); `rows` itself when there are none to add."""
    b = _batch(uow)
    if b is None or not b.mine:
        return rows
    have = {r["request_no"] for r in rows}
    own = [r for r in map(_own_row, b.mine) if r["request_no"] not in have and keep(r)]
    return rows + own if own else rows


def _own_row(r: Request) -> dict[str, Any]:
    """A request this batch registered, as the duplicate and cluster reads return rows."""
    c = r.classification
    return {"request_no": r.request_no, "property_id": r.property_id, "registered_at": r.registered_at,
            "category": c.category, "subcategory": c.subcategory, "building": r.building, "unit": r.unit,
            "area": r.area, "phone": r.contact_phone, "status": r.status, "duplicate_of": r.duplicate_of,
            "incident_id": str(r.incident_id) if r.incident_id else None}


def lock_cluster(uow: UnitOfWork, key: str) -> None:
    """Serialise the few registrations that may form or grow the same incident (until this transaction ends)."""
    if (b := _batch(uow)) is not None and b.ahead:
        b.ahead.clear()  # what was read ahead is from before the lock, and the incident will change rows
    uow.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))


def incident_for_update(uow: UnitOfWork, incident_id: uuid.UUID) -> Incident | None:
    row = uow.execute("SELECT * FROM incidents WHERE incident_id = %s FOR UPDATE", (incident_id,)).fetchone()
    if row is None:
        return None
    return Incident(incident_id=row["incident_id"], property_id=row["property_id"], category=row["category"],
                    subcategory=row["subcategory"], building=row["building"], area=row["area"],
                    first_reported_at=row["first_reported_at"], request_nos=list(row["request_nos"]))


def save_incident(uow: UnitOfWork, incident: Incident, now: datetime) -> None:
    uow.execute(
        "INSERT INTO incidents (incident_id, property_id, category, subcategory, building, area, first_reported_at, "
        "request_nos, children_count, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (incident_id) DO UPDATE SET request_nos = EXCLUDED.request_nos, "
        "children_count = EXCLUDED.children_count, updated_at = EXCLUDED.updated_at",
        (incident.incident_id, incident.property_id, incident.category, incident.subcategory, incident.building,
         incident.area, incident.first_reported_at, incident.request_nos, incident.children_count, now, now))


def set_incident(uow: UnitOfWork, incident_id: uuid.UUID, request_nos: list[str]) -> None:
    if request_nos:
        uow.execute("UPDATE requests SET incident_id = %s WHERE request_no = ANY(%s) AND incident_id IS NULL",
                    (str(incident_id), request_nos))


def get_incident(uow: UnitOfWork, incident_id: str) -> dict[str, Any] | None:
    return uow.execute("SELECT * FROM incidents WHERE incident_id::text = %s", (incident_id,)).fetchone()


# --- requests -------------------------------------------------------------------------------------------------------

_REQUEST_COLUMNS = (
    "request_no", "request_id", "property_id", "building", "unit", "area", "channel", "source", "external_id",
    "category", "subcategory", "priority", "emergency", "confidence", "auto_classification",
    "override_classification", "complaint_valid", "status", "owner_agent", "registered_by", "reporter_kind",
    "description", "details", "paid_service", "vip", "compensation_demanded", "duplicate_of", "duplicate_reason",
    "incident_id", "registered_at", "reported_at", "acknowledgement_required", "letter_id")


def _request_values(request: Request, *, vip: bool, compensation_demanded: bool, reported_at: datetime | None,
                    letter_id: uuid.UUID | None) -> dict[str, Any]:
    c = request.classification
    return {
        "request_no": request.request_no, "request_id": request.id, "property_id": request.property_id,
        "building": request.building, "unit": request.unit, "area": request.area, "channel": request.channel,
        "source": request.source, "external_id": request.external_id, "category": c.category,
        "subcategory": c.subcategory, "priority": c.priority, "emergency": c.emergency, "confidence": c.confidence,
        "auto_classification": _json(request.auto_classification.to_dict()),
        "override_classification": _json(request.agent_classification.to_dict())
        if request.agent_classification else None,
        "complaint_valid": c.complaint_valid, "status": request.status, "owner_agent": request.owner_agent,
        "registered_by": request.owner_agent, "reporter_kind": request.reporter.kind,
        "description": request.description,
        # The caller's number lives in contacts only; the request keeps its masked form.
        "details": _json(masked_channel_details(request.channel_details)), "paid_service": request.paid_service,
        "vip": vip, "compensation_demanded": compensation_demanded, "duplicate_of": request.duplicate_of,
        "duplicate_reason": request.duplicate_reason,
        "incident_id": str(request.incident_id) if request.incident_id else None,
        "registered_at": request.registered_at, "reported_at": reported_at,
        "acknowledgement_required": request.acknowledgement_required, "letter_id": letter_id}


def insert_request(uow: UnitOfWork, request: Request, *, vip: bool, compensation_demanded: bool,
                   reported_at: datetime | None, letter_id: uuid.UUID | None = None) -> bool:
    """False when (source, external_id) was registered concurrently by another delivery. The reporter's contact
    row is written in the same statement (one round trip), and only with the request."""
    caller = request.channel_details.get("caller_number")
    contact = bool(request.reporter.name or request.reporter.phone or caller)
    values = _request_values(request, vip=vip, compensation_demanded=compensation_demanded,
                             reported_at=reported_at, letter_id=letter_id)
    if (b := _batch(uow)) is not None and uow.defer_insert(
            f"INSERT INTO requests ({', '.join(_REQUEST_COLUMNS)})", [values[k] for k in _REQUEST_COLUMNS],
            "ON CONFLICT (source, external_id) DO NOTHING"):
        # A fast batch writes its requests (and contacts) in one statement each; a request registered meanwhile
        # by another delivery sends the batch round again carefully, where the insert below answers False.
        if contact:
            uow.defer_insert("INSERT INTO contacts (request_no, name, phone, caller_number, property_id, "
                             "registered_at)", [request.request_no, request.reporter.name, request.reporter.phone,
                                                caller, request.property_id, request.registered_at])
        b.inserted(request)
        return True
    row = uow.execute(
        ("WITH r AS (" if contact else "") +
        f"INSERT INTO requests ({', '.join(_REQUEST_COLUMNS)}) "
        f"VALUES ({', '.join(f'%({k})s' for k in _REQUEST_COLUMNS)}) "
        "ON CONFLICT (source, external_id) DO NOTHING RETURNING request_no"
        + (""") INSERT INTO contacts (request_no, name, phone, caller_number, property_id, registered_at)
           SELECT request_no, %(contact_name)s, %(contact_phone)s, %(caller)s, %(property_id)s, %(registered_at)s
           FROM r RETURNING 1""" if contact else ""),
        {**values, "contact_name": request.reporter.name, "contact_phone": request.reporter.phone,
         "caller": caller}).fetchone()
    if row is not None and (b := _batch(uow)) is not None:
        b.inserted(request)  # a redelivery later in the batch finds it
    return row is not None


_SELECT = ("SELECT r.*, c.name AS reporter_name, c.phone AS reporter_phone, c.caller_number "
           "FROM requests r LEFT JOIN contacts c USING (request_no) ")


def get(uow: UnitOfWork, request_no: str) -> dict[str, Any] | None:
    return uow.execute(_SELECT + "WHERE r.request_no = %s", (request_no,)).fetchone()


def load_for_update(uow: UnitOfWork, request_no: str) -> Request | None:
    """The aggregate, its row locked until the transaction ends (concurrent actions on one request queue)."""
    row = uow.execute(_SELECT + "WHERE r.request_no = %s FOR UPDATE OF r", (request_no,)).fetchone()
    return None if row is None else to_request(row)


def to_request(row: dict[str, Any]) -> Request:
    details = dict(row["details"] or {})
    if row.get("caller_number"):
        details["caller_number"] = row["caller_number"]
    agent = row.get("override_classification")
    return Request(
        request_no=row["request_no"], property_id=row["property_id"], building=row["building"], unit=row["unit"],
        area=row["area"], channel=row["channel"], channel_details=details, source=row["source"],
        external_id=row["external_id"], description=row["description"],
        reporter=Reporter(row["reporter_kind"], row.get("reporter_name"), row.get("reporter_phone")),
        auto_classification=classification(row["auto_classification"]), owner_agent=row["owner_agent"],
        registered_by=row.get("registered_by") or row["owner_agent"], registered_at=row["registered_at"],
        paid_service=row["paid_service"], id=row.get("request_id") or uuid.uuid4(), status=row["status"],
        agent_classification=classification(agent) if agent else None,
        reclassified_by=row.get("reclassified_by"), reclassify_reason=row.get("reclassify_reason"),
        acknowledgement_required=row.get("acknowledgement_required", False),
        acknowledgements=[Acknowledgement(a["how"], _dt(a["promised_at"]), a["by"], _dt(a["at"]))
                          for a in row.get("acknowledgements") or []],
        handovers=[Handover(h["from_agent"], h["to_agent"], h["reason"], h["by"], _dt(h["at"]))
                   for h in row.get("handovers") or []],
        answer=row.get("answer"), referred_at=row.get("referred_at"), duplicate_of=row.get("duplicate_of"),
        duplicate_reason=row.get("duplicate_reason"),
        incident_id=uuid.UUID(row["incident_id"]) if row.get("incident_id") else None,
        closed_at=row.get("closed_at"), closed_by=row.get("closed_by"), closed_reason=row.get("closed_reason"),
        cancel_reason=row.get("cancel_reason"),
        supervisor_calls=[SupervisorCall(c["supervisor"], c["reason"], c["by"], _dt(c["called_at"]), c.get("answer"),
                                         c.get("answered_by"),
                                         _dt(c["answered_at"]) if c.get("answered_at") else None)
                          for c in row.get("supervisor_calls") or []],
        marked_complex=_note(row.get("marked_complex")), plan=_note(row.get("plan")),
        first_response=_note(row.get("first_response")), complaint_reply=_note(row.get("complaint_reply")))


def _note(d: dict[str, Any] | None) -> StaffNote | None:
    return None if not d else StaffNote(d["text"], d["by"], _dt(d["at"]))


def _note_json(note: StaffNote | None) -> Any:
    return None if note is None else _json({"text": note.text, "by": note.by, "at": note.at})


def classification(d: dict[str, Any]) -> Classification:
    return Classification(category=d["category"], subcategory=d.get("subcategory"), priority=d["priority"],
                          emergency=bool(d["emergency"]), confidence=float(d.get("confidence", 1.0)),
                          matched_terms=tuple(d.get("matched_terms") or ()), validity=d.get("validity"),
                          source=d.get("source", "auto"))


def save(uow: UnitOfWork, request: Request) -> None:
    """Write every mutable part of the aggregate back (one statement; the row is locked by load_for_update)."""
    c = request.classification
    ack = request.acknowledgement
    uow.execute(
        """UPDATE requests SET category = %(category)s, subcategory = %(subcategory)s, priority = %(priority)s,
               emergency = %(emergency)s, confidence = %(confidence)s, complaint_valid = %(complaint_valid)s,
               override_classification = %(override)s, reclassified_by = %(reclassified_by)s,
               reclassify_reason = %(reclassify_reason)s, status = %(status)s, owner_agent = %(owner)s,
               acknowledgements = %(acks)s, promised_at = %(promised_at)s, handovers = %(handovers)s,
               answer = %(answer)s, referred_at = %(referred_at)s, duplicate_of = %(duplicate_of)s,
               duplicate_reason = %(duplicate_reason)s, closed_at = %(closed_at)s, closed_by = %(closed_by)s,
               closed_reason = %(closed_reason)s, cancel_reason = %(cancel_reason)s,
               supervisor_calls = %(supervisor_calls)s, marked_complex = %(marked_complex)s, plan = %(plan)s,
               first_response = %(first_response)s, complaint_reply = %(complaint_reply)s
           WHERE request_no = %(request_no)s""",
        {"category": c.category, "subcategory": c.subcategory, "priority": c.priority, "emergency": c.emergency,
         "confidence": c.confidence, "complaint_valid": c.complaint_valid,
         "override": _json(request.agent_classification.to_dict()) if request.agent_classification else None,
         "reclassified_by": request.reclassified_by, "reclassify_reason": request.reclassify_reason,
         "status": request.status, "owner": request.owner_agent,
         "acks": _json([{"how": a.how, "promised_at": a.promised_at, "by": a.by, "at": a.at}
                        for a in request.acknowledgements]),
         "promised_at": ack.promised_at if ack else None,
         "handovers": _json([{"from_agent": h.from_agent, "to_agent": h.to_agent, "reason": h.reason, "by": h.by,
                              "at": h.at} for h in request.handovers]),
         "answer": request.answer, "referred_at": request.referred_at, "duplicate_of": request.duplicate_of,
         "duplicate_reason": request.duplicate_reason, "closed_at": request.closed_at, "closed_by": request.closed_by,
         "closed_reason": request.closed_reason, "cancel_reason": request.cancel_reason,
         "supervisor_calls": _json([{"supervisor": c.supervisor, "reason": c.reason, "by": c.by,
                                     "called_at": c.called_at, "answer": c.answer, "answered_by": c.answered_by,
                                     "answered_at": c.answered_at} for c in request.supervisor_calls]),
         "marked_complex": _note_json(request.marked_complex), "plan": _note_json(request.plan),
         "first_response": _note_json(request.first_response),
         "complaint_reply": _note_json(request.complaint_reply),
         "request_no": request.request_no})


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
    sql = (_SELECT + ("WHERE " + " AND ".join(where) + " " if where else "")
           + "ORDER BY r.registered_at DESC, r.request_no DESC LIMIT %(limit)s OFFSET %(offset)s")
    rows = uow.execute(sql, {**query, "limit": size + 1, "offset": (page - 1) * size}).fetchall()
    return rows[:size], len(rows) > size


# --- letters --------------------------------------------------------------------------------------------------------

def insert_letter(uow: UnitOfWork, letter: Letter, place: dict[str, Any]) -> bool:
    """False when a letter with this id was already logged (a retried submission)."""
    row = uow.execute(
        """INSERT INTO letters (letter_id, property_id, kind, routed_to, status, received_date, subject, sender_name,
               sender_phone, reporter_kind, building, unit, area, description, praised_staff_id, praised_department,
               request_no, logged_by, logged_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (letter_id) DO NOTHING RETURNING 1""",
        (letter.letter_id, letter.property_id, letter.kind, letter.routed_to, letter.status, letter.received_date,
         letter.subject, letter.sender_name, letter.sender_phone, place.get("reporter_kind") or "resident",
         place.get("building"), place.get("unit"),
         place.get("area"), place.get("description"), letter.praised_staff_id, letter.praised_department,
         letter.request_no, letter.logged_by, letter.logged_at)).fetchone()
    return row is not None


def letter_for_update(uow: UnitOfWork, letter_id: str) -> tuple[Letter, dict[str, Any]] | None:
    row = uow.execute("SELECT * FROM letters WHERE letter_id::text = %s FOR UPDATE", (letter_id,)).fetchone()
    if row is None:
        return None
    letter = Letter(letter_id=row["letter_id"], property_id=row["property_id"], kind=row["kind"],
                    received_date=row["received_date"], subject=row["subject"], logged_by=row["logged_by"],
                    logged_at=row["logged_at"], status=row["status"], sender_name=row["sender_name"],
                    sender_phone=row["sender_phone"], praised_staff_id=row["praised_staff_id"],
                    praised_department=row["praised_department"], request_no=row["request_no"],
                    decided_by=row["decided_by"], decision_reason=row["decision_reason"])
    return letter, row


def update_letter(uow: UnitOfWork, letter: Letter, previous_status: str, decided_at: datetime | None = None) -> bool:
    """False when someone else changed the letter meanwhile (its status is no longer `previous_status`)."""
    cur = uow.execute(
        "UPDATE letters SET status = %s, request_no = %s, decided_by = %s, decision_reason = %s, "
        "praised_staff_id = %s, praised_department = %s, decided_at = coalesce(%s, decided_at) "
        "WHERE letter_id = %s AND status = %s",
        (letter.status, letter.request_no, letter.decided_by, letter.decision_reason, letter.praised_staff_id,
         letter.praised_department, decided_at, letter.letter_id, previous_status))
    return cur.rowcount == 1


def get_letter(uow: UnitOfWork, letter_id: str) -> dict[str, Any] | None:
    return uow.execute("SELECT * FROM letters WHERE letter_id::text = %s", (letter_id,)).fetchone()


def list_letters(uow: UnitOfWork, query: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    filters = {"routed_to": "routed_to = %(routed_to)s", "status": "status = %(status)s",
               "property_id": "property_id = %(property_id)s", "kind": "kind = %(kind)s"}
    where = [clause for key, clause in filters.items() if query.get(key) is not None]
    page, size = int(query.get("page", 1)), int(query.get("page_size", 50))
    rows = uow.execute(
        "SELECT * FROM letters " + ("WHERE " + " AND ".join(where) + " " if where else "")
        + "ORDER BY logged_at DESC, letter_id LIMIT %(limit)s OFFSET %(offset)s",
        {**query, "limit": size + 1, "offset": (page - 1) * size}).fetchall()
    return rows[:size], len(rows) > size


def _dt(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _json(value: Any) -> Any:
    return None if value is None else Jsonb(value, dumps=lambda o: dumps(o, _default))


def _default(o: Any) -> Any:
    if isinstance(o, (datetime, date)):
        return o.isoformat()
    return str(o)


# --- a consumer's fast batch (services.common.db.BatchUnitOfWork) ----------------------------------------------------

class _Batch:
    """What a batch of inbound requests reads once instead of once per message: their places, which of them are
    registered already, and their numbers. Numbers are taken for all the batch's requests of a property and day
    in one short transaction (one commit, not one per request) at one instant, which is then every such
    request's registration time: numbers and times still sort the same way. A message the batch cannot keep
    (the whole batch is then redone with savepoints) leaves a gap in the day's numbers, never a duplicate."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.places: dict[tuple[str, str | None], dict[str, Any] | None] | None = None
        self.known: dict[tuple[str, str], str | None] | None = None
        self.numbers: dict[tuple[str, date], list[Any]] = {}  # [next, last, taken at]
        self.mine: list[Request] = []  # registered by this batch (their rows may not be written yet)
        # reads made ahead for the batch's coming registrations (`read_ahead`), by read and parameters; None
        # until they are made
        self.ahead: dict[tuple[str, tuple[Any, ...]], list[dict[str, Any]]] | None = None

    def place(self, uow: UnitOfWork, property_id: str, unit: str | None) -> dict[str, Any] | None:
        if self.places is None:
            keys = sorted({(str(i.get("property_id")), i.get("unit")) for i in self.items}, key=str)
            rows = uow.execute(
                "SELECT k.property_id AS wanted, k.unit AS wanted_unit, p.property_id, "
                "EXISTS (SELECT 1 FROM units x WHERE x.property_id = p.property_id) AS has_units, "
                "u.building AS unit_building FROM unnest(%s::text[], %s::text[]) AS k(property_id, unit) "
                "LEFT JOIN properties p ON p.property_id = k.property_id "
                "LEFT JOIN units u ON u.property_id = k.property_id AND u.unit = k.unit",
                ([k[0] for k in keys], [k[1] for k in keys])).fetchall()
            self.places = {(r.pop("wanted"), r.pop("wanted_unit")): (r if r["property_id"] else None) for r in rows}
        key = (property_id, unit)
        if key not in self.places:
            self.places[key] = _lookup_place(uow, property_id, unit)
        return self.places[key]

    def registered(self, uow: UnitOfWork, source: str, external_id: str) -> tuple[bool, str | None]:
        """(read here, the request registered for (source, external_id) or None)."""
        if self.known is None:
            keys = sorted({(str(i["source"]), str(i["external_id"])) for i in self.items
                           if i.get("source") and i.get("external_id")})
            self.known = dict.fromkeys(keys)
            if keys:
                for r in uow.execute(
                        "SELECT r.source, r.external_id, r.request_no FROM requests r "
                        "JOIN unnest(%s::text[], %s::text[]) AS k(source, external_id) "
                        "ON r.source = k.source AND r.external_id = k.external_id",
                        ([k[0] for k in keys], [k[1] for k in keys])).fetchall():
                    self.known[(r["source"], r["external_id"])] = r["request_no"]
        key = (source, external_id)
        return key in self.known, self.known.get(key)

    def next_seq(self, uow: UnitOfWork, property_id: str, local_day: date) -> tuple[int, datetime]:
        block = self.numbers.get((property_id, local_day))
        if block is None or block[0] > block[1]:
            # The blocks of every known property the rest of the batch needs, in one short transaction: one
            # commit per batch, not one per property.
            position = getattr(uow, "position", 0)
            counts = Counter(str(i.get("property_id")) for i in self.items[position:])
            known = {p for (p, _), place in (self.places or {}).items() if place is not None}
            wanted = {p: n for p, n in counts.items() if p in known and (p, local_day) not in self.numbers}
            wanted[property_id] = max(1, counts[property_id])
            for p, (last, at) in _take_blocks(uow, local_day, wanted).items():
                self.numbers[(p, local_day)] = [last - wanted[p] + 1, last, at]
            block = self.numbers[(property_id, local_day)]
        seq = block[0]
        block[0] += 1
        return int(seq), block[2]

    def inserted(self, request: Request) -> None:
        self.mine.append(request)
        if self.known is not None and request.source and request.external_id:
            self.known[(request.source, request.external_id)] = request.request_no


def _batch(uow: UnitOfWork) -> _Batch | None:
    b = batch_state(uow, "intake", lambda batch: _Batch(batch.items))
    return b if b is not None and b.items and "source" in b.items[0] else None  # a batch of inbound requests
