"""Intake's use cases: each opens the unit of work, runs the domain, writes state and events together."""
from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from prometheus_client import Counter

from services.common.db import UnitOfWork, batch_state
from services.common.domain import DomainError, Event, InvalidTransition, NotFound
from services.common.nameko_ext import NotReady
from services.intake.adapters import repository as repo
from services.intake.domain.classification import (
    CATEGORIES,
    PRIORITIES,
    Classification,
    Classifier,
    override_classification,
)
from services.intake.domain.commands import RegisterRequest
from services.intake.domain.duplicates import (
    Candidate,
    ClusterRules,
    DuplicateRules,
    Incident,
    find_cluster,
    find_probable_duplicate,
)
from services.intake.domain.letters import Letter
from services.intake.domain.model import (
    CHANNELS,
    InvalidRequest,
    Reporter,
    Request,
    mask_name,
    mask_phone,
)
from services.intake.domain.numbering import format_request_no, local_date

DUTY_DESK = "duty-desk"
LETTERS_SOURCE = "letters"
# <building>[-<entrance>]-<floor><flat>: 3-1502, 1-0101, A-2-301.
UNIT_FORMAT = re.compile(r"^[A-Z0-9]{1,4}(-\d{1,2})?-\d{3,5}$")

REGISTERED = Counter("intake_requests_registered", "Requests registered (after commit)",
                     ["channel", "class", "priority", "property"])


def prime_metrics(properties: list[str]) -> None:
    """Every known label child exists from the start, so a quiet series reads 0, not absent."""
    for prop in properties:
        for channel in CHANNELS:
            for category in CATEGORIES:
                for priority in PRIORITIES:
                    REGISTERED.labels(channel, category, priority, prop)


@dataclass(frozen=True)
class Rules:
    duplicates: DuplicateRules = field(default_factory=DuplicateRules)
    clusters: ClusterRules = field(default_factory=ClusterRules)
    # How many unclustered reports one registration reads at most when deciding to form an incident.
    cluster_scan_limit: int = 50


# --- registration ---------------------------------------------------------------------------------------------------

def register(uow: UnitOfWork, cmd: RegisterRequest, classifier: Classifier, rules: Rules = Rules(),
             coming: Callable[[], Iterable[RegisterRequest]] | None = None) -> dict[str, Any]:
    """Register a request exactly once per (source, external_id); returns its number, classification, owner and
    any probable duplicate or incident it was linked to. `coming`, in a consumer's batch: this message's command
    and those of the batch's messages after it (their classifications and reads are then made for all at once)."""
    with uow:
        result, request, events = _register(uow, cmd, classifier, rules, coming=coming)
        if request is None:
            return result
        uow.publish(events)
        uow.commit()
    _count(request)
    return result


def _count(request: Request) -> None:
    c = request.classification
    REGISTERED.labels(request.channel, c.category, c.priority, request.property_id).inc()


def _register(uow: UnitOfWork, cmd: RegisterRequest, classifier: Classifier, rules: Rules,
              letter_id: uuid.UUID | None = None, coming: Callable[[], Iterable[RegisterRequest]] | None = None
              ) -> tuple[dict[str, Any], Request | None, list[Event]]:
    """Registration inside an open unit of work (shared by submissions and letters); the caller commits."""
    if cmd.external_id:
        existing = repo.find_by_external_id(uow, cmd.source, cmd.external_id)
        if existing:
            return {"request_no": existing, "created": False}, None, []
    building = _check_place(uow, cmd)
    day = local_date(uow.now())
    auto, classification = _classify(uow, cmd, classifier)
    reporter = Reporter.create(cmd.reporter_kind, cmd.reporter_name, cmd.reporter_phone)
    seq, now = repo.next_seq(uow, cmd.property_id, day)
    request = Request.register(
        request_no=format_request_no(cmd.property_id, day, seq), property_id=cmd.property_id,
        channel=cmd.channel, description=cmd.description, reporter=reporter, classification=classification,
        registered_by=cmd.agent_id or DUTY_DESK, now=now, building=building, unit=cmd.unit, area=cmd.area,
        source=cmd.source, external_id=cmd.external_id, channel_details=cmd.details, paid_service=cmd.paid_service,
        vip=cmd.vip, compensation_demanded=cmd.compensation_demanded)
    if classification is not auto:  # the registering agent's verdict; the classifier's is kept alongside
        request.auto_classification, request.agent_classification = auto, classification
    if coming is not None and repo.wants_read_ahead(uow):
        _read_ahead(uow, coming(), classifier, rules, day)
    _link_duplicate(uow, request, rules)
    if not repo.insert_request(uow, request, vip=cmd.vip, compensation_demanded=cmd.compensation_demanded,
                               reported_at=cmd.reported_at, letter_id=letter_id):
        # The same delivery won a race with this one: answer with its number.
        uow.rollback()
        existing = repo.find_by_external_id(uow, cmd.source, cmd.external_id or "")
        return {"request_no": existing, "created": False}, None, []
    incident = _cluster(uow, request, rules, now)
    c = request.classification
    result = {"request_no": request.request_no, "created": True, "status": request.status,
              "owner_agent": request.owner_agent, "classification": c.to_dict(),
              "auto_classification": request.auto_classification.to_dict(),
              "acknowledgement_required": request.acknowledgement_required,
              "duplicate_of": request.duplicate_of, "duplicate_reason": request.duplicate_reason,
              "incident_id": str(incident.incident_id) if incident else None,
              "incident_children_count": incident.children_count if incident else None}
    return result, request, [*request.events, *(incident.events if incident else [])]


def _check_place(uow: UnitOfWork, cmd: RegisterRequest) -> str | None:
    """The property must exist; a unit must have the company's format and, where the property keeps a unit list,
    be on it. Returns the building (taken from the unit list when the caller did not give one)."""
    place = repo.lookup_place(uow, cmd.property_id, cmd.unit)
    if place is None:
        raise DomainError(f"unknown property {cmd.property_id}", field="property_id", code="unknown_property")
    if cmd.unit is None:
        return cmd.building
    if not UNIT_FORMAT.match(cmd.unit):
        raise DomainError("a unit is <building>-<floor><flat>, e.g. 3-1502", field="unit", code="invalid_unit")
    if not place["has_units"]:
        return cmd.building
    if place["unit_building"] is None:
        raise DomainError(f"no unit {cmd.unit} in property {cmd.property_id}", field="unit", code="unknown_unit")
    if cmd.building is not None and cmd.building != place["unit_building"]:
        raise DomainError(f"unit {cmd.unit} is in building {place['unit_building']}", field="building",
                          code="unit_not_in_building")
    return str(place["unit_building"])


def _candidate(request: Request) -> Candidate:
    c = request.classification
    return Candidate(request_no=request.request_no, property_id=request.property_id,
                     registered_at=request.registered_at, category=c.category, subcategory=c.subcategory,
                     building=request.building, unit=request.unit, area=request.area, phone=request.contact_phone)


def _row_candidate(row: dict[str, Any]) -> Candidate:
    incident = row.get("incident_id")
    return Candidate(request_no=row["request_no"], property_id=row["property_id"], registered_at=row["registered_at"],
                     category=row["category"], subcategory=row["subcategory"], building=row["building"],
                     unit=row["unit"], area=row["area"], phone=row.get("phone"), status=row["status"],
                     duplicate_of=row["duplicate_of"], incident_id=uuid.UUID(incident) if incident else None)


def _classify(uow: UnitOfWork, cmd: RegisterRequest, classifier: Classifier) -> tuple[Classification, Classification]:
    """The classifier's verdict and the one registered (the agent's, when the command states a class). In a
    consumer's batch each message is classified once, by whichever of its preview and its registration comes
    first (keyed by the message's idempotency key and text)."""
    made: dict[tuple[str, str | None, str], Classification] | None = (
        batch_state(uow, "intake-classified", lambda _: {}) if cmd.external_id else None)
    key = (cmd.source, cmd.external_id, cmd.description)
    auto = made.get(key) if made is not None else None
    if auto is None:
        auto = classifier.classify(cmd.description)
        if made is not None:
            made[key] = auto
    if not cmd.category:
        return auto, auto
    return auto, override_classification(auto, category=cmd.category, subcategory=cmd.subcategory,
                                         priority=cmd.priority)


def _preview(uow: UnitOfWork, cmd: RegisterRequest, classifier: Classifier, day: date) -> Candidate | None:
    """What `cmd` will register as, as far as the duplicate and cluster reads go, or None when it will be refused
    or its number is not taken yet. A guess: a read it got wrong is made again by the registration itself."""
    at = repo.registration_time(uow, cmd.property_id, day)
    if at is None:
        return None
    try:
        building = _check_place(uow, cmd)
        c = _classify(uow, cmd, classifier)[1]
        phone = Reporter.create(cmd.reporter_kind, cmd.reporter_name, cmd.reporter_phone).phone
    except DomainError:
        return None
    return Candidate(request_no="", property_id=cmd.property_id, registered_at=at, category=c.category,
                     subcategory=c.subcategory, building=building, unit=cmd.unit, area=cmd.area,
                     phone=phone or cmd.details.get("caller_number"))


def _read_ahead(uow: UnitOfWork, commands: Iterable[RegisterRequest], classifier: Classifier, rules: Rules,
                day: date) -> None:
    """A batch's duplicate and cluster reads, one statement each instead of one per message."""
    duplicates, clusters = [], []
    for cmd in commands:
        new = _preview(uow, cmd, classifier, day)
        if new is None:
            continue
        if (wanted := _duplicate_read(new, rules)) is not None:
            duplicates.append(wanted)
        if (wanted := _cluster_read(new, rules)) is not None:
            clusters.append(wanted)
    repo.read_ahead(uow, duplicates, clusters)


def _duplicate_read(new: Candidate, rules: Rules) -> dict[str, Any] | None:
    """The parameters of `new`'s probable-duplicate read, if it has something to match on."""
    if new.unit is None and new.phone is None:
        return None
    return {"property_id": new.property_id, "unit": new.unit, "category": new.category, "phone": new.phone,
            "since": new.registered_at - rules.duplicates.window, "until": new.registered_at}


def _cluster_read(new: Candidate, rules: Rules) -> dict[str, Any] | None:
    """The parameters of `new`'s cluster read, if it can be part of a cluster."""
    wide = new.subcategory in rules.clusters.property_wide_subcategories
    if new.subcategory is None or (new.building is None and new.area is None and not wide):
        return None
    return {"property_id": new.property_id, "category": new.category, "subcategory": new.subcategory,
            "building": new.building, "area": new.area, "anywhere": wide,
            "since": new.registered_at - rules.clusters.window, "until": new.registered_at,
            "limit": rules.cluster_scan_limit}


def _link_duplicate(uow: UnitOfWork, request: Request, rules: Rules) -> None:
    new = _candidate(request)
    wanted = _duplicate_read(new, rules)
    if wanted is None:
        return
    rows = repo.probable_duplicates(uow, **wanted)
    match = find_probable_duplicate(new, [_row_candidate(r) for r in rows], rules.duplicates)
    if match:
        request.link_duplicate(duplicate_of=match.duplicate_of, reason=match.reason, now=request.registered_at)


def _cluster(uow: UnitOfWork, request: Request, rules: Rules, now: datetime) -> Incident | None:
    new = _candidate(request)
    wanted = _cluster_read(new, rules)
    if wanted is None:
        return None

    def decide() -> Any:
        rows = repo.cluster_candidates(uow, **wanted)
        return find_cluster(new, [_row_candidate(r) for r in rows], rules.clusters)

    if decide() is None:  # the common case: one indexed read (in a batch, read ahead for all), no lock
        return None
    # Two registrations completing the same cluster at once would form two incidents: decide again under a lock.
    repo.lock_cluster(uow, f"intake-cluster:{new.property_id}:{new.category}:{new.subcategory}")
    decision = decide()
    if decision is None:
        return None
    if decision.incident_id is not None:
        incident = repo.incident_for_update(uow, decision.incident_id)
        if incident is None:
            return None
        if incident.add(request.request_no, now) is None:
            return None
    else:
        incident = Incident.form(decision=decision, new=new, now=now)
    repo.save_incident(uow, incident, now)
    repo.set_incident(uow, incident.incident_id, list(incident.events[-1].new_request_nos))
    request.join_incident(incident.incident_id)
    return incident


# --- reading --------------------------------------------------------------------------------------------------------

def present(row: dict[str, Any], pii: bool) -> dict[str, Any]:
    """A request as the API shows it: contact details masked unless the caller holds the `pii` scope."""
    out = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
    for k in ("request_id", "letter_id"):
        out[k] = str(row[k]) if row.get(k) else None
    out["reporter"] = {
        "kind": out.pop("reporter_kind"),
        "name": row["reporter_name"] if pii else mask_name(row["reporter_name"]),
        "phone": row["reporter_phone"] if pii else mask_phone(row["reporter_phone"]),
    }
    details = dict(row.get("details") or {})
    if row.get("caller_number"):
        details["caller_number"] = row["caller_number"] if pii else mask_phone(row["caller_number"])
    out["channel_details"] = details
    out["agent_classification"] = out.pop("override_classification", None)
    for k in ("reporter_name", "reporter_phone", "caller_number", "details"):
        out.pop(k, None)
    return out


def get_request(uow: UnitOfWork, request_no: str, pii: bool) -> dict[str, Any]:
    with uow:
        row = repo.get(uow, request_no)
    if row is None:
        raise NotFound(f"no request {request_no}", field="request_no")
    return present(row, pii)


def list_requests(uow: UnitOfWork, query: dict[str, Any], pii: bool) -> dict[str, Any]:
    with uow:
        rows, more = repo.list_requests(uow, query)
    return {"items": [present(r, pii) for r in rows], "page": query.get("page", 1),
            "page_size": query.get("page_size", 50), "has_more": more}


def state(uow: UnitOfWork, request_no: str) -> dict[str, Any] | None:
    """Intake's summary of a request for the gateway's assembled timeline."""
    with uow:
        row = repo.get(uow, request_no)
    if row is None:
        return None
    return {"status": row["status"], "owner_agent": row["owner_agent"], "duplicate_of": row["duplicate_of"],
            "incident_id": row["incident_id"]}


# --- actions on a request -------------------------------------------------------------------------------------------

def act(uow: UnitOfWork, request_no: str, action: Callable[[Request, datetime], Any]) -> dict[str, Any]:
    """Load the aggregate (locked), run one domain command, save it and its events in one transaction."""
    with uow:
        request = repo.load_for_update(uow, request_no)
        if request is None:
            raise NotFound(f"no request {request_no}", field="request_no")
        action(request, uow.now())
        repo.save(uow, request)
        uow.publish(request.events)
        uow.commit()
    return summary(request)


def summary(request: Request) -> dict[str, Any]:
    """What every action answers: the request's state and its first-contact owner (首问负责制)."""
    ack = request.acknowledgement
    pending = request.pending_supervisor_call
    return {"request_no": request.request_no, "status": request.status, "owner_agent": request.owner_agent,
            "classification": request.classification.to_dict(),
            "auto_classification": request.auto_classification.to_dict(),
            "acknowledgement": None if ack is None else {"how": ack.how, "promised_at": ack.promised_at.isoformat(),
                                                         "by": ack.by, "at": ack.at.isoformat()},
            "referred": request.referred_at is not None, "answer": request.answer,
            "closed_reason": request.closed_reason, "cancel_reason": request.cancel_reason,
            "supervisor_pending": pending.supervisor if pending else None,
            "complex": request.marked_complex is not None, "plan_given": request.plan is not None,
            "first_response_given": request.first_response is not None,
            "complaint_replied": request.complaint_reply is not None,
            "events": [e.event_type for e in request.events]}


def close_on_work_done(uow: UnitOfWork, envelope: dict[str, Any]) -> str:
    """A closed work order closes the request it served: the first-contact owner's responsibility ends."""
    data = envelope["data"]
    with uow:
        if not uow.claim(str(envelope["event_id"]), "intake.events"):
            return "duplicate"
        request = repo.load_for_update(uow, data["request_no"])
        if request is None:
            raise NotReady(f"request {data['request_no']} not registered here yet")
        if request.is_open:
            try:
                request.close(by=data["by"], reason="work_order_closed", now=data.get("closed_at") or uow.now())
            except InvalidRequest:  # dispatch's actor id is not an agent id: the close is still the system's
                request.events.clear()
                request.close(by="dispatch", reason="work_order_closed", now=uow.now())
            repo.save(uow, request)
            uow.publish(request.events)
        uow.commit()
    return "ok"


# --- letters (来函) ---------------------------------------------------------------------------------------------------

def log_letter(uow: UnitOfWork, body: dict[str, Any], classifier: Classifier, rules: Rules = Rules()) -> dict[str, Any]:
    """Log a letter and route it by kind: a report becomes a request now, a complaint waits for the assistant,
    praise is recorded against whom it praises, work letters go to the admin department."""
    sender = body.get("sender") or {}
    registered: Request | None = None
    with uow:
        if body.get("letter_id") and (row := repo.get_letter(uow, str(body["letter_id"]))) is not None:
            return {**present_letter(row, pii=False), "created": False}
        if not repo.property_exists(uow, body["property_id"]):
            raise DomainError(f"unknown property {body['property_id']}", field="property_id",
                              code="unknown_property")
        now = uow.now()
        letter = Letter.log(
            property_id=body["property_id"], kind=body["kind"], received_date=body["received_date"],
            subject=body["subject"], logged_by=body["logged_by"], now=now, sender_name=sender.get("name"),
            sender_phone=sender.get("phone"), praised_staff_id=body.get("praised_staff_id"),
            praised_department=body.get("praised_department"),
            letter_id=uuid.UUID(str(body["letter_id"])) if body.get("letter_id") else None)
        events: list[Event] = []
        if letter.kind == "report":
            registered, events = _register_letter(uow, letter, body, classifier, rules, agent=letter.logged_by)
        elif letter.kind == "praise":
            letter.record_praise(by=letter.logged_by, now=now)
        place = {k: body.get(k) for k in ("building", "unit", "area", "description", "reporter_kind")}
        repo.insert_letter(uow, letter, place)
        uow.publish([*letter.events, *events])
        uow.commit()
    if registered is not None:
        _count(registered)
    return {**_letter_answer(letter), "created": True}


def decide_letter(uow: UnitOfWork, letter_id: str, body: dict[str, Any], classifier: Classifier,
                  rules: Rules = Rules()) -> dict[str, Any]:
    """The customer-service assistant tracks a complaint letter (it becomes a complaint request) or not."""
    registered: Request | None = None
    with uow:
        found = repo.letter_for_update(uow, letter_id)
        if found is None:
            raise NotFound(f"no letter {letter_id}", field="letter_id")
        letter, row = found
        previous = letter.status
        now = uow.now()
        b: Any = body
        letter.decide_complaint(track=b.get("track"), reason=b.get("reason"), by=b.get("by"), now=now)
        events: list[Event] = []
        if letter.status == "to_register":
            place = {k: body.get(k) or row.get(k) for k in ("building", "unit", "area", "description", "reporter_kind")}
            place["subcategory"] = body.get("subcategory")
            registered, events = _register_letter(uow, letter, {**place, "sender": {
                "name": row["sender_name"], "phone": row["sender_phone"]}}, classifier, rules, agent=body["by"],
                category="complaint")
        # Registering commits the number on this connection (releasing the letter's row lock): the update is
        # conditional on the status read, so two assistants deciding at once cannot both win.
        if not repo.update_letter(uow, letter, previous, decided_at=now):
            raise InvalidTransition(f"letter {letter.letter_id} was decided meanwhile", previous)
        uow.publish([*letter.events, *events])
        uow.commit()
    if registered is not None:
        _count(registered)
    return _letter_answer(letter)


def _register_letter(uow: UnitOfWork, letter: Letter, body: dict[str, Any], classifier: Classifier, rules: Rules,
                     agent: str, category: str | None = None) -> tuple[Request, list[Event]]:
    sender = body.get("sender") or {}
    cmd = RegisterRequest(
        source=LETTERS_SOURCE, external_id=f"letter:{letter.letter_id}", channel="letter",
        property_id=letter.property_id, building=body.get("building"), unit=body.get("unit"), area=body.get("area"),
        reporter_kind=body.get("reporter_kind") or "resident", reporter_name=sender.get("name"),
        reporter_phone=sender.get("phone"), description=body.get("description") or letter.subject, agent_id=agent,
        category=category, subcategory=body.get("subcategory") if category else None,
        details=letter.request_channel_details())
    result, request, events = _register(uow, cmd, classifier, rules, letter_id=letter.letter_id)
    if request is None:
        raise DomainError(f"letter {letter.letter_id} already became request {result['request_no']}",
                          field="letter_id", code="already_registered")
    letter.mark_registered(request.request_no)
    # The letter's own event names the request it became, so it shows on that request's timeline.
    logged: Any = letter.events[-1]
    letter.events[-1] = dataclasses.replace(logged, request_no=request.request_no)
    return request, events


def _letter_answer(letter: Letter) -> dict[str, Any]:
    return {"letter_id": str(letter.letter_id), "property_id": letter.property_id, "kind": letter.kind,
            "routed_to": letter.routed_to, "status": letter.status, "request_no": letter.request_no,
            "praised_staff_id": letter.praised_staff_id, "praised_department": letter.praised_department,
            "events": [e.event_type for e in letter.events]}


def present_letter(row: dict[str, Any], pii: bool) -> dict[str, Any]:
    out = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
    out["letter_id"] = str(row["letter_id"])
    out["sender"] = {"name": row["sender_name"] if pii else mask_name(row["sender_name"]),
                     "phone": row["sender_phone"] if pii else mask_phone(row["sender_phone"])}
    out.pop("sender_name", None)
    out.pop("sender_phone", None)
    return out


def list_letters(uow: UnitOfWork, query: dict[str, Any], pii: bool) -> dict[str, Any]:
    with uow:
        rows, more = repo.list_letters(uow, query)
    return {"items": [present_letter(r, pii) for r in rows], "page": query.get("page", 1),
            "page_size": query.get("page_size", 50), "has_more": more}


def rules_from_config(config: dict[str, Any]) -> Rules:
    wide = str(config.get("CLUSTER_PROPERTY_WIDE_SUBCATEGORIES", "typhoon") or "")
    return Rules(
        duplicates=DuplicateRules(window=timedelta(hours=float(config.get("DUPLICATE_WINDOW_HOURS", 24)))),
        clusters=ClusterRules(window=timedelta(minutes=float(config.get("CLUSTER_WINDOW_MINUTES", 120))),
                              min_reports=int(config.get("CLUSTER_MIN_REPORTS", 3)),
                              property_wide_subcategories=tuple(s.strip() for s in wide.split(",") if s.strip())),
        cluster_scan_limit=int(config.get("CLUSTER_SCAN_LIMIT", 50)))
