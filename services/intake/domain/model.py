"""The Request aggregate: one numbered record per resident's request, classified, owned and acknowledged.

首问负责制: the agent who registers a request owns it until it is closed; ownership moves only by `hand_over` with a
reason. Every method records its events on `request.events` (the service layer publishes them through the outbox)
and also returns them.
"""
from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from services.common.domain import DomainError, Event, InvalidTransition, utc
from services.intake.domain import events as ev
from services.intake.domain.classification import Classification, override_classification
from services.intake.domain.numbering import local_date, parse_request_no, validate_property_code

CHANNELS: tuple[str, ...] = ("phone", "visit", "letter", "online", "email", "patrol", "iot", "call_centre")
REPORTER_KINDS: tuple[str, ...] = ("resident", "tenant", "visitor", "staff", "system")
ACK_METHODS: tuple[str, ...] = ("phone", "sms", "app", "in_person", "letter")
LETTER_KINDS: tuple[str, ...] = ("report", "complaint", "praise", "work")
ONLINE_PLATFORMS: tuple[str, ...] = ("app", "wechat", "web")
DUPLICATE_REASONS: tuple[str, ...] = ("same_unit_and_class", "same_caller", "agent")
# Online requests must be acknowledged (the resident cannot see a person taking the request).
ACK_REQUIRED_CHANNELS: tuple[str, ...] = ("online",)

REGISTERED, ACKNOWLEDGED, CLOSED, CANCELLED = "registered", "acknowledged", "closed", "cancelled"
STATUSES: tuple[str, ...] = (REGISTERED, ACKNOWLEDGED, CLOSED, CANCELLED)
OPEN_STATUSES: tuple[str, ...] = (REGISTERED, ACKNOWLEDGED)

MAX_DESCRIPTION = 4000
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
# Area code 0xx / 0xxx then a 7-8 digit number, optional extension: 0755-12345678, 010-1234567-123.
_LANDLINE = re.compile(r"^0\d{2,3}-?\d{7,8}(-\d{1,6})?$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_AGENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,63}$")


def allowed_transition(previous: str, current: str) -> bool:
    """The one table of the request's lifecycle at intake."""
    match (previous, current):
        case ("registered", "acknowledged") | ("acknowledged", "acknowledged"):
            # A second acknowledgement revises the promised time.
            return True
        case ("registered" | "acknowledged", "closed" | "cancelled"):
            return True
        case _:
            return False


class ActionRefused(InvalidTransition):
    """The request's state refuses a staff action (409): names the field at fault and why, with the request's status
    as `current_state` (e.g. a supervisor's answer when none was called in, a complaint reply to a repair)."""

    def __init__(self, message: str, *, current_state: str, field: str = "state", code: str = "invalid_transition"):
        super().__init__(message, current_state)
        self.field, self.code = field, code


class InvalidRequest(DomainError):
    """Several fields are bad at once; `errors` names each (the HTTP answer lists them all)."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        first = next(iter(self.errors))
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()), field=first,
                         code="invalid_request")


# --- personal data ----------------------------------------------------------------------------------------------

def normalise_phone(phone: str) -> str:
    """Digits (and the landline's dashes) of a Chinese phone number; refuses anything else."""
    if not isinstance(phone, str):
        raise DomainError("a phone number must be text", field="phone", code="invalid_phone")
    p = re.sub(r"[\s()]", "", phone)
    if p.startswith("+86"):
        p = p[3:]
    elif p.startswith("0086"):
        p = p[4:]
    p = p.lstrip("-")
    if _MOBILE.match(p):
        return p
    if _LANDLINE.match(p):
        return p
    raise DomainError("not a Chinese mobile (1[3-9] + 9 digits) or landline (0xx-xxxxxxxx) number",
                      field="phone", code="invalid_phone")


def mask_phone(phone: str | None) -> str | None:
    """138****1234: the first three and last four digits, enough for a resident to recognise their own number."""
    if not phone:
        return None
    digits = re.sub(r"\D", "", phone)
    if len(digits) <= 7:
        return "*" * len(digits)
    return f"{digits[:3]}****{digits[-4:]}"


# A phone number written inside staff text (the same shapes normalise_phone accepts).
_PHONE_IN_TEXT = re.compile(r"(?<!\d)(?:\+?86[\s-]?)?(?:1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}|0\d{2,3}-?\d{7,8})(?!\d)")


def mask_name(name: str | None) -> str | None:
    """张三 -> 张*, 欧阳娜娜 -> 欧***, John Smith -> J*** S****."""
    if not name:
        return None
    name = name.strip()
    if " " in name:
        return " ".join(w[0] + "*" * (len(w) - 1) for w in name.split())
    return name[0] + "*" * max(1, len(name) - 1)


def without_contact(text: str, reporter: Reporter | None = None) -> str:
    """Staff text as other systems may see it: any phone number masked (138****1234) and the reporter's name, where
    it appears, masked (张*). Events never carry a resident's name or phone, not even inside free text."""
    text = _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)) or "", text)
    if reporter is not None and reporter.name and len(reporter.name) >= 2:
        text = text.replace(reporter.name, reporter.name_masked or "")
    return text


def _check_text(errors: dict[str, str], name: str, value: Any, *, max_len: int, required: bool,
                min_len: int = 1) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors[name] = "required"
        return None
    if not isinstance(value, str):
        errors[name] = "must be text"
        return None
    value = value.strip()
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        errors[name] = "not valid UTF-8 text"
        return None
    if _CONTROL.search(value):
        errors[name] = "contains control characters"
    elif len(value) > max_len:
        errors[name] = f"longer than {max_len} characters"
    elif len(value) < min_len:
        errors[name] = f"shorter than {min_len} characters"
    return value


def _check_agent(errors: dict[str, str], name: str, value: Any) -> str | None:
    if not isinstance(value, str) or not _AGENT.match(value):
        errors[name] = "an agent id (letters, digits, _.:@-, at most 64)"
        return None
    return value


def _require_agent(name: str, value: Any) -> str:
    errors: dict[str, str] = {}
    agent = _check_agent(errors, name, value)
    if errors or agent is None:
        raise InvalidRequest(errors)
    return agent


def _require_reason(name: str, value: Any, max_len: int = 500) -> str:
    errors: dict[str, str] = {}
    reason = _check_text(errors, name, value, max_len=max_len, required=True, min_len=2)
    if errors or reason is None:
        raise InvalidRequest(errors)
    return reason


@dataclass(frozen=True)
class Reporter:
    """Who reported. Name and phone are stored here only; events and pii-less answers get the masked forms."""

    kind: str
    name: str | None = None
    phone: str | None = None

    @classmethod
    def create(cls, kind: str, name: str | None = None, phone: str | None = None) -> Reporter:
        errors: dict[str, str] = {}
        if kind not in REPORTER_KINDS:
            errors["reporter.kind"] = f"one of {', '.join(REPORTER_KINDS)}"
        clean_name = _check_text(errors, "reporter.name", name, max_len=50, required=False)
        clean_phone = None
        if phone is not None and str(phone).strip():
            try:
                clean_phone = normalise_phone(phone)
            except DomainError as exc:
                errors["reporter.phone"] = exc.message
        if errors:
            raise InvalidRequest(errors)
        return cls(kind, clean_name, clean_phone)

    @property
    def phone_masked(self) -> str | None:
        return mask_phone(self.phone)

    @property
    def name_masked(self) -> str | None:
        return mask_name(self.name)


# --- channel details ----------------------------------------------------------------------------------------------

_DETAIL_KEYS: dict[str, frozenset[str]] = {
    "phone": frozenset({"line"}),
    "visit": frozenset({"desk"}),
    "letter": frozenset({"kind", "received_date", "letter_id"}),
    "online": frozenset({"platform"}),
    "email": frozenset({"message_id", "subject"}),
    "patrol": frozenset({"inspector", "round_id"}),
    "iot": frozenset({"device_id", "reading", "unit_of_measure", "alarm_code"}),
    "call_centre": frozenset({"caller_number", "call_id", "queue"}),
}


def validate_channel_details(channel: str, details: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """Check and normalise the fields each channel keeps; returns JSON-friendly data (dates as ISO text).
    Raises InvalidRequest naming each bad field as `channel_details.<name>`."""
    if channel not in CHANNELS:
        raise InvalidRequest({"channel": f"one of {', '.join(CHANNELS)}"})
    details = dict(details or {})
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    for key in sorted(set(details) - _DETAIL_KEYS[channel]):
        errors[f"channel_details.{key}"] = f"not a field of the {channel} channel"

    def text(key: str, max_len: int, required: bool) -> None:
        value = _check_text(errors, f"channel_details.{key}", details.get(key), max_len=max_len, required=required)
        if value is not None:
            out[key] = value

    if channel == "letter":
        if details.get("kind") not in LETTER_KINDS:
            errors["channel_details.kind"] = f"one of {', '.join(LETTER_KINDS)}"
        else:
            out["kind"] = details["kind"]
        received = details.get("received_date")
        try:
            day = received if isinstance(received, date) else date.fromisoformat(str(received))
            if isinstance(day, datetime):
                day = day.date()
            if day > local_date(now):
                errors["channel_details.received_date"] = "in the future"
            else:
                out["received_date"] = day.isoformat()
        except ValueError:
            errors["channel_details.received_date"] = "required, as YYYY-MM-DD"
        if details.get("letter_id") is not None:
            try:
                out["letter_id"] = str(uuid.UUID(str(details["letter_id"])))
            except ValueError:
                errors["channel_details.letter_id"] = "not a UUID"
    elif channel == "iot":
        text("device_id", 64, True)
        reading = details.get("reading")
        if reading is None or isinstance(reading, bool) or not isinstance(reading, (int, float, str)):
            errors["channel_details.reading"] = "required: the alarm's reading (a number or short text)"
        elif isinstance(reading, str) and (not reading.strip() or len(reading) > 200):
            errors["channel_details.reading"] = "1 to 200 characters"
        else:
            out["reading"] = reading
        text("unit_of_measure", 20, False)
        text("alarm_code", 40, False)
    elif channel == "call_centre":
        try:
            out["caller_number"] = normalise_phone(details.get("caller_number"))  # type: ignore[arg-type]
        except DomainError as exc:
            errors["channel_details.caller_number"] = exc.message
        text("call_id", 100, True)
        text("queue", 40, False)
    elif channel == "online":
        if details.get("platform") is not None:
            if details["platform"] not in ONLINE_PLATFORMS:
                errors["channel_details.platform"] = f"one of {', '.join(ONLINE_PLATFORMS)}"
            else:
                out["platform"] = details["platform"]
    elif channel == "email":
        text("message_id", 200, False)
        text("subject", 200, False)
    elif channel == "patrol":
        text("inspector", 64, False)
        text("round_id", 64, False)
    elif channel == "phone":
        text("line", 40, False)
    elif channel == "visit":
        text("desk", 40, False)
    if errors:
        raise InvalidRequest(errors)
    return out


def masked_channel_details(details: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(details)
    if out.get("caller_number"):
        out["caller_number"] = mask_phone(out["caller_number"])
    return out


# --- the aggregate ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Acknowledgement:
    how: str
    promised_at: datetime
    by: str
    at: datetime


@dataclass(frozen=True)
class Handover:
    from_agent: str
    to_agent: str
    reason: str
    by: str
    at: datetime


@dataclass(frozen=True)
class SupervisorCall:
    """A supervisor called in on a request the agent could not settle, and (once given) the supervisor's answer."""

    supervisor: str
    reason: str
    by: str
    called_at: datetime
    answer: str | None = None
    answered_by: str | None = None
    answered_at: datetime | None = None

    @property
    def answered(self) -> bool:
        return self.answered_at is not None


@dataclass(frozen=True)
class StaffNote:
    """One recorded staff action with its text: the reason a request is complex, its plan, the first response, the
    reply to a complaint."""

    text: str
    by: str
    at: datetime


@dataclass
class Request:
    request_no: str
    property_id: str
    building: str | None
    unit: str | None
    area: str | None
    channel: str
    channel_details: dict[str, Any]
    source: str
    external_id: str | None
    description: str
    reporter: Reporter
    auto_classification: Classification
    owner_agent: str
    registered_by: str
    registered_at: datetime
    paid_service: bool = False
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    status: str = REGISTERED
    agent_classification: Classification | None = None
    reclassified_by: str | None = None
    reclassify_reason: str | None = None
    acknowledgement_required: bool = False
    acknowledgements: list[Acknowledgement] = field(default_factory=list)
    handovers: list[Handover] = field(default_factory=list)
    answer: str | None = None
    referred_at: datetime | None = None
    duplicate_of: str | None = None
    duplicate_reason: str | None = None
    incident_id: uuid.UUID | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    closed_reason: str | None = None
    cancel_reason: str | None = None
    supervisor_calls: list[SupervisorCall] = field(default_factory=list)
    marked_complex: StaffNote | None = None
    plan: StaffNote | None = None
    first_response: StaffNote | None = None
    complaint_reply: StaffNote | None = None
    events: list[Event] = field(default_factory=list, repr=False)

    # -- creation --

    @classmethod
    def register(cls, *, request_no: str, property_id: str, channel: str, description: str, reporter: Reporter,
                 classification: Classification, registered_by: str, now: datetime,
                 building: str | None = None, unit: str | None = None, area: str | None = None,
                 source: str = "desk", external_id: str | None = None,
                 channel_details: Mapping[str, Any] | None = None, paid_service: bool = False,
                 vip: bool = False, compensation_demanded: bool = False,
                 ack_required_channels: tuple[str, ...] = ACK_REQUIRED_CHANNELS,
                 request_id: uuid.UUID | None = None) -> Request:
        """Validate every field at once (InvalidRequest names them all) and record RequestRegistered and
        RequestClassified. The registering agent becomes the first-contact owner. For machine channels the
        service layer passes the duty desk's agent id as `registered_by`."""
        now = utc(now)
        errors: dict[str, str] = {}
        try:
            validate_property_code(property_id)
        except DomainError as exc:
            errors["property_id"] = exc.message
        try:
            number = parse_request_no(request_no)
            if number.property_id != property_id:
                errors["request_no"] = f"belongs to property {number.property_id}, not {property_id}"
        except DomainError as exc:
            errors["request_no"] = exc.message
        details: dict[str, Any] = {}
        if channel not in CHANNELS:
            errors["channel"] = f"one of {', '.join(CHANNELS)}"
        else:
            try:
                details = validate_channel_details(channel, channel_details, now)
            except InvalidRequest as exc:
                errors.update(exc.errors)
        text = _check_text(errors, "description", description, max_len=MAX_DESCRIPTION, required=True)
        building = _check_text(errors, "building", building, max_len=20, required=False)
        unit = _check_text(errors, "unit", unit, max_len=40, required=False)
        area = _check_text(errors, "area", area, max_len=100, required=False)
        if unit is None and area is None and "unit" not in errors and "area" not in errors:
            errors["unit"] = "a unit or a public area is required"
        source = _check_text(errors, "source", source, max_len=40, required=True) or ""
        external_id = _check_text(errors, "external_id", external_id, max_len=100, required=False)
        owner = _check_agent(errors, "registered_by", registered_by)
        if not isinstance(reporter, Reporter):
            errors["reporter"] = "required"
        if not isinstance(paid_service, bool):
            errors["paid_service"] = "must be true or false"
        if errors:
            raise InvalidRequest(errors)
        assert text is not None and owner is not None
        req = cls(request_no=request_no, property_id=property_id, building=building, unit=unit, area=area,
                  channel=channel, channel_details=details, source=source, external_id=external_id,
                  description=text, reporter=reporter, auto_classification=classification, owner_agent=owner,
                  registered_by=owner, registered_at=now, paid_service=paid_service,
                  id=request_id or uuid.uuid4(), acknowledgement_required=channel in ack_required_channels)
        c = classification
        req._record(ev.RequestRegistered(
            request_no=request_no, property_id=property_id, building=building, unit=unit, area=area,
            channel=channel, source=source, external_id=external_id, category=c.category,
            subcategory=c.subcategory, priority=c.priority, emergency=c.emergency, complaint_valid=c.complaint_valid,
            paid_service=paid_service, vip=vip, compensation_demanded=compensation_demanded,
            owner_agent=owner, reporter_kind=reporter.kind,
            reporter_phone_masked=req.contact_phone_masked, description=text, registered_at=now,
            validity=c.validity, confidence=c.confidence, matched_terms=list(c.matched_terms),
            channel_details=masked_channel_details(details),
            acknowledgement_required=req.acknowledgement_required))
        req._record(ev.RequestClassified(
            request_no=request_no, property_id=property_id, category=c.category, subcategory=c.subcategory,
            priority=c.priority, emergency=c.emergency, complaint_valid=c.complaint_valid, validity=c.validity,
            confidence=c.confidence, matched_terms=list(c.matched_terms), owner_agent=owner, classified_at=now))
        return req

    # -- reading --

    @property
    def classification(self) -> Classification:
        """The effective classification: the agent's override if there is one, else the automatic verdict."""
        return self.agent_classification or self.auto_classification

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def contact_phone(self) -> str | None:
        return self.reporter.phone or self.channel_details.get("caller_number")

    @property
    def contact_phone_masked(self) -> str | None:
        return mask_phone(self.contact_phone)

    @property
    def acknowledgement(self) -> Acknowledgement | None:
        return self.acknowledgements[-1] if self.acknowledgements else None

    @property
    def pending_supervisor_call(self) -> SupervisorCall | None:
        """The supervisor called in who has not answered yet, if any."""
        last = self.supervisor_calls[-1] if self.supervisor_calls else None
        return last if last is not None and not last.answered else None

    # -- commands --

    def reclassify(self, *, category: str, by: str, reason: str, now: datetime, subcategory: str | None = None,
                   priority: str | None = None, emergency: bool | None = None,
                   validity: str | None = None) -> ev.RequestReclassified:
        """An agent overrides the classification; the automatic verdict is kept alongside."""
        now = utc(now)
        by = _require_agent("by", by)
        reason = _require_reason("reason", reason)
        self._require_open("reclassify")
        before = self.classification
        after = override_classification(before, category=category, subcategory=subcategory, priority=priority,
                                        emergency=emergency, validity=validity)
        self.agent_classification = after
        self.reclassified_by, self.reclassify_reason = by, reason
        return self._record(ev.RequestReclassified(
            request_no=self.request_no, property_id=self.property_id, previous_category=before.category,
            previous_subcategory=before.subcategory, previous_priority=before.priority,
            previous_emergency=before.emergency, category=after.category, subcategory=after.subcategory,
            priority=after.priority, emergency=after.emergency, complaint_valid=after.complaint_valid,
            validity=after.validity, reason=reason, reclassified_by=by, owner_agent=self.owner_agent,
            reclassified_at=now))

    def acknowledge(self, *, how: str, promised_at: datetime, by: str, now: datetime) -> ev.RequestAcknowledged:
        """Record that the resident was told the request was received, how, and by when it will be dealt with."""
        now = utc(now)
        errors: dict[str, str] = {}
        if how not in ACK_METHODS:
            errors["how"] = f"one of {', '.join(ACK_METHODS)}"
        elif how in ("phone", "sms") and not self.contact_phone:
            errors["how"] = f"no phone number on record to {how}"
        promised = None
        if not isinstance(promised_at, datetime) or promised_at.tzinfo is None:
            errors["promised_at"] = "a timezone-aware time"
        else:
            promised = utc(promised_at)
            if promised < now:
                errors["promised_at"] = "already past"
        _check_agent(errors, "by", by)
        if errors:
            raise InvalidRequest(errors)
        assert promised is not None
        self._transition(ACKNOWLEDGED)
        self.acknowledgements.append(Acknowledgement(how, promised, by, now))
        return self._record(ev.RequestAcknowledged(
            request_no=self.request_no, property_id=self.property_id, channel=self.channel, how=how,
            promised_at=promised, acknowledged_by=by, owner_agent=self.owner_agent, acknowledged_at=now))

    def answer_at_desk(self, *, answer: str, by: str, now: datetime) -> list[Event]:
        """Close a consultation answered on the spot. It stays a registered, numbered request for statistics."""
        now = utc(now)
        by = _require_agent("by", by)
        errors: dict[str, str] = {}
        answer = _check_text(errors, "answer", answer, max_len=MAX_DESCRIPTION, required=True) or ""
        if errors:
            raise InvalidRequest(errors)
        if self.classification.category != "consultation":
            raise DomainError("only a consultation can be answered at the desk", field="category",
                              code="not_consultation")
        if self.referred_at is not None:
            raise DomainError("this consultation was referred on; close it with its answer instead",
                              field="state", code="already_referred")
        self._transition(CLOSED)
        self.answer = answer
        self.closed_at, self.closed_by, self.closed_reason = now, by, "answered_at_desk"
        answered = self._record(ev.RequestAnsweredAtDesk(
            request_no=self.request_no, property_id=self.property_id, category=self.classification.category,
            answer=answer, answered_by=by, owner_agent=self.owner_agent, answered_at=now))
        closed = self._closed_event()
        return [answered, closed]

    def refer_consultation(self, *, note: str, by: str, now: datetime) -> ev.ConsultationReferred:
        """The desk could not answer: the consultation goes on as a normal-priority request."""
        now = utc(now)
        by = _require_agent("by", by)
        note = _require_reason("note", note, max_len=1000)
        if self.classification.category != "consultation":
            raise DomainError("only a consultation is referred", field="category", code="not_consultation")
        self._require_open("refer")
        if self.referred_at is not None:
            raise DomainError("already referred", field="state", code="already_referred")
        current = self.classification
        if current.priority != "normal":
            self.agent_classification = dataclasses.replace(current, priority="normal", emergency=False,
                                                            source="agent", confidence=1.0)
        self.referred_at = now
        return self._record(ev.ConsultationReferred(
            request_no=self.request_no, property_id=self.property_id, priority="normal", note=note,
            referred_by=by, owner_agent=self.owner_agent, referred_at=now))

    def hand_over(self, *, to_agent: str, reason: str, by: str, now: datetime) -> ev.OwnershipHandedOver:
        """The only way ownership moves (首问负责制): explicit, to a named agent, with a reason."""
        now = utc(now)
        errors: dict[str, str] = {}
        _check_agent(errors, "to_agent", to_agent)
        _check_text(errors, "reason", reason, max_len=500, required=True, min_len=2)
        _check_agent(errors, "by", by)
        if errors:
            raise InvalidRequest(errors)
        self._require_open("hand over")
        if to_agent == self.owner_agent:
            raise DomainError(f"{to_agent} already owns {self.request_no}", field="to_agent", code="same_owner")
        previous = self.owner_agent
        self.handovers.append(Handover(previous, to_agent, reason.strip(), by, now))
        self.owner_agent = to_agent
        return self._record(ev.OwnershipHandedOver(
            request_no=self.request_no, property_id=self.property_id, from_agent=previous, to_agent=to_agent,
            reason=reason.strip(), handed_over_by=by, handed_over_at=now))

    # -- staff actions whose facts start or stop SLA clocks (escalation's clock table reads these events) --

    def call_in_supervisor(self, *, supervisor: str, reason: str, by: str,
                           now: datetime) -> ev.SupervisorCalledIn:
        """The agent cannot settle the request and asks the department supervisor:
        解决不了的应向部门主管汇报后在10分钟内给予回复. Starts the supervisor_answer clock (10 minutes by default).
        One call is outstanding at a time; the agent stays the first-contact owner (首问负责制)."""
        now = utc(now)
        errors: dict[str, str] = {}
        supervisor = _check_agent(errors, "supervisor", supervisor) or ""
        reason = _check_text(errors, "reason", reason, max_len=500, required=True, min_len=2) or ""
        by = _check_agent(errors, "by", by) or ""
        if not errors and supervisor == by:
            errors["supervisor"] = "the supervisor called in is someone other than the agent asking"
        if errors:
            raise InvalidRequest(errors)
        self._require_open("call in a supervisor on")
        pending = self.pending_supervisor_call
        if pending is not None:
            raise ActionRefused(
                f"supervisor {pending.supervisor} was called in at {pending.called_at.isoformat()} and has not "
                f"answered yet", current_state=self.status, field="supervisor", code="supervisor_pending")
        reason = without_contact(reason, self.reporter)
        self.supervisor_calls.append(SupervisorCall(supervisor, reason, by, now))
        return self._record(ev.SupervisorCalledIn(
            request_no=self.request_no, property_id=self.property_id, category=self.classification.category,
            supervisor=supervisor, reason=reason, called_by=by, owner_agent=self.owner_agent, called_at=now))

    def record_supervisor_answer(self, *, answer: str, by: str, now: datetime) -> ev.SupervisorAnswered:
        """The supervisor called in answers (主管答复): stops the supervisor_answer clock. Refused (409) when no
        supervisor was called in, or the one called in has already answered."""
        now = utc(now)
        answer, by = self._staff_text("answer", answer, by, "record a supervisor's answer on", max_len=MAX_DESCRIPTION)
        pending = self.pending_supervisor_call
        if pending is None:
            why = ("the supervisor called in has already answered" if self.supervisor_calls
                   else "no supervisor was called in")
            raise ActionRefused(f"{why} on {self.request_no}; call one in first", current_state=self.status,
                                field="supervisor", code="no_supervisor_called")
        self.supervisor_calls[-1] = dataclasses.replace(pending, answer=answer, answered_by=by, answered_at=now)
        return self._record(ev.SupervisorAnswered(
            request_no=self.request_no, property_id=self.property_id, supervisor=pending.supervisor, answer=answer,
            answered_by=by, owner_agent=self.owner_agent, called_at=pending.called_at, answered_at=now))

    def mark_complex(self, *, reason: str, by: str, now: datetime) -> ev.RequestMarkedComplex:
        """A problem that cannot be solved within the ordinary time: 复杂问题需在48小时内给出解决方案. Starts the
        plan clock (48 hours by default). Marked once."""
        now = utc(now)
        reason, by = self._staff_text("reason", reason, by, "mark complex", max_len=500, min_len=2)
        if self.marked_complex is not None:
            raise ActionRefused(f"{self.request_no} was already marked complex at "
                                f"{self.marked_complex.at.isoformat()}", current_state=self.status,
                                field="state", code="already_complex")
        self.marked_complex = StaffNote(reason, by, now)
        return self._record(ev.RequestMarkedComplex(
            request_no=self.request_no, property_id=self.property_id, category=self.classification.category,
            reason=reason, marked_by=by, owner_agent=self.owner_agent, marked_at=now))

    def give_plan(self, *, plan: str, by: str, now: datetime) -> ev.PlanGiven:
        """The solution plan (解决方案) of a complex request: stops the plan clock. Refused (409) for a request not
        marked complex, or whose plan was already given."""
        now = utc(now)
        plan, by = self._staff_text("plan", plan, by, "give a plan for", max_len=MAX_DESCRIPTION, min_len=2)
        if self.marked_complex is None:
            raise ActionRefused(f"{self.request_no} is not marked complex: only a complex problem gets a plan; "
                                f"mark it complex first", current_state=self.status, field="state",
                                code="not_complex")
        if self.plan is not None:
            raise ActionRefused(f"the plan for {self.request_no} was already given at {self.plan.at.isoformat()}",
                                current_state=self.status, field="state", code="plan_already_given")
        self.plan = StaffNote(plan, by, now)
        return self._record(ev.PlanGiven(
            request_no=self.request_no, property_id=self.property_id, plan=plan, given_by=by,
            owner_agent=self.owner_agent, marked_at=self.marked_complex.at, given_at=now))

    def give_first_response(self, *, response: str, by: str, now: datetime) -> ev.FirstResponseGiven:
        """The resident's first answer from staff (每次求助响应时间不超过30分钟): stops the first_response clock. Given
        once (a work order's assignment also stops that clock, on dispatch's side)."""
        now = utc(now)
        response, by = self._staff_text("response", response, by, "give a first response to",
                                        max_len=MAX_DESCRIPTION)
        if self.first_response is not None:
            raise ActionRefused(f"the first response to {self.request_no} was already given at "
                                f"{self.first_response.at.isoformat()}", current_state=self.status,
                                field="state", code="already_responded")
        self.first_response = StaffNote(response, by, now)
        return self._record(ev.FirstResponseGiven(
            request_no=self.request_no, property_id=self.property_id, category=self.classification.category,
            response=response, responded_by=by, owner_agent=self.owner_agent, responded_at=now))

    def reply_to_complaint(self, *, reply: str, by: str, now: datetime) -> ev.ComplaintReplied:
        """The reply to a complaint (向业主、住户答复时间最长不应超过一周): stops the complaint_reply clock. Only a
        request classed complaint gets one (409 otherwise: reclassify it first), once."""
        now = utc(now)
        reply, by = self._staff_text("reply", reply, by, "reply to", max_len=MAX_DESCRIPTION, min_len=2)
        category = self.classification.category
        if category != "complaint":
            raise ActionRefused(f"only a complaint gets a complaint reply: {self.request_no} is classed {category} "
                                f"(reclassify it as a complaint first if it is one)", current_state=self.status,
                                field="category", code="not_complaint")
        if self.complaint_reply is not None:
            raise ActionRefused(f"the complaint {self.request_no} was already replied to at "
                                f"{self.complaint_reply.at.isoformat()}", current_state=self.status,
                                field="state", code="already_replied")
        self.complaint_reply = StaffNote(reply, by, now)
        return self._record(ev.ComplaintReplied(
            request_no=self.request_no, property_id=self.property_id, category=category,
            complaint_valid=self.classification.complaint_valid, reply=reply, replied_by=by,
            owner_agent=self.owner_agent, replied_at=now))

    def link_duplicate(self, *, duplicate_of: str, reason: str, now: datetime) -> ev.DuplicateLinked:
        """Show the agent a probable duplicate: linked, never merged."""
        now = utc(now)
        if reason not in DUPLICATE_REASONS:
            raise DomainError(f"reason must be one of {', '.join(DUPLICATE_REASONS)}", field="reason",
                              code="invalid_reason")
        other = parse_request_no(duplicate_of)
        if other.property_id != self.property_id or duplicate_of == self.request_no:
            raise DomainError("a duplicate links to another request of the same property", field="duplicate_of",
                              code="invalid_duplicate")
        if self.duplicate_of is not None and self.duplicate_of != duplicate_of:
            raise DomainError(f"already linked to {self.duplicate_of}", field="duplicate_of",
                              code="already_linked")
        self.duplicate_of, self.duplicate_reason = duplicate_of, reason
        return self._record(ev.DuplicateLinked(
            request_no=self.request_no, property_id=self.property_id, duplicate_of=duplicate_of, reason=reason,
            owner_agent=self.owner_agent, linked_at=now))

    def join_incident(self, incident_id: uuid.UUID) -> None:
        """Membership is published by the incident's IncidentClustered (which lists its children)."""
        if self.incident_id is not None and self.incident_id != incident_id:
            raise DomainError("already part of another incident", field="incident_id", code="already_clustered")
        self.incident_id = incident_id

    def cancel(self, *, reason: str, by: str, now: datetime) -> ev.RequestCancelled:
        now = utc(now)
        by = _require_agent("by", by)
        reason = _require_reason("reason", reason)
        self._transition(CANCELLED)
        self.cancel_reason = reason
        self.closed_at, self.closed_by = now, by
        return self._record(ev.RequestCancelled(
            request_no=self.request_no, property_id=self.property_id, reason=reason, cancelled_by=by,
            owner_agent=self.owner_agent, cancelled_at=now))

    def close(self, *, by: str, now: datetime, reason: str = "resolved") -> ev.RequestClosed:
        now = utc(now)
        by = _require_agent("by", by)
        reason = _require_reason("reason", reason, max_len=200)
        self._transition(CLOSED)
        self.closed_at, self.closed_by, self.closed_reason = now, by, reason
        return self._closed_event()

    # -- internals --

    def _closed_event(self) -> ev.RequestClosed:
        assert self.closed_at is not None and self.closed_by is not None and self.closed_reason is not None
        return self._record(ev.RequestClosed(
            request_no=self.request_no, property_id=self.property_id, category=self.classification.category,
            closed_reason=self.closed_reason, closed_by=self.closed_by, owner_agent=self.owner_agent,
            closed_at=self.closed_at))

    def _staff_text(self, name: str, text: Any, by: Any, action: str, *, max_len: int,
                    min_len: int = 1) -> tuple[str, str]:
        """A staff action's text and author, both checked (every bad field named at once), on an open request;
        the text with the resident's phone numbers and name masked, as it is stored and published."""
        errors: dict[str, str] = {}
        checked = _check_text(errors, name, text, max_len=max_len, required=True, min_len=min_len) or ""
        author = _check_agent(errors, "by", by) or ""
        if errors:
            raise InvalidRequest(errors)
        self._require_open(action)
        return without_contact(checked, self.reporter), author

    def _require_open(self, action: str) -> None:
        if not self.is_open:
            raise InvalidTransition(f"cannot {action} request {self.request_no}: it is {self.status}", self.status)

    def _transition(self, new: str) -> None:
        if not allowed_transition(self.status, new):
            raise InvalidTransition(f"request {self.request_no} cannot go from {self.status} to {new}", self.status)
        self.status = new

    def _record(self, event: Any) -> Any:
        self.events.append(event)
        return event
