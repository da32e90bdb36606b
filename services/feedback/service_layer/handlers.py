"""Feedback's use cases: each opens the unit of work, runs the domain, writes state and events together."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from collections.abc import Mapping
from uuid import UUID

from services.common.db import UnitOfWork
from services.common.domain import DomainError, NotFound
from services.common.nameko_ext import NotReady
from services.feedback.adapters import repository as repo
from services.feedback.domain.letters import LetterTemplate, ReplyLetter
from services.feedback.domain.model import AuditFinding, ReturnVisit, SupervisorAudit, VisitOutcome, VisitSubject
from services.feedback.domain.policy import FeedbackPolicy
from services.feedback.domain.praise import record_praise
from services.feedback.domain.sampling import AuditCandidate, decide_return_visit
from services.feedback.domain.statistics import (
    CHINA_TZ,
    UNASSIGNED,
    ClockRecord,
    PraiseRecord,
    RequestRecord,
    SatisfactionRecord,
    VisitRecord,
    month_bounds,
    monthly_report,
    quarter_bounds,
    quarterly_report,
)
from services.feedback.domain.surveys import SatisfactionSurvey, ServiceRating

QUEUE = "feedback.events"
TIMER_BATCH = 100


@dataclass(frozen=True)
class Settings:
    """What the handlers need from configuration, loaded once at start."""

    policy: FeedbackPolicy = FeedbackPolicy()
    templates: Mapping[str, LetterTemplate] = field(default_factory=dict)
    households: Mapping[str, int] = field(default_factory=dict)
    recurring_min_occurrences: int = 2


def _iso(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, UUID):
        return str(v)
    if isinstance(v, dict):
        return {k: _iso(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_iso(x) for x in v]
    return v


# --- projections --------------------------------------------------------------------------------------------

def on_event(uow: UnitOfWork, envelope: dict[str, Any], settings: Settings) -> str | None:
    handler = PROJECTIONS.get(envelope["event_type"])
    if handler is None:
        return None
    with uow:
        if not uow.claim(str(envelope["event_id"]), QUEUE):
            return "duplicate"
        handler(uow, envelope["data"], settings)
        uow.commit()
    return "ok"


def _registered(uow: UnitOfWork, d: dict[str, Any], settings: Settings) -> None:
    repo.upsert_request(uow, d)


def _reclassified(uow: UnitOfWork, d: dict[str, Any], settings: Settings) -> None:
    if not repo.reclassify_request(uow, d):
        raise NotReady(f"request {d['request_no']} not registered here yet")


def _assigned(uow: UnitOfWork, d: dict[str, Any], settings: Settings) -> None:
    if not repo.set_department(uow, d["request_no"], d["department"], d["work_order_id"]):
        raise NotReady(f"request {d['request_no']} not registered here yet")


def _resolved(uow: UnitOfWork, d: dict[str, Any], settings: Settings) -> None:
    """Decide the return visit for every resolved work order (the decision is kept either way); schedule it when
    required."""
    req = repo.get_request_for_update(uow, d["request_no"])
    if req is None:
        raise NotReady(f"request {d['request_no']} not registered here yet: its validity and fee decide the visit")
    paid = bool(req["paid_service"] or d["paid_service"] or d["fee_cents"] > 0)
    repo.set_resolved(uow, d["request_no"], department=d["department"], work_order_id=d["work_order_id"],
                      resolved_at=d["resolved_at"], fee_cents=d["fee_cents"], paid_service=paid)
    now = uow.now()
    decision = decide_return_visit(d["request_no"], complaint_valid=_valid_complaint(req), paid_service=paid,
                                   resolved_at=d["resolved_at"], policy=settings.policy)
    visit = None
    if decision.required:
        subject = VisitSubject(property_id=req["property_id"], building=req["building"],
                               unit=req["unit"] or req["area"], subcategory=req["subcategory"],
                               department=d["department"],
                               work_order_id=d["work_order_id"], paid_service=paid)
        visit = ReturnVisit.schedule(decision, subject, now=now)
    if not repo.insert_decision(uow, d["work_order_id"], decision, decided_at=now,
                                visit_id=visit.visit_id if visit else None):
        return  # this work order was decided already (a second resolution event for it)
    if visit is not None:
        repo.insert_visit(uow, visit, None)
        uow.publish(visit.events)


def _valid_complaint(req: Mapping[str, Any]) -> bool:
    return req["category"] == "complaint" and bool(req["complaint_valid"] or req.get("validity") == "valid")


def _clock_met(uow: UnitOfWork, d: dict[str, Any], settings: Settings) -> None:
    repo.record_clock(uow, d["clock_id"], d["request_no"], d["clock"], "met" if d["on_time"] else "breached",
                      d["met_at"])


def _clock_breached(uow: UnitOfWork, d: dict[str, Any], settings: Settings) -> None:
    repo.record_clock(uow, d["clock_id"], d["request_no"], d["clock"], "breached", d["breached_at"])


def _letter_praise(uow: UnitOfWork, d: dict[str, Any], settings: Settings) -> None:
    received = datetime.combine(date.fromisoformat(d["received_date"]), time(0), CHINA_TZ)
    repo.insert_praise(uow, {
        "praise_id": repo.new_id(), "source": "letter", "letter_id": str(d["letter_id"]),
        "property_id": d["property_id"], "target_kind": "staff" if d.get("staff_id") else "department",
        "staff_id": d.get("staff_id"), "department": d.get("department") or UNASSIGNED, "channel": "letter",
        "summary": d["subject"], "received_at": received, "recorded_by": d["recorded_by"],
        "recorded_at": d["recorded_at"], "request_no": d.get("request_no")})


PROJECTIONS = {
    "RequestRegistered": _registered,
    "RequestReclassified": _reclassified,
    "WorkOrderAssigned": _assigned,
    "WorkOrderResolved": _resolved,
    "ClockMet": _clock_met,
    "ClockBreached": _clock_breached,
    "LetterPraiseRecorded": _letter_praise,
}


# --- return visits ------------------------------------------------------------------------------------------

def present_visit(r: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("visit_id", "request_no", "work_order_id", "property_id", "department", "paid_service", "reason",
            "resolved_at", "scheduled_at", "due_at", "seed_id", "draw", "rate", "state", "attempts",
            "next_attempt_at", "give_up_at", "outcome", "level", "score", "done_at", "failed_at", "follow_up")
    return _iso({k: r.get(k) for k in keys})


def _load_visit(uow: UnitOfWork, visit_id: str) -> ReturnVisit:
    row = repo.get_visit(uow, _parse_uuid(visit_id, "visit_id"), for_update=True)
    if row is None:
        raise NotFound(f"no return visit {visit_id}", field="visit_id")
    return repo.visit_from_row(row)


def record_unreachable(uow: UnitOfWork, visit_id: str, body: dict[str, Any], settings: Settings) -> dict[str, Any]:
    with uow:
        visit = _load_visit(uow, visit_id)
        visit.record_unreachable_attempt(method=body["method"], by=body["by"], now=uow.now(),
                                         policy=settings.policy, note=body.get("note") or "")
        repo.save_visit(uow, visit, visit.gives_up_at(settings.policy))
        uow.publish(visit.events)
        uow.commit()
        return present_visit(repo.get_visit(uow, visit.visit_id) or {})


def complete_visit(uow: UnitOfWork, visit_id: str, body: dict[str, Any], settings: Settings) -> dict[str, Any]:
    with uow:
        visit = _load_visit(uow, visit_id)
        outcome = VisitOutcome(
            method=body["method"], visited_by=body["visited_by"], level=body["level"], score=body["score"],
            fee_checked=body["fee_checked"], resident_signed=body.get("resident_signed"),
            comments=body.get("comments") or "", problem_found=bool(body.get("problem_found")),
            problem_description=body.get("problem_description") or "")
        visit.complete(outcome, now=uow.now(), policy=settings.policy)
        repo.save_visit(uow, visit, None)
        uow.publish(visit.events)
        uow.commit()
        return present_visit(repo.get_visit(uow, visit.visit_id) or {})


def fail_lapsed_visits(uow: UnitOfWork, settings: Settings) -> int:
    """The timer's pass: visits whose last retry lapsed are recorded as failed (unreachable). Rows are locked with
    SKIP LOCKED, so instances never fire the same one, and the state change makes a second pass a no-op."""
    with uow:
        now = uow.now()
        rows = repo.lapsed_visits(uow, now, TIMER_BATCH)
        for row in rows:
            visit = repo.visit_from_row(row)
            visit.record_lapsed(now=now, policy=settings.policy)
            repo.save_visit(uow, visit, None)
            uow.publish(visit.events)
        uow.commit()
    return len(rows)


def request_visits(uow: UnitOfWork, request_no: str) -> dict[str, Any]:
    with uow:
        visits = repo.visits_for(uow, request_no)
        decisions = repo.decisions_for(uow, request_no)
    return {"request_no": request_no, "visits": [present_visit(v) for v in visits],
            "decisions": [_iso(dict(d)) for d in decisions]}


def visits_due(uow: UnitOfWork, query: dict[str, Any]) -> dict[str, Any]:
    due_before = _parse_dt(query.get("due_before"), "due_before") if query.get("due_before") else None
    limit = int(query.get("limit") or 200)
    with uow:
        rows = repo.visits_due_before(uow, due_before or uow.now() + timedelta(days=3650), limit)
    return {"items": [present_visit(r) for r in rows]}


# --- reply letters ------------------------------------------------------------------------------------------

def present_letter(row: Mapping[str, Any], versions: bool = True) -> dict[str, Any]:
    letter = repo.letter_from_row(dict(row))
    out = {
        "letter_id": str(letter.letter_id), "request_no": letter.request_no, "state": letter.state,
        "version": letter.version, "department": letter.department, "concerns_property": letter.concerns_property,
        "legal": letter.legal, "required_reviewers": list(letter.required_roles),
        "pending_reviewers": letter.pending_roles, "approved_by": letter.approved_by,
        "approved_at": letter.approved_at, "send_method": letter.send_method, "tracking_no": letter.tracking_no,
        "sent_at": letter.sent_at, "confirmation_due_at": letter.confirmation_due_at,
        "confirmed_at": letter.confirmed_at, "archived_at": letter.archived_at,
        "reviews": [asdict(r) for r in letter.reviews], "history": [asdict(s) for s in letter.history],
    }
    if versions:
        out["versions"] = [asdict(v) for v in letter.versions]
    else:
        out["body"] = letter.current.body
    return _iso(out)


def draft_letter(uow: UnitOfWork, request_no: str, body: dict[str, Any], settings: Settings) -> dict[str, Any]:
    template = settings.templates.get(body["template_id"])
    if template is None:
        known = ", ".join(sorted(settings.templates))
        raise DomainError(f"no letter template {body['template_id']!r} (known: {known})", field="template_id")
    with uow:
        now = uow.now()
        req = repo.get_request(uow, request_no)
        values = {"request_no": request_no, "date": now.astimezone(CHINA_TZ).strftime("%Y年%m月%d日"),
                  "property_id": req["property_id"] if req else "", **(body.get("values") or {})}
        letter = ReplyLetter.draft(request_no=request_no, department=body["department"], template=template,
                                   values=values, author=body["by"], now=now,
                                   concerns_property=body.get("concerns_property", True),
                                   legal=body.get("legal", False))
        repo.insert_letter(uow, letter, now)
        uow.publish(letter.events)
        uow.commit()
        return present_letter(repo.get_letter(uow, letter.letter_id) or {})


def letter_step(uow: UnitOfWork, letter_id: str, action: str, body: dict[str, Any],
                settings: Settings) -> dict[str, Any]:
    """One step of a letter's workflow; the domain refuses out-of-order steps (409 naming the current state)."""
    with uow:
        row = repo.get_letter(uow, _parse_uuid(letter_id, "letter_id"), for_update=True)
        if row is None:
            raise NotFound(f"no reply letter {letter_id}", field="letter_id")
        letter = repo.letter_from_row(row)
        now = uow.now()
        versions_before = len(letter.versions)
        if action == "revise":
            letter.revise(body=body["body"], author=body["by"], now=now, note=body.get("note") or "")
        elif action == "review":
            letter.review(role=body["role"], reviewer_id=body["reviewer_id"], decision=body["decision"], now=now,
                          comments=body.get("comments") or "", version=body.get("version"))
        elif action == "approve":
            letter.approve(approver_id=body["approver_id"], approver_role=body["approver_role"], now=now)
        elif action == "send":
            letter.send(method=body["method"], sent_by=body["by"], now=now, policy=settings.policy,
                        tracking_no=body.get("tracking_no"))
        elif action == "confirm":
            letter.confirm(confirmed_by=body["by"], now=now, received=body.get("received", True),
                           notes=body.get("notes") or "")
        elif action == "archive":
            letter.archive(archived_by=body["by"], now=now)
        else:
            raise DomainError(f"unknown letter action {action}", field="action")
        if len(letter.versions) > versions_before:
            repo.insert_letter_version(uow, letter.letter_id, letter.current)
        repo.save_letter(uow, letter, now)
        uow.publish(letter.events)
        uow.commit()
        return present_letter(repo.get_letter(uow, letter.letter_id) or {})


def get_letter(uow: UnitOfWork, letter_id: str) -> dict[str, Any]:
    with uow:
        row = repo.get_letter(uow, _parse_uuid(letter_id, "letter_id"))
    if row is None:
        raise NotFound(f"no reply letter {letter_id}", field="letter_id")
    return present_letter(row)


def request_letters(uow: UnitOfWork, request_no: str) -> dict[str, Any]:
    with uow:
        rows = repo.letters_for(uow, request_no)
    return {"request_no": request_no, "letters": [present_letter(r, versions=False) for r in rows]}


# --- praise -------------------------------------------------------------------------------------------------

def add_praise(uow: UnitOfWork, body: dict[str, Any]) -> dict[str, Any]:
    with uow:
        now = uow.now()
        received = _parse_dt(body["received_at"], "received_at") if body.get("received_at") else now
        praise, event = record_praise(
            property_id=body["property_id"], department=body["department"], channel=body["channel"],
            summary=body["summary"], received_at=received, recorded_by=body["recorded_by"], now=now,
            staff_id=body.get("staff_id"), request_no=body.get("request_no"))
        repo.insert_praise(uow, {**asdict(praise), "source": "api"})
        uow.publish(event)
        uow.commit()
    return _iso(asdict(praise))


# --- supervisor audits --------------------------------------------------------------------------------------

def _present_audit(uow: UnitOfWork, row: Mapping[str, Any]) -> dict[str, Any]:
    findings = repo.audit_findings(uow, row["audit_id"])
    done = {f["visit_id"] for f in findings}
    return _iso({"audit_id": row["audit_id"], "period": row["period"], "supervisor_id": row["supervisor_id"],
                 "started_at": row["started_at"], "selection": row["selection"],
                 "findings": [dict(f) for f in findings],
                 "outstanding": [s["visit_id"] for s in row["selection"] if UUID(s["visit_id"]) not in done]})


def start_audit(uow: UnitOfWork, body: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], bool]:
    """The month's audit, selected once: a second request for the same month answers the existing one."""
    period = body["period"]
    start, end = month_bounds(period)
    with uow:
        existing = repo.get_audit_by_period(uow, period)
        if existing:
            return _present_audit(uow, existing), False
        candidates = [AuditCandidate(r["visit_id"], r["request_no"], r["paid_service"])
                      for r in repo.audit_candidates(uow, start, end)]
        audit = SupervisorAudit.start(period, candidates, supervisor_id=body["supervisor_id"], now=uow.now(),
                                      policy=settings.policy)
        created = repo.insert_audit(uow, audit.audit_id, period, audit.supervisor_id, audit.started_at,
                                    audit.selection)
        uow.commit()
        row = repo.get_audit_by_period(uow, period)
        assert row is not None
        return _present_audit(uow, row), created


def record_finding(uow: UnitOfWork, audit_id: str, body: dict[str, Any]) -> dict[str, Any]:
    with uow:
        row = repo.get_audit(uow, _parse_uuid(audit_id, "audit_id"), for_update=True)
        if row is None:
            raise NotFound(f"no audit {audit_id}", field="audit_id")
        audit = SupervisorAudit(row["audit_id"], row["period"], row["supervisor_id"],
                                repo.selection_from_json(row["selection"]), row["started_at"])
        for f in repo.audit_findings(uow, row["audit_id"]):
            audit.findings[f["visit_id"]] = AuditFinding(f["visit_id"], f["request_no"], f["outcome"], f["notes"],
                                                         f["supervisor_id"], f["recorded_at"])
        visit_id = _parse_uuid(body["visit_id"], "visit_id")
        event = audit.record_finding(visit_id, outcome=body["outcome"], notes=body.get("notes") or "",
                                     supervisor_id=body["supervisor_id"], now=uow.now())
        repo.insert_finding(uow, row["audit_id"], audit.findings[visit_id])
        uow.publish(event)
        uow.commit()
        return _present_audit(uow, row)


def get_audit(uow: UnitOfWork, audit_id: str) -> dict[str, Any]:
    with uow:
        row = repo.get_audit(uow, _parse_uuid(audit_id, "audit_id"))
        if row is None:
            raise NotFound(f"no audit {audit_id}", field="audit_id")
        return _present_audit(uow, row)


# --- surveys ------------------------------------------------------------------------------------------------

def present_survey(s: SatisfactionSurvey) -> dict[str, Any]:
    return _iso({"survey_id": s.survey_id, "property_id": s.property_id, "period": s.period, "state": s.state,
                 "services": list(s.services), "households_total": s.households_total,
                 "responses": len(s.responses), "opened_at": s.opened_at, "closed_at": s.closed_at,
                 "results": [r.to_dict() for r in s.results()], "actions": [asdict(a) for a in s.actions]})


def open_survey(uow: UnitOfWork, body: dict[str, Any], settings: Settings) -> dict[str, Any]:
    with uow:
        households = body.get("households_total") or settings.households.get(body["property_id"], 0)
        survey = SatisfactionSurvey.open(property_id=body["property_id"], period=body["period"],
                                         households_total=households, now=uow.now(), policy=settings.policy)
        repo.insert_survey(uow, survey)
        uow.commit()
    return present_survey(survey)


def survey_step(uow: UnitOfWork, survey_id: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
    with uow:
        row = repo.get_survey(uow, _parse_uuid(survey_id, "survey_id"), for_update=True)
        if row is None:
            raise NotFound(f"no survey {survey_id}", field="survey_id")
        survey = repo.survey_from_row(row)
        now = uow.now()
        if action == "answer":
            ratings = {k: ServiceRating(v["level"], v.get("score")) for k, v in body["ratings"].items()}
            survey.answer(unit=body["unit"], ratings=ratings, now=now, comments=body.get("comments") or "")
        elif action == "close":
            survey.close(now=now)
        elif action == "action":
            due = _parse_dt(body["due_at"], "due_at") if body.get("due_at") else None
            survey.record_action(service=body["service"], description=body["description"],
                                 owner_department=body["owner_department"], now=now, due_at=due)
        else:
            raise DomainError(f"unknown survey action {action}", field="action")
        repo.save_survey(uow, survey)
        uow.publish(survey.events)
        uow.commit()
    return present_survey(survey)


def get_survey(uow: UnitOfWork, survey_id: str) -> dict[str, Any]:
    with uow:
        row = repo.get_survey(uow, _parse_uuid(survey_id, "survey_id"))
    if row is None:
        raise NotFound(f"no survey {survey_id}", field="survey_id")
    return present_survey(repo.survey_from_row(row))


# --- statistics ---------------------------------------------------------------------------------------------

def build_monthly(uow: UnitOfWork, period: str, property_id: str | None, settings: Settings) -> Any:
    start, end = month_bounds(period)
    with uow:
        rows = repo.report_rows(uow, start, end, property_id)
        now = uow.now()
    return monthly_report(
        period,
        requests=[RequestRecord(r["request_no"], r["property_id"], r["category"], r["channel"], r["registered_at"],
                                r["subcategory"], r["department"], r["building"], r["unit"], r["area"],
                                r["complaint_valid"] if r["category"] != "complaint" else _valid_complaint(r),
                                r["paid_service"]) for r in rows["requests"]],
        clocks=[ClockRecord(c["request_no"], c["clock"], c["outcome"], c["settled_at"], c["property_id"])
                for c in rows["clocks"]],
        visits=[VisitRecord(v["request_no"], v["property_id"], v["reason"], v["state"], v["resolved_at"],
                            v["due_at"], v["done_at"]) for v in rows["visits"]],
        satisfactions=[SatisfactionRecord(v["request_no"], v["property_id"], v["level"], v["score"], v["done_at"],
                                          v["department"]) for v in rows["satisfactions"] if v["level"]],
        praises=[PraiseRecord(p["property_id"], p["department"], p["received_at"], p["staff_id"])
                 for p in rows["praises"]],
        households=settings.households, policy=settings.policy, generated_at=now, property_id=property_id)


def render(report: Any, fmt: str) -> dict[str, Any]:
    if fmt == "csv":
        return {"content_type": "text/csv; charset=utf-8", "body": report.to_csv()}
    if fmt == "html":
        return {"content_type": "text/html; charset=utf-8", "body": report.to_html()}
    return report.to_dict()


def monthly(uow: UnitOfWork, query: dict[str, Any], settings: Settings) -> dict[str, Any]:
    report = build_monthly(uow, query["period"], query.get("property_id"), settings)
    return render(report, query.get("format") or "json")


def quarterly(uow: UnitOfWork, query: dict[str, Any], settings: Settings) -> dict[str, Any]:
    start, end = quarter_bounds(query["quarter"])
    with uow:
        rows = repo.quarter_requests(uow, start, end, query.get("property_id"))
        now = uow.now()
    report = quarterly_report(
        query["quarter"],
        requests=[RequestRecord(r["request_no"], r["property_id"], r["category"], r["channel"], r["registered_at"],
                                r["subcategory"], r["department"], r["building"], r["unit"], r["area"])
                  for r in rows],
        generated_at=now, property_id=query.get("property_id"),
        min_occurrences=max(2, int(query.get("min_occurrences") or settings.recurring_min_occurrences)))
    return render(report, query.get("format") or "json")


def previous_period(now: datetime) -> str:
    local = now.astimezone(CHINA_TZ)
    first = local.replace(day=1)
    last_month = first - timedelta(days=1)
    return f"{last_month.year:04d}-{last_month.month:02d}"


def publish_monthly_report(uow: UnitOfWork, settings: Settings, period: str | None = None) -> str | None:
    """Publish the last completed month's report once (the monthly_reports primary key decides the race)."""
    with uow:
        period = period or previous_period(uow.now())
        if repo.monthly_report_published(uow, period):
            return None
    report = build_monthly(uow, period, None, settings)
    with uow:
        report_id = repo.new_id()
        event = report.published(report_id, now=uow.now())
        if not repo.claim_monthly_report(uow, period, report_id, uow.now(), _iso(asdict(event))):
            return None
        uow.publish(event)
        uow.commit()
    return period


# --- timeline -----------------------------------------------------------------------------------------------

def timeline_state(uow: UnitOfWork, request_no: str) -> dict[str, Any]:
    with uow:
        visits = repo.visits_for(uow, request_no)
        decisions = repo.decisions_for(uow, request_no)
        letters = repo.letters_for(uow, request_no)
    return {"return_visits": [present_visit(v) for v in visits],
            "visit_decisions": [_iso(dict(d)) for d in decisions],
            "letters": [present_letter(r, versions=False) for r in letters]}


# --- helpers ------------------------------------------------------------------------------------------------

def _parse_uuid(value: Any, field_name: str) -> UUID:
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        raise NotFound(f"{value!r} is not a valid id", field=field_name) from None


def _parse_dt(value: Any, field_name: str) -> datetime:
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value))
        except ValueError:
            raise DomainError(f"{value!r} is not an ISO 8601 time", field=field_name) from None
    if dt.tzinfo is None:
        raise DomainError("give the time with its UTC offset", field=field_name)
    return dt
