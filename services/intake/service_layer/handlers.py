"""Intake's use cases: each opens the unit of work, runs the domain, writes state and events together."""
from __future__ import annotations

from typing import Any

from services.common.db import UnitOfWork
from services.common.domain import DomainError, NotFound
from services.intake.adapters import repository as repo
from services.intake.domain.classification import Classifier, override_classification
from services.intake.domain.commands import RegisterRequest
from services.intake.domain.model import Reporter, Request, mask_name, mask_phone
from services.intake.domain.numbering import format_request_no, local_date

DUTY_DESK = "duty-desk"


def register(uow: UnitOfWork, cmd: RegisterRequest, classifier: Classifier) -> dict[str, Any]:
    """Register a request exactly once per (source, external_id); returns its number and classification."""
    with uow:
        if cmd.external_id:
            existing = repo.find_by_external_id(uow, cmd.source, cmd.external_id)
            if existing:
                return {"request_no": existing, "created": False}
        if not repo.property_exists(uow, cmd.property_id):
            raise DomainError(f"unknown property {cmd.property_id}", field="property_id", code="unknown_property")
        now = uow.now()
        auto = classifier.classify(cmd.description)
        classification = auto
        if cmd.category:
            classification = override_classification(auto, category=cmd.category, subcategory=cmd.subcategory,
                                                      priority=cmd.priority)
        reporter = Reporter.create(cmd.reporter_kind, cmd.reporter_name, cmd.reporter_phone)
        seq = repo.next_seq(uow, cmd.property_id, local_date(now))
        request = Request.register(
            request_no=format_request_no(cmd.property_id, local_date(now), seq), property_id=cmd.property_id,
            channel=cmd.channel, description=cmd.description, reporter=reporter, classification=classification,
            registered_by=cmd.agent_id or DUTY_DESK, now=now, building=cmd.building, unit=cmd.unit, area=cmd.area,
            source=cmd.source, external_id=cmd.external_id, channel_details=cmd.details,
            paid_service=cmd.paid_service)
        c = request.classification
        inserted = repo.insert_request(uow, {
            "request_no": request.request_no, "property_id": request.property_id, "building": request.building,
            "unit": request.unit, "area": request.area, "channel": request.channel, "source": request.source,
            "external_id": request.external_id, "category": c.category, "subcategory": c.subcategory,
            "priority": c.priority, "emergency": c.emergency, "confidence": c.confidence,
            "auto_classification": auto.to_dict(),
            "override_classification": classification.to_dict() if classification is not auto else None,
            "complaint_valid": c.complaint_valid, "status": request.status, "owner_agent": request.owner_agent,
            "reporter_kind": reporter.kind, "description": request.description,
            "details": request.channel_details, "paid_service": request.paid_service, "vip": cmd.vip,
            "compensation_demanded": cmd.compensation_demanded, "duplicate_of": None, "incident_id": None,
            "registered_at": now, "reported_at": cmd.reported_at,
        })
        if not inserted:  # the same delivery won a race with this one: answer with its number
            uow.conn.rollback()
            existing = repo.find_by_external_id(uow, cmd.source, cmd.external_id or "")
            return {"request_no": existing, "created": False}
        repo.insert_contact(uow, request.request_no, reporter.name, reporter.phone)
        uow.publish(request.events)
        uow.commit()
        return {"request_no": request.request_no, "created": True, "status": request.status,
                "owner_agent": request.owner_agent, "classification": c.to_dict(),
                "acknowledgement_required": request.acknowledgement_required}


def present(row: dict[str, Any], pii: bool) -> dict[str, Any]:
    """A request as the API shows it: contact details masked unless the caller holds the `pii` scope."""
    out = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
    out["reporter"] = {
        "kind": out.pop("reporter_kind"),
        "name": row["reporter_name"] if pii else mask_name(row["reporter_name"]),
        "phone": row["reporter_phone"] if pii else mask_phone(row["reporter_phone"]),
    }
    out.pop("reporter_name", None)
    out.pop("reporter_phone", None)
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


def close_on_work_done(uow: UnitOfWork, envelope: dict[str, Any]) -> str:
    """A closed work order closes the request it served: the first-contact owner's responsibility ends."""
    with uow:
        if not uow.claim(str(envelope["event_id"]), "intake.events"):
            return "duplicate"
        request_no = envelope["data"]["request_no"]
        repo.set_status(uow, request_no, "closed", closed=True)
        uow.commit()
    return "ok"
