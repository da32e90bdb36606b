"""Which incoming facts start, stop, pause, resume, retarget or cancel which clock: one table.

Each row says, for an incoming event type: the verb, the clock (or "*" for every open clock of the subject), the
data fields holding the instant (first present wins, else the envelope's occurred_at), the field naming the subject
the clock belongs to, and optionally a field that must be truthy for the row to apply.

Whether a started clock really applies is the policy's business (e.g. `acknowledge` only for online requests,
`complaint_reply` only for complaints): the table proposes, `Policy.applies` decides.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.common.domain import DomainError, utc


class Verb(StrEnum):
    START = "start"
    STOP = "stop"  # the clock is met
    PAUSE = "pause"
    RESUME = "resume"
    RETARGET = "retarget"
    CANCEL = "cancel"


@dataclass(frozen=True)
class Row:
    verb: Verb
    clock: str  # a clock name, or "*" for every open clock of the subject
    at: tuple[str, ...]
    subject: str = "request_no"
    only_if: str | None = None


def _r(verb: Verb, clock: str, *at: str, subject: str = "request_no", only_if: str | None = None) -> Row:
    return Row(verb, clock, tuple(at), subject, only_if)


S, T, P, R, RT, C = Verb.START, Verb.STOP, Verb.PAUSE, Verb.RESUME, Verb.RETARGET, Verb.CANCEL

# Reconciled with the producers' contracts (services/common/contract/intake.py, dispatch.py, feedback.py).
# Every row's event type is published. Intake's staff actions on a request (POST /requests/{no}/supervisor,
# /supervisor-answer, /complex, /plan, /first-response, /complaint-reply) publish SupervisorCalledIn /
# SupervisorAnswered, RequestMarkedComplex / PlanGiven, FirstResponseGiven and ComplaintReplied (a complaint's reply
# clock also stops when its investigation work order is resolved or a reply letter is sent, whichever is first).
# The on-site clock runs from the assignment; an appointment pauses the work order (reason appointment_booked),
# which pauses the clock, so the appointment time is covered by the pause.
_REQUEST_CLOCKS = ("acknowledge", "first_response", "supervisor_answer", "on_site", "resolution", "plan",
                   "complaint_reply")

CLOCK_TABLE: dict[str, tuple[Row, ...]] = {
    "RequestRegistered": (
        _r(S, "acknowledge", "registered_at"),
        _r(S, "first_response", "registered_at"),
        _r(S, "resolution", "registered_at"),
        _r(S, "complaint_reply", "registered_at"),
    ),
    "RequestAcknowledged": (_r(T, "acknowledge", "acknowledged_at"),),
    # A consultation answered on the spot: the resident was acknowledged and answered.
    "RequestAnsweredAtDesk": (_r(T, "acknowledge", "answered_at"), _r(T, "first_response", "answered_at")),
    "FirstResponseGiven": (_r(T, "first_response", "responded_at"),),
    "SupervisorCalledIn": (_r(S, "supervisor_answer", "called_at"),),
    "SupervisorAnswered": (_r(T, "supervisor_answer", "answered_at"),),
    # An assignment is the first staff response and starts the on-site clock.
    "WorkOrderAssigned": (
        _r(T, "first_response", "assigned_at"),
        _r(S, "on_site", "assigned_at"),
    ),
    "TechnicianArrived": (_r(T, "on_site", "arrived_at"),),
    "WorkOrderPaused": (_r(P, "on_site", "paused_at"), _r(P, "resolution", "paused_at")),
    "WorkOrderResumed": (_r(R, "on_site", "resumed_at"), _r(R, "resolution", "resumed_at")),
    # A complaint's work order is the responsible department's investigation: resolving it is the reply
    # given to the resident (so is a formal reply letter sent, whichever comes first).
    "WorkOrderResolved": (
        _r(T, "resolution", "resolved_at"),
        _r(S, "return_visit", "resolved_at"),
        _r(T, "complaint_reply", "resolved_at"),
    ),
    "ReturnVisitDone": (_r(T, "return_visit", "done_at"),),
    "FollowUpRaised": (_r(S, "revisit_fix", "raised_at"),),
    # follow_up_of: optional field dispatch adds to WorkOrderCreated for a work order raised by a return visit.
    "WorkOrderCreated": (_r(T, "revisit_fix", "created_at", only_if="follow_up_of"),),
    "RequestMarkedComplex": (_r(S, "plan", "marked_at"),),
    "PlanGiven": (_r(T, "plan", "given_at"),),
    "ComplaintReplied": (_r(T, "complaint_reply", "replied_at"),),
    "ReplyLetterSent": (_r(S, "letter_confirmation", "sent_at"), _r(T, "complaint_reply", "sent_at")),
    "ReplyLetterConfirmed": (_r(T, "letter_confirmation", "confirmed_at"),),
    "ShiftHandoverPublished": (_r(S, "handover", "published_at", subject="handover_id"),),
    "ShiftHandoverAcknowledged": (_r(T, "handover", "acknowledged_at", subject="handover_id"),),
    "RequestReclassified": (_r(RT, "*", "reclassified_at"),),
    "RequestCancelled": (_r(C, "*", "cancelled_at"),),
    # Closing a request ends its own clocks; the after-care clocks (return visit, revisit fix, letter
    # confirmation) run on after the close.
    "RequestClosed": tuple(_r(C, c, "closed_at") for c in _REQUEST_CLOCKS),
}

# Event types that change the facts the condition rules read, without touching a clock.
FACT_EVENTS = ("IncidentClustered", "ResidentRejected")


@dataclass(frozen=True)
class ClockAction:
    """One thing to do to one clock (or to every open clock of `subject` when clock == "*")."""

    verb: Verb
    clock: str
    subject: str
    at: datetime
    reason: str | None = None


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, str):
        try:
            return utc(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def moves_no_clock(event_type: str, data: Mapping[str, Any]) -> bool:
    """Every row of the type needs a field `data` lacks (e.g. a WorkOrderCreated no return visit raised); an
    event type with no rows is not decided here."""
    rows = CLOCK_TABLE.get(event_type, ())
    return bool(rows) and all(r.only_if is not None and not data.get(r.only_if) for r in rows)


def actions_for(event_type: str, data: Mapping[str, Any], occurred_at: datetime) -> list[ClockAction]:
    """The clock actions an incoming event calls for; [] for an event that touches no clock."""
    out: list[ClockAction] = []
    for row in CLOCK_TABLE.get(event_type, ()):
        if row.only_if is not None and not data.get(row.only_if):
            continue
        subject = data.get(row.subject)
        if subject is not None and not isinstance(subject, str):
            subject = str(subject)  # a handover id arrives as a UUID
        if not isinstance(subject, str) or not subject:
            raise DomainError(f"{event_type} carries no {row.subject}", field=row.subject)
        at = next((i for i in (_instant(data.get(f)) for f in row.at) if i is not None), None) or utc(occurred_at)
        reason = data.get("reason") if isinstance(data.get("reason"), str) else None
        if row.verb is Verb.PAUSE and not reason:
            reason = "paused"
        if row.verb in (Verb.RETARGET, Verb.CANCEL) and not reason:
            reason = "reclassified" if row.verb is Verb.RETARGET else (
                "request closed" if event_type == "RequestClosed" else "request cancelled")
        out.append(ClockAction(row.verb, row.clock, subject, at, reason))
    return out
