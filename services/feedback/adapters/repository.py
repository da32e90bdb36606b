"""Feedback's Postgres repository (its own schema only): projections, visits, letters, praise, audits, surveys.

Aggregates with nested parts (a visit's attempts, a letter's versions and reviews, a survey's answers) are stored as
JSON documents next to the columns that queries filter on; `*_from_row` rebuilds the domain object.
"""
from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from services.common.db import UnitOfWork, dumps, insert_row
from services.feedback.domain.letters import LetterVersion, ReplyLetter, Review, Step
from services.feedback.domain.model import Attempt, FollowUp, ReturnVisit, VisitOutcome, VisitSubject
from services.feedback.domain.sampling import AuditSelection, VisitDecision
from services.feedback.domain.surveys import SatisfactionSurvey, ServiceRating, SurveyAction, SurveyResponse


def _default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.isoformat()
    if isinstance(o, UUID):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _json(value: Any) -> Any:
    return None if value is None else Jsonb(value, dumps=lambda o: dumps(o, _default))


def _dt(v: Any) -> Any:
    """An ISO text from a JSON document back to a datetime (None stays None)."""
    return datetime.fromisoformat(v) if isinstance(v, str) else v


def _uuid(v: Any) -> UUID | None:
    return UUID(str(v)) if v else None


# --- request projection -------------------------------------------------------------------------------------

_REQUEST_COLUMNS = ("request_no", "property_id", "building", "unit", "area", "channel", "category", "subcategory",
                    "complaint_valid", "validity", "paid_service", "registered_at")
_REQUEST_INSERT = f"INSERT INTO requests ({', '.join(_REQUEST_COLUMNS)})"
_REQUEST_CONFLICT = "ON CONFLICT (request_no) DO NOTHING"


def upsert_request(uow: UnitOfWork, d: dict[str, Any]) -> None:
    """A registration's row. In a fast batch it is deferred: the batch's registrations (they arrive in packs)
    are written in one statement, before the batch's next statement (an assignment's update finds them) or at its
    end. The inbox lets each registration through once, so every deferred row is expected to be inserted; one the
    conflict clause skips sends the batch round again message by message, where each insert runs at once."""
    insert_row(uow, _REQUEST_INSERT, [d.get(k) for k in _REQUEST_COLUMNS], _REQUEST_CONFLICT)


def reclassify_request(uow: UnitOfWork, d: dict[str, Any]) -> bool:
    cur = uow.execute(
        "UPDATE requests SET category = %s, subcategory = %s, complaint_valid = %s, validity = %s "
        "WHERE request_no = %s",
        (d["category"], d.get("subcategory"), d.get("complaint_valid"), d.get("validity"), d["request_no"]))
    return cur.rowcount == 1


def set_department(uow: UnitOfWork, request_no: str, department: str, work_order_id: UUID) -> bool:
    cur = uow.execute("UPDATE requests SET department = %s, work_order_id = coalesce(work_order_id, %s) "
                      "WHERE request_no = %s", (department, work_order_id, request_no))
    return cur.rowcount == 1


def get_request_for_update(uow: UnitOfWork, request_no: str) -> dict[str, Any] | None:
    return uow.execute("SELECT * FROM requests WHERE request_no = %s FOR UPDATE", (request_no,)).fetchone()


def get_request(uow: UnitOfWork, request_no: str) -> dict[str, Any] | None:
    return uow.execute("SELECT * FROM requests WHERE request_no = %s", (request_no,)).fetchone()


def set_resolved(uow: UnitOfWork, request_no: str, *, department: str, work_order_id: UUID, resolved_at: datetime,
                 fee_cents: int, paid_service: bool) -> None:
    uow.execute(
        "UPDATE requests SET department = %s, work_order_id = %s, resolved_at = %s, fee_cents = %s, "
        "paid_service = paid_service OR %s WHERE request_no = %s",
        (department, work_order_id, resolved_at, fee_cents, paid_service, request_no))


# --- decisions and visits -----------------------------------------------------------------------------------

def insert_decision(uow: UnitOfWork, work_order_id: UUID, decision: VisitDecision, *, decided_at: datetime,
                    visit_id: UUID | None) -> bool:
    row = uow.execute(
        """INSERT INTO visit_decisions (work_order_id, request_no, required, reason, seed_id, draw, rate, resolved_at,
               due_at, decided_at, visit_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (work_order_id) DO NOTHING RETURNING 1""",
        (work_order_id, decision.request_no, decision.required, decision.reason, decision.seed_id, decision.draw,
         decision.rate, decision.resolved_at, decision.due_at, decided_at, visit_id)).fetchone()
    return row is not None


def decisions_for(uow: UnitOfWork, request_no: str) -> list[dict[str, Any]]:
    return uow.execute("SELECT * FROM visit_decisions WHERE request_no = %s ORDER BY decided_at",
                       (request_no,)).fetchall()


def _attempt_dict(a: Attempt) -> dict[str, Any]:
    return asdict(a)


def insert_visit(uow: UnitOfWork, v: ReturnVisit, give_up_at: datetime | None) -> None:
    uow.execute(
        """INSERT INTO return_visits (visit_id, request_no, work_order_id, property_id, department, paid_service,
               reason, subject, resolved_at, scheduled_at, due_at, seed_id, draw, rate, state, attempts,
               next_attempt_at, give_up_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (v.visit_id, v.request_no, v.subject.work_order_id, v.subject.property_id, v.subject.department,
         v.subject.paid_service, v.reason, _json(asdict(v.subject)), v.resolved_at, v.scheduled_at, v.due_at,
         v.seed_id, v.draw, v.rate, v.state, _json([_attempt_dict(a) for a in v.attempts]), v.next_attempt_at,
         give_up_at))


def save_visit(uow: UnitOfWork, v: ReturnVisit, give_up_at: datetime | None) -> None:
    o = v.outcome
    uow.execute(
        """UPDATE return_visits SET state = %s, attempts = %s, next_attempt_at = %s, give_up_at = %s, outcome = %s,
               level = %s, score = %s, done_at = %s, failed_at = %s, follow_up = %s WHERE visit_id = %s""",
        (v.state, _json([_attempt_dict(a) for a in v.attempts]), v.next_attempt_at, give_up_at,
         _json(asdict(o)) if o else None, o.level if o else None, o.score if o else None, v.done_at, v.failed_at,
         _json(asdict(v.follow_up)) if v.follow_up else None, v.visit_id))


def visit_from_row(r: dict[str, Any]) -> ReturnVisit:
    s = dict(r["subject"])
    s["work_order_id"] = _uuid(s.get("work_order_id"))
    fu = r.get("follow_up")
    follow_up = None
    if fu:
        follow_up = FollowUp(UUID(fu["follow_up_id"]), fu["reason"], fu["description"], _dt(fu["raised_at"]),
                             _dt(fu["due_at"]), _uuid(fu.get("work_order_id")), _dt(fu.get("reached_maintenance_at")))
    return ReturnVisit(
        visit_id=r["visit_id"], request_no=r["request_no"], reason=r["reason"], subject=VisitSubject(**s),
        resolved_at=r["resolved_at"], scheduled_at=r["scheduled_at"], due_at=r["due_at"], seed_id=r["seed_id"],
        draw=r["draw"], rate=r["rate"], state=r["state"],
        attempts=[Attempt(a["number"], a["method"], a["by"], _dt(a["at"]), a["reached"], a.get("note", ""))
                  for a in r["attempts"]],
        next_attempt_at=r["next_attempt_at"], outcome=VisitOutcome(**r["outcome"]) if r.get("outcome") else None,
        done_at=r["done_at"], failed_at=r["failed_at"], follow_up=follow_up)


def get_visit(uow: UnitOfWork, visit_id: UUID, *, for_update: bool = False) -> dict[str, Any] | None:
    return uow.execute("SELECT * FROM return_visits WHERE visit_id = %s" + (" FOR UPDATE" if for_update else ""),
                       (visit_id,)).fetchone()


def visits_for(uow: UnitOfWork, request_no: str) -> list[dict[str, Any]]:
    return uow.execute("SELECT * FROM return_visits WHERE request_no = %s ORDER BY scheduled_at",
                       (request_no,)).fetchall()


def visits_due_before(uow: UnitOfWork, due_before: datetime, limit: int) -> list[dict[str, Any]]:
    return uow.execute("SELECT * FROM return_visits WHERE state = 'scheduled' AND due_at < %s "
                       "ORDER BY due_at LIMIT %s", (due_before, limit)).fetchall()


def lapsed_visits(uow: UnitOfWork, now: datetime, limit: int) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT * FROM return_visits WHERE state = 'scheduled' AND give_up_at IS NOT NULL AND give_up_at <= %s "
        "ORDER BY give_up_at LIMIT %s FOR UPDATE SKIP LOCKED", (now, limit)).fetchall()


def audit_candidates(uow: UnitOfWork, start: datetime, end: datetime) -> list[dict[str, Any]]:
    return uow.execute(
        "SELECT visit_id, request_no, paid_service FROM return_visits WHERE done_at >= %(s)s AND done_at < %(e)s "
        "UNION ALL SELECT visit_id, request_no, paid_service FROM return_visits "
        "WHERE failed_at >= %(s)s AND failed_at < %(e)s", {"s": start, "e": end}).fetchall()


# --- clocks and praise --------------------------------------------------------------------------------------

_CLOCK_INSERT = "INSERT INTO clock_outcomes (clock_id, request_no, clock, outcome, settled_at)"
# A breach is final for attainment: a clock met late after a breach stays breached.
_CLOCK_CONFLICT = ("ON CONFLICT (clock_id) DO UPDATE SET "
                   "outcome = CASE WHEN clock_outcomes.outcome = 'breached' THEN 'breached' ELSE excluded.outcome END, "
                   "settled_at = LEAST(clock_outcomes.settled_at, excluded.settled_at)")


def record_clock(uow: UnitOfWork, clock_id: UUID, request_no: str, clock: str, outcome: str, at: datetime) -> None:
    """A clock's verdict. In a fast batch the batch's verdicts are one statement (a clock with two verdicts in
    one batch makes that statement fail, and the batch goes round again message by message)."""
    insert_row(uow, _CLOCK_INSERT, [clock_id, request_no, clock, outcome, at], _CLOCK_CONFLICT)


def insert_praise(uow: UnitOfWork, p: dict[str, Any]) -> bool:
    row = uow.execute(
        """INSERT INTO praises (praise_id, source, letter_id, property_id, target_kind, staff_id, department, channel,
               summary, received_at, recorded_by, recorded_at, request_no)
           VALUES (%(praise_id)s, %(source)s, %(letter_id)s, %(property_id)s, %(target_kind)s, %(staff_id)s,
               %(department)s, %(channel)s, %(summary)s, %(received_at)s, %(recorded_by)s, %(recorded_at)s,
               %(request_no)s)
           ON CONFLICT DO NOTHING RETURNING 1""", p).fetchone()
    return row is not None


# --- letters ------------------------------------------------------------------------------------------------

def _letter_doc(letter: ReplyLetter) -> dict[str, Any]:
    return {
        "department": letter.department, "concerns_property": letter.concerns_property, "legal": letter.legal,
        "versions": [asdict(v) for v in letter.versions], "reviews": [asdict(r) for r in letter.reviews],
        "approved_by": letter.approved_by, "approved_at": letter.approved_at, "send_method": letter.send_method,
        "tracking_no": letter.tracking_no, "sent_at": letter.sent_at, "confirmation_due_at": letter.confirmation_due_at,
        "confirmed_at": letter.confirmed_at, "archived_at": letter.archived_at,
        "history": [asdict(s) for s in letter.history],
    }


def insert_letter(uow: UnitOfWork, letter: ReplyLetter, now: datetime) -> None:
    uow.execute("INSERT INTO letters (letter_id, request_no, state, doc, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (letter.letter_id, letter.request_no, letter.state, _json(_letter_doc(letter)), now, now))
    insert_letter_version(uow, letter.letter_id, letter.current)


def insert_letter_version(uow: UnitOfWork, letter_id: UUID, v: LetterVersion) -> None:
    uow.execute("INSERT INTO letter_versions (letter_id, version, body, author, template_id, note, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (letter_id, v.number, v.body, v.author, v.template_id, v.note, v.created_at))


def save_letter(uow: UnitOfWork, letter: ReplyLetter, now: datetime) -> None:
    uow.execute("UPDATE letters SET state = %s, doc = %s, updated_at = %s WHERE letter_id = %s",
                (letter.state, _json(_letter_doc(letter)), now, letter.letter_id))


def get_letter(uow: UnitOfWork, letter_id: UUID, *, for_update: bool = False) -> dict[str, Any] | None:
    return uow.execute("SELECT * FROM letters WHERE letter_id = %s" + (" FOR UPDATE" if for_update else ""),
                       (letter_id,)).fetchone()


def letters_for(uow: UnitOfWork, request_no: str) -> list[dict[str, Any]]:
    return uow.execute("SELECT * FROM letters WHERE request_no = %s ORDER BY created_at", (request_no,)).fetchall()


def letter_from_row(r: dict[str, Any]) -> ReplyLetter:
    d = r["doc"]
    return ReplyLetter(
        letter_id=r["letter_id"], request_no=r["request_no"], department=d["department"],
        concerns_property=d["concerns_property"], legal=d["legal"],
        versions=[LetterVersion(v["number"], v["body"], v["author"], _dt(v["created_at"]), v.get("template_id"),
                                v.get("note", "")) for v in d["versions"]],
        state=r["state"],
        reviews=[Review(x["version"], x["role"], x["reviewer_id"], x["decision"], x["comments"], _dt(x["at"]))
                 for x in d["reviews"]],
        approved_by=d.get("approved_by"), approved_at=_dt(d.get("approved_at")), send_method=d.get("send_method"),
        tracking_no=d.get("tracking_no"), sent_at=_dt(d.get("sent_at")),
        confirmation_due_at=_dt(d.get("confirmation_due_at")), confirmed_at=_dt(d.get("confirmed_at")),
        archived_at=_dt(d.get("archived_at")),
        history=[Step(s["action"], s["by"], _dt(s["at"]), s["version"], s.get("detail", "")) for s in d["history"]])


# --- audits -------------------------------------------------------------------------------------------------

def get_audit_by_period(uow: UnitOfWork, period: str) -> dict[str, Any] | None:
    return uow.execute("SELECT * FROM audits WHERE period = %s", (period,)).fetchone()


def get_audit(uow: UnitOfWork, audit_id: UUID, *, for_update: bool = False) -> dict[str, Any] | None:
    return uow.execute("SELECT * FROM audits WHERE audit_id = %s" + (" FOR UPDATE" if for_update else ""),
                       (audit_id,)).fetchone()


def insert_audit(uow: UnitOfWork, audit_id: UUID, period: str, supervisor_id: str, started_at: datetime,
                 selection: list[AuditSelection]) -> bool:
    row = uow.execute("INSERT INTO audits (audit_id, period, supervisor_id, started_at, selection) "
                      "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (period) DO NOTHING RETURNING 1",
                      (audit_id, period, supervisor_id, started_at,
                       _json([asdict(s) for s in selection]))).fetchone()
    return row is not None


def audit_findings(uow: UnitOfWork, audit_id: UUID) -> list[dict[str, Any]]:
    return uow.execute("SELECT * FROM audit_findings WHERE audit_id = %s ORDER BY recorded_at",
                       (audit_id,)).fetchall()


def insert_finding(uow: UnitOfWork, audit_id: UUID, f: Any) -> None:
    uow.execute("INSERT INTO audit_findings (audit_id, visit_id, request_no, outcome, notes, supervisor_id, "
                "recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (audit_id, f.visit_id, f.request_no, f.outcome, f.notes, f.supervisor_id, f.recorded_at))


def selection_from_json(items: list[dict[str, Any]]) -> list[AuditSelection]:
    return [AuditSelection(UUID(s["visit_id"]), s["request_no"], s["reason"], s["seed_id"], s["draw"], s["rate"])
            for s in items]


# --- surveys ------------------------------------------------------------------------------------------------

def _survey_doc(s: SatisfactionSurvey) -> dict[str, Any]:
    return {"services": list(s.services), "households_total": s.households_total,
            "responses": {u: {"unit": r.unit, "comments": r.comments, "answered_at": r.answered_at,
                              "ratings": {k: asdict(v) for k, v in r.ratings.items()}}
                          for u, r in s.responses.items()},
            "actions": [asdict(a) for a in s.actions]}


def insert_survey(uow: UnitOfWork, s: SatisfactionSurvey) -> None:
    uow.execute("INSERT INTO surveys (survey_id, property_id, period, state, doc, opened_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (s.survey_id, s.property_id, s.period, s.state, _json(_survey_doc(s)), s.opened_at))


def save_survey(uow: UnitOfWork, s: SatisfactionSurvey) -> None:
    uow.execute("UPDATE surveys SET state = %s, doc = %s, closed_at = %s WHERE survey_id = %s",
                (s.state, _json(_survey_doc(s)), s.closed_at, s.survey_id))


def get_survey(uow: UnitOfWork, survey_id: UUID, *, for_update: bool = False) -> dict[str, Any] | None:
    return uow.execute("SELECT * FROM surveys WHERE survey_id = %s" + (" FOR UPDATE" if for_update else ""),
                       (survey_id,)).fetchone()


def survey_from_row(r: dict[str, Any]) -> SatisfactionSurvey:
    d = r["doc"]
    return SatisfactionSurvey(
        survey_id=r["survey_id"], property_id=r["property_id"], period=r["period"], services=tuple(d["services"]),
        households_total=d["households_total"], opened_at=r["opened_at"], state=r["state"],
        responses={u: SurveyResponse(x["unit"], {k: ServiceRating(**v) for k, v in x["ratings"].items()},
                                     x["comments"], _dt(x["answered_at"])) for u, x in d["responses"].items()},
        closed_at=r["closed_at"],
        actions=[SurveyAction(UUID(a["action_id"]), a["service"], a["description"], a["owner_department"],
                              _dt(a["recorded_at"]), _dt(a.get("due_at"))) for a in d["actions"]])


# --- statistics ---------------------------------------------------------------------------------------------

def report_rows(uow: UnitOfWork, start: datetime, end: datetime, property_id: str | None) -> dict[str, list[Any]]:
    """Everything one month's report reads, each by an indexed time range (the domain filters exactly)."""
    p = {"s": start, "e": end, "p": property_id}
    prop = " AND property_id = %(p)s" if property_id else ""
    return {
        "requests": uow.execute("SELECT * FROM requests WHERE registered_at >= %(s)s AND registered_at < %(e)s"
                                + prop, p).fetchall(),
        "clocks": uow.execute(
            "SELECT c.*, r.property_id FROM clock_outcomes c LEFT JOIN requests r USING (request_no) "
            "WHERE c.settled_at >= %(s)s AND c.settled_at < %(e)s", p).fetchall(),
        "visits": uow.execute("SELECT * FROM return_visits WHERE resolved_at >= %(s)s AND resolved_at < %(e)s"
                              + prop, p).fetchall(),
        "satisfactions": uow.execute("SELECT * FROM return_visits WHERE done_at >= %(s)s AND done_at < %(e)s"
                                     + prop, p).fetchall(),
        "praises": uow.execute("SELECT * FROM praises WHERE received_at >= %(s)s AND received_at < %(e)s"
                               + prop, p).fetchall(),
    }


def quarter_requests(uow: UnitOfWork, start: datetime, end: datetime, property_id: str | None) -> list[Any]:
    return uow.execute("SELECT * FROM requests WHERE registered_at >= %(s)s AND registered_at < %(e)s"
                       + (" AND property_id = %(p)s" if property_id else ""),
                       {"s": start, "e": end, "p": property_id}).fetchall()


def claim_monthly_report(uow: UnitOfWork, period: str, report_id: UUID, now: datetime,
                         figures: dict[str, Any]) -> bool:
    row = uow.execute("INSERT INTO monthly_reports (period, report_id, published_at, figures) "
                      "VALUES (%s, %s, %s, %s) ON CONFLICT (period) DO NOTHING RETURNING 1",
                      (period, report_id, now, _json(figures))).fetchone()
    return row is not None


def monthly_report_published(uow: UnitOfWork, period: str) -> bool:
    return uow.execute("SELECT 1 FROM monthly_reports WHERE period = %s", (period,)).fetchone() is not None


def new_id() -> UUID:
    return uuid.uuid4()
