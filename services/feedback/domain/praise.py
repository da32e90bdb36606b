"""Praise letters and compliments (表扬信), recorded against the staff member or department praised.

003 篇2 §3.3.3: a praise letter is logged, the original posted in the office and a copy in the praised staff's
department; the record here is what the monthly report counts.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from services.common.domain import DomainError, utc
from services.feedback.domain.events import PraiseRecorded

PRAISE_CHANNELS = ("letter", "phone", "visit", "online", "email", "banner", "return_visit")
TARGET_KINDS = ("staff", "department")


@dataclass(frozen=True)
class Praise:
    praise_id: UUID
    property_id: str
    target_kind: str
    staff_id: str | None
    department: str
    channel: str
    summary: str
    received_at: datetime
    recorded_by: str
    recorded_at: datetime
    request_no: str | None = None
    letter_id: str | None = None  # intake's letters-registry entry, when it came as a letter


def record_praise(*, property_id: str, department: str, channel: str, summary: str, received_at: datetime,
                  recorded_by: str, now: datetime, staff_id: str | None = None, request_no: str | None = None,
                  letter_id: str | None = None, praise_id: UUID | None = None) -> tuple[Praise, PraiseRecorded]:
    """A staff member is always praised within their department, so the department is required either way."""
    now = utc(now)
    received_at = utc(received_at)
    if not property_id:
        raise DomainError("the property is required", field="property_id")
    if not department:
        raise DomainError("the department praised (or the praised staff member's department) is required",
                          field="department")
    if channel not in PRAISE_CHANNELS:
        raise DomainError(f"channel must be one of {', '.join(PRAISE_CHANNELS)}", field="channel")
    if not summary.strip():
        raise DomainError("say what the praise was for", field="summary")
    if received_at > now:
        raise DomainError("a praise cannot be received in the future", field="received_at")
    kind = "staff" if staff_id else "department"
    p = Praise(praise_id or uuid.uuid4(), property_id, kind, staff_id or None, department, channel, summary.strip(),
               received_at, recorded_by, now, request_no, letter_id)
    event = PraiseRecorded(p.praise_id, p.property_id, p.target_kind, p.staff_id, p.department, p.channel, p.summary,
                           p.received_at, p.recorded_by, p.recorded_at, p.request_no, p.letter_id)
    return p, event
