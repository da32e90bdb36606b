"""The letters registry (来函登记): every letter is logged with its kind and goes where the kind says.

- report    -> becomes a request (channel "letter"); the service layer registers it and calls `mark_registered`;
- complaint -> the customer-service assistant decides whether it becomes a tracked complaint (`decide_complaint`);
- praise    -> recorded against the staff member or department praised (`record_praise`; feedback counts it);
- work      -> other work correspondence, forwarded to the admin department.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from services.common.domain import DomainError, Event, InvalidTransition, utc
from services.intake.domain import events as ev
from services.intake.domain.model import (
    LETTER_KINDS,
    InvalidRequest,
    _check_agent,
    _check_text,
    _require_agent,
    _require_reason,
    mask_phone,
    normalise_phone,
)
from services.intake.domain.numbering import local_date, parse_request_no, validate_property_code

ROUTES: dict[str, str] = {
    "report": "request",
    "complaint": "cs_assistant",
    "praise": "praise_register",
    "work": "admin",
}
# Where each kind waits after logging.
_INITIAL_STATUS: dict[str, str] = {
    "report": "to_register",
    "complaint": "awaiting_decision",
    "praise": "awaiting_praise_record",
    "work": "forwarded_admin",
}


@dataclass
class Letter:
    letter_id: uuid.UUID
    property_id: str
    kind: str
    received_date: date
    subject: str
    logged_by: str
    logged_at: datetime
    status: str
    sender_name: str | None = None
    sender_phone: str | None = None
    praised_staff_id: str | None = None
    praised_department: str | None = None
    request_no: str | None = None
    decided_by: str | None = None
    decision_reason: str | None = None
    events: list[Event] = field(default_factory=list, repr=False)

    @property
    def routed_to(self) -> str:
        return ROUTES[self.kind]

    @classmethod
    def log(cls, *, property_id: str, kind: str, received_date: date | str, subject: str, logged_by: str,
            now: datetime, sender_name: str | None = None, sender_phone: str | None = None,
            praised_staff_id: str | None = None, praised_department: str | None = None,
            letter_id: uuid.UUID | None = None) -> Letter:
        now = utc(now)
        errors: dict[str, str] = {}
        try:
            validate_property_code(property_id)
        except DomainError as exc:
            errors["property_id"] = exc.message
        if kind not in LETTER_KINDS:
            errors["kind"] = f"one of {', '.join(LETTER_KINDS)}"
        day: date | None = None
        try:
            day = received_date if isinstance(received_date, date) else date.fromisoformat(str(received_date))
            if isinstance(day, datetime):
                day = day.date()
            if day > local_date(now):
                errors["received_date"] = "in the future"
        except ValueError:
            errors["received_date"] = "required, as YYYY-MM-DD"
        clean_subject = _check_text(errors, "subject", subject, max_len=500, required=True)
        clean_name = _check_text(errors, "sender_name", sender_name, max_len=50, required=False)
        phone = None
        if sender_phone:
            try:
                phone = normalise_phone(sender_phone)
            except DomainError as exc:
                errors["sender_phone"] = exc.message
        _check_agent(errors, "logged_by", logged_by)
        staff = _check_text(errors, "praised_staff_id", praised_staff_id, max_len=64, required=False)
        dept = _check_text(errors, "praised_department", praised_department, max_len=64, required=False)
        if errors:
            raise InvalidRequest(errors)
        assert day is not None and clean_subject is not None
        letter = cls(letter_id=letter_id or uuid.uuid4(), property_id=property_id, kind=kind, received_date=day,
                     subject=clean_subject, logged_by=logged_by, logged_at=now, status=_INITIAL_STATUS[kind],
                     sender_name=clean_name, sender_phone=phone, praised_staff_id=staff, praised_department=dept)
        letter._record(ev.LetterLogged(
            letter_id=letter.letter_id, property_id=property_id, kind=kind, received_date=day.isoformat(),
            routed_to=letter.routed_to, subject=clean_subject, sender_phone_masked=mask_phone(phone),
            logged_by=logged_by, logged_at=now))
        return letter

    def request_channel_details(self) -> dict[str, Any]:
        """What the request registered from this letter keeps as its channel details."""
        if self.status != "to_register":
            raise InvalidTransition(f"letter {self.letter_id} is not waiting to become a request", self.status)
        return {"kind": self.kind, "received_date": self.received_date.isoformat(), "letter_id": str(self.letter_id)}

    def mark_registered(self, request_no: str) -> None:
        """The request made from this letter (a report, or a complaint the assistant chose to track)."""
        if self.status != "to_register":
            raise InvalidTransition(f"letter {self.letter_id} is not waiting to become a request", self.status)
        if parse_request_no(request_no).property_id != self.property_id:
            raise DomainError("the request belongs to another property", field="request_no",
                              code="invalid_request_no")
        self.request_no = request_no
        self.status = "registered"

    def decide_complaint(self, *, track: bool, reason: str, by: str, now: datetime) -> ev.LetterComplaintDecided:
        """The customer-service assistant's call on a complaint letter: track it (it becomes a complaint request)
        or not (e.g. already answered, not the company's matter)."""
        now = utc(now)
        by = _require_agent("by", by)
        reason = _require_reason("reason", reason)
        if self.kind != "complaint":
            raise DomainError("only a complaint letter is decided by the assistant", field="kind",
                              code="not_complaint_letter")
        if self.status != "awaiting_decision":
            raise InvalidTransition(f"letter {self.letter_id} was already decided", self.status)
        if not isinstance(track, bool):
            raise DomainError("track must be true or false", field="track", code="invalid")
        self.status = "to_register" if track else "not_tracked"
        self.decided_by, self.decision_reason = by, reason
        return self._record(ev.LetterComplaintDecided(
            letter_id=self.letter_id, property_id=self.property_id, tracked=track, reason=reason, decided_by=by,
            decided_at=now))

    def record_praise(self, *, by: str, now: datetime, staff_id: str | None = None,
                      department: str | None = None) -> ev.LetterPraiseRecorded:
        now = utc(now)
        by = _require_agent("by", by)
        if self.kind != "praise":
            raise DomainError("only a praise letter is recorded as praise", field="kind", code="not_praise_letter")
        if self.status != "awaiting_praise_record":
            raise InvalidTransition(f"praise letter {self.letter_id} was already recorded", self.status)
        errors: dict[str, str] = {}
        staff = _check_text(errors, "staff_id", staff_id, max_len=64, required=False) or self.praised_staff_id
        dept = _check_text(errors, "department", department, max_len=64, required=False) or self.praised_department
        if not errors and staff is None and dept is None:
            errors["staff_id"] = "name the staff member or the department praised"
        if errors:
            raise InvalidRequest(errors)
        self.praised_staff_id, self.praised_department = staff, dept
        self.status = "praise_recorded"
        return self._record(ev.LetterPraiseRecorded(
            letter_id=self.letter_id, property_id=self.property_id, staff_id=staff, department=dept,
            received_date=self.received_date.isoformat(), subject=self.subject, recorded_by=by, recorded_at=now))

    def _record(self, event: Any) -> Any:
        self.events.append(event)
        return event
