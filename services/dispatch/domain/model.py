"""The WorkOrder aggregate: one request's work in one department, from assignment to closure.

Every state change goes through `check_transition`, the single table of what may follow what, and is written to
`history` (from, to, when, by whom, why). Methods record domain events in `events`; the service layer drains them
into the outbox in the same transaction and bumps `version` for optimistic locking.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Iterable
from uuid import UUID

from services.common.domain import DomainError, Event, InvalidTransition, utc
from services.dispatch.domain import events as ev
from services.dispatch.domain.assignment import Assignment
from services.dispatch.domain.fees import CONSENT_METHODS, Consent, MaterialUse, Quote, is_chargeable
from services.dispatch.domain.routing import Route

STATES = (
    "unassigned", "offered", "assigned", "accepted", "en_route", "on_site", "temporary_measure", "paused",
    "resolved", "resident_rejected", "resident_accepted", "closed", "cancelled",
)
TERMINAL = frozenset({"closed", "cancelled"})
OPEN_STATES = frozenset(STATES) - TERMINAL
# Work not yet done: what a handover passes on and the daily check counts as open.
UNFINISHED = frozenset(OPEN_STATES - {"resolved", "resident_accepted"})
PAUSABLE = frozenset({"accepted", "en_route", "on_site", "temporary_measure", "resident_rejected"})
PAUSE_REASONS = ("waiting_parts", "resident_absent", "no_entry_permission", "appointment_booked")
# Where a reassignment may take the work from: anything before the resolution, once or not yet assigned.
REASSIGNABLE = frozenset({"offered", "assigned", "accepted", "en_route", "on_site", "temporary_measure", "paused",
                          "resident_rejected"})


def check_transition(previous: str, current: str) -> None:
    """The lifecycle, in one place. Raises InvalidTransition naming the current state."""
    match (previous, current):
        case ("unassigned", "assigned" | "offered"):
            return
        case ("offered", "accepted" | "unassigned"):  # grabbed, or the pool let it lapse
            return
        case ("assigned", "accepted" | "unassigned"):  # accepted, or declined / timed out
            return
        case (prev, "assigned") if prev in REASSIGNABLE:  # manual reassignment with a reason
            return
        case ("accepted", "en_route"):
            return
        case ("en_route", "on_site"):
            return
        case ("on_site", "temporary_measure" | "resolved"):
            return
        case ("temporary_measure", "resolved" | "en_route" | "on_site"):  # back later for the permanent fix
            return
        case (prev, "paused") if prev in PAUSABLE:
            return
        case ("paused", resumed) if resumed in PAUSABLE:  # the method checks it is the state paused from
            return
        case ("resolved", "resident_accepted" | "resident_rejected"):
            return
        case ("resident_rejected", "en_route" | "on_site"):  # back to work
            return
        case ("resident_accepted", "closed"):
            return
        case (prev, "cancelled") if prev in OPEN_STATES:
            return
        case _:
            raise InvalidTransition(f"work order is {previous}; it cannot become {current}", current_state=previous)


@dataclass(frozen=True)
class HistoryEntry:
    from_state: str
    to_state: str
    at: datetime
    by: str
    reason: str | None = None


@dataclass(frozen=True)
class Appointment:
    visit_at: datetime
    booked_at: datetime
    booked_by: str
    note: str | None = None


@dataclass(eq=False)
class WorkOrder:
    id: UUID
    request_no: str
    property_id: str
    department: str
    category: str
    subcategory: str | None
    priority: str
    assign_to: str
    skill: str | None
    building: str | None
    unit: str | None
    area: str | None
    paid_service: bool  # charged work: flagged paid by intake and inside a private unit
    created_at: datetime
    due_at: datetime | None = None  # the resolution deadline as escalation set it; drives handover and daily check
    state: str = "unassigned"
    technician_id: str | None = None
    strategy: str | None = None
    assigned_at: datetime | None = None
    accept_by: datetime | None = None
    pool: tuple[str, ...] = ()
    tried: set[str] = field(default_factory=set)  # declined or let it lapse: not offered again
    paused_from: str | None = None
    pause_reason: str | None = None
    paused_at: datetime | None = None
    appointment: Appointment | None = None
    quote: Quote | None = None
    consent: Consent | None = None
    resolution: str | None = None
    temporary_measure: str | None = None
    materials: tuple[MaterialUse, ...] = ()
    fee_cents: int = 0
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    night: bool = False  # assigned during the night shift (escalation's on-site target depends on it)
    rejections: int = 0
    follow_up_of: UUID | None = None
    version: int = 0
    history: list[HistoryEntry] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    # -- creation --------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, *, id: UUID, request_no: str, property_id: str, route: Route, category: str,
               subcategory: str | None, priority: str, building: str | None, unit: str | None, area: str | None,
               paid_service: bool, now: datetime, by: str = "system", due_at: datetime | None = None,
               follow_up_of: UUID | None = None) -> WorkOrder:
        now = utc(now)
        public_area = unit is None
        wo = cls(
            id=id, request_no=request_no, property_id=property_id, department=route.department, category=category,
            subcategory=subcategory, priority=priority, assign_to=route.assign_to, skill=route.skill,
            building=building, unit=unit, area=area, paid_service=is_chargeable(paid_service, public_area),
            created_at=now, due_at=utc(due_at) if due_at else None, follow_up_of=follow_up_of,
        )
        wo.history.append(HistoryEntry("", "unassigned", now, by, f"routed by {route.rule}"))
        wo._record(ev.WorkOrderCreated(
            **wo._ids(), category=category, subcategory=subcategory, priority=priority, assign_to=route.assign_to,
            skill=route.skill, route_rule=route.rule, building=building, unit=unit, area=area,
            public_area=public_area, paid_service=wo.paid_service, created_at=now, by=by, follow_up_of=follow_up_of,
        ))
        return wo

    # -- reading ---------------------------------------------------------------------------------------------

    @property
    def public_area(self) -> bool:
        return self.unit is None

    @property
    def zone(self) -> str | None:
        return self.building or self.area

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def is_unfinished(self) -> bool:
        return self.state in UNFINISHED

    def pull_events(self) -> list[Event]:
        out, self.events = self.events, []
        return out

    # -- assignment ------------------------------------------------------------------------------------------

    def apply(self, assignment: Assignment, *, by: str, now: datetime, accept_by: datetime | None = None) -> None:
        """Carry out what `choose_assignee` answered: assign the person, or offer the work to the grab pool."""
        if assignment.is_offer:
            self.offer(list(assignment.pool), by=by, now=now, accept_by=accept_by, night=assignment.night)
        else:
            assert assignment.technician_id is not None
            self.assign(assignment.technician_id, strategy=assignment.strategy, reason=assignment.reason, by=by,
                        now=now, accept_by=accept_by, night=assignment.night)

    def assign(self, technician_id: str, *, strategy: str, reason: str, by: str, now: datetime,
               accept_by: datetime | None = None, night: bool = False) -> None:
        if self.state != "unassigned":
            # From any later state this is a reassignment, which must give its reason explicitly.
            raise InvalidTransition(f"work order is {self.state}; reassign it with a reason",
                                    current_state=self.state)
        self._set_assignee(technician_id, strategy, reason, by, now, accept_by, night, previous=None)

    def reassign(self, technician_id: str, *, reason: str, by: str, now: datetime,
                 accept_by: datetime | None = None, night: bool = False) -> None:
        if not reason or not reason.strip():
            raise DomainError("a reassignment needs a reason", field="reason", code="reason_required")
        if self.state in REASSIGNABLE and technician_id == self.technician_id:
            raise DomainError(f"work order is already with {technician_id}", field="technician_id",
                              code="same_assignee")
        self._set_assignee(technician_id, "manual", reason.strip(), by, now, accept_by, night,
                           previous=self.technician_id)

    def _set_assignee(self, technician_id: str, strategy: str, reason: str, by: str, now: datetime,
                      accept_by: datetime | None, night: bool, previous: str | None) -> None:
        now = utc(now)
        self._move("assigned", by, now, reason)
        self.technician_id, self.strategy, self.assigned_at, self.night = technician_id, strategy, now, night
        self.accept_by = utc(accept_by) if accept_by else None
        self.pool = ()
        self._clear_pause()
        self._record(ev.WorkOrderAssigned(
            **self._ids(), technician_id=technician_id, strategy=strategy, assigned_at=now, night=night,
            reason=reason, by=by, accept_by=self.accept_by, previous_technician_id=previous,
        ))

    def offer(self, pool: list[str], *, by: str, now: datetime, accept_by: datetime | None = None,
              night: bool = False) -> None:
        """抢单: offer the work to a pool; the first of them to grab it gets it."""
        if not pool:
            raise DomainError("a grab offer needs at least one technician", field="pool", code="empty_pool")
        now = utc(now)
        self._move("offered", by, now, f"offered to {len(pool)}")
        self.pool, self.strategy, self.assigned_at, self.night = tuple(pool), "grab", now, night
        self.technician_id = None
        self.accept_by = utc(accept_by) if accept_by else None
        self._record(ev.WorkOrderOffered(**self._ids(), pool=list(pool), offered_at=now, night=night,
                                         accept_by=self.accept_by, by=by))

    def grab(self, technician_id: str, *, now: datetime) -> None:
        """The first to grab gets it; every later grab is refused with code `already_taken`."""
        if self.state != "offered":
            taken = f" by {self.technician_id}" if self.technician_id else ""
            raise DomainError(f"work order is {self.state}{taken}; it is no longer on offer",
                              field="technician_id", code="already_taken")
        if technician_id not in self.pool:
            raise DomainError(f"{technician_id} was not offered this work order", field="technician_id",
                              code="not_in_pool")
        self._require_consent()
        now = utc(now)
        self._move("accepted", technician_id, now, "grabbed")
        self.technician_id = technician_id
        self._record(ev.WorkOrderAssigned(
            **self._ids(), technician_id=technician_id, strategy="grab", assigned_at=now,
            night=self.night, reason="grab_pool", by=technician_id, accept_by=None,
        ))
        self._record(ev.WorkOrderAccepted(**self._ids(), technician_id=technician_id, strategy="grab",
                                          accepted_at=now))

    def decline(self, technician_id: str, *, reason: str, now: datetime) -> None:
        self._require_assignee(technician_id)
        if not reason or not reason.strip():
            raise DomainError("declining needs a reason", field="reason", code="reason_required")
        now = utc(now)
        self._move("unassigned", technician_id, now, reason)
        self.tried.add(technician_id)
        self.technician_id = None
        self._record(ev.AssignmentDeclined(**self._ids(), technician_id=technician_id, reason=reason.strip(),
                                           declined_at=now))

    def time_out(self, *, now: datetime) -> None:
        """The assignee (or the grab pool) let the acceptance deadline pass; the work goes back for the next one."""
        now = utc(now)
        if self.state in ("assigned", "offered") and (self.accept_by is None or now < self.accept_by):
            raise DomainError(f"acceptance is due at {self.accept_by}, not yet lapsed", field="now",
                              code="not_timed_out")
        previous_state, tech, pool = self.state, self.technician_id, self.pool
        self._move("unassigned", "system", now, "acceptance timed out")
        self.tried.update([tech] if tech else pool)
        self.technician_id, self.pool = None, ()
        assert self.assigned_at is not None and self.accept_by is not None
        self._record(ev.AssignmentTimedOut(
            **self._ids(), technician_id=tech if previous_state == "assigned" else None, pool=list(pool),
            assigned_at=self.assigned_at, accept_by=self.accept_by, timed_out_at=now,
        ))

    def accept(self, technician_id: str, *, now: datetime) -> None:
        if self.state == "offered":
            self.grab(technician_id, now=now)
            return
        self._require_assignee(technician_id)
        self._require_consent()
        now = utc(now)
        self._move("accepted", technician_id, now)
        self._record(ev.WorkOrderAccepted(**self._ids(), technician_id=technician_id, strategy=self.strategy or "",
                                          accepted_at=now))

    # -- the work --------------------------------------------------------------------------------------------

    def depart(self, *, by: str, now: datetime) -> None:
        now = utc(now)
        self._move("en_route", by, now)
        self._record(ev.TechnicianEnRoute(**self._ids(), technician_id=self._tech(), departed_at=now, by=by))

    def arrive(self, *, by: str, now: datetime) -> None:
        now = utc(now)
        self._move("on_site", by, now)
        self._record(ev.TechnicianArrived(**self._ids(), technician_id=self._tech(), arrived_at=now, by=by))

    def take_temporary_measure(self, measure: str, *, by: str, now: datetime) -> None:
        if not measure or not measure.strip():
            raise DomainError("describe the temporary measure", field="measure", code="measure_required")
        now = utc(now)
        self._move("temporary_measure", by, now, measure.strip())
        self.temporary_measure = measure.strip()
        self._record(ev.TemporaryMeasureTaken(**self._ids(), technician_id=self._tech(), measure=measure.strip(),
                                              taken_at=now, by=by))

    def pause(self, reason: str, *, by: str, now: datetime, until: datetime | None = None,
              note: str | None = None) -> None:
        if reason not in PAUSE_REASONS:
            raise DomainError(f"pause reason must be one of {', '.join(PAUSE_REASONS)}", field="reason",
                              code="invalid_reason")
        now = utc(now)
        previous = self.state
        self._move("paused", by, now, reason)
        self.paused_from, self.pause_reason, self.paused_at = previous, reason, now
        self._record(ev.WorkOrderPaused(**self._ids(), reason=reason, paused_from=previous, paused_at=now, by=by,
                                        until=utc(until) if until else None, note=note))

    def resume(self, *, by: str, now: datetime) -> None:
        if self.state != "paused" or self.paused_from is None:
            raise InvalidTransition(f"work order is {self.state}; only a paused one resumes",
                                    current_state=self.state)
        now = utc(now)
        back_to, reason = self.paused_from, self.pause_reason or ""
        assert self.paused_at is not None
        paused_seconds = int((now - self.paused_at).total_seconds())
        self._move(back_to, by, now, "resumed")
        self._clear_pause()
        self._record(ev.WorkOrderResumed(**self._ids(), resumed_to=back_to, reason=reason, resumed_at=now,
                                         paused_seconds=paused_seconds, by=by))

    def book_appointment(self, visit_at: datetime, *, by: str, now: datetime, note: str | None = None) -> None:
        """A visit time agreed with the resident. The work pauses until then (reason appointment_booked); booking
        again while so paused moves the visit without a second pause."""
        now, visit_at = utc(now), utc(visit_at)
        if visit_at <= now:
            raise DomainError("the visit must be in the future", field="visit_at", code="invalid_appointment")
        rebooking = self.state == "paused" and self.pause_reason == "appointment_booked"
        if not rebooking:
            self.pause("appointment_booked", by=by, now=now, until=visit_at, note=note)
        self.appointment = Appointment(visit_at, now, by, note)
        self._record(ev.AppointmentBooked(**self._ids(), visit_at=visit_at, booked_at=now, by=by, note=note))

    # -- paid services ---------------------------------------------------------------------------------------

    def issue_quote(self, quote: Quote, *, by: str, now: datetime) -> None:
        if not self.paid_service:
            raise DomainError("public-area and free work is not quoted", field="quote", code="not_paid_service")
        if self.state not in OPEN_STATES or self.state in ("resolved", "resident_accepted"):
            raise InvalidTransition(f"work order is {self.state}; it can no longer be quoted",
                                    current_state=self.state)
        now = utc(now)
        if self.consent is not None and self.consent.total_cents != quote.total_cents:
            self.consent = None  # the resident agreed to a different amount
        self.quote = quote
        self._record(ev.QuoteIssued(**self._ids(), items=[line.to_dict() for line in quote.lines],
                                    total_cents=quote.total_cents, issued_at=now, by=by))

    def record_consent(self, *, method: str, by: str, now: datetime) -> None:
        if self.quote is None:
            raise DomainError("there is no quote to consent to", field="quote", code="quote_required")
        if method not in CONSENT_METHODS:
            raise DomainError(f"consent method must be one of {', '.join(CONSENT_METHODS)}", field="method",
                              code="invalid_method")
        now = utc(now)
        self.consent = Consent(self.quote.total_cents, method, now, by)
        self._record(ev.ConsentRecorded(**self._ids(), total_cents=self.quote.total_cents, method=method,
                                        consented_at=now, recorded_by=by))

    # -- finishing -------------------------------------------------------------------------------------------

    def resolve(self, resolution: str, *, by: str, now: datetime, materials: Iterable[MaterialUse] = (),
                fee_cents: int | None = None) -> None:
        """Record the fix with its materials and fee. Free work charges nothing; paid work charges at most what
        the resident agreed to (the quote total, by default)."""
        if not resolution or not resolution.strip():
            raise DomainError("describe the resolution", field="resolution", code="resolution_required")
        mats = tuple(materials)
        if self.paid_service:
            self._require_consent()
            assert self.consent is not None
            fee = self.consent.total_cents if fee_cents is None else fee_cents
            if fee > self.consent.total_cents:
                raise DomainError(f"fee {fee} exceeds the {self.consent.total_cents} the resident agreed to",
                                  field="fee_cents", code="fee_exceeds_consent")
        else:
            fee = 0 if fee_cents is None else fee_cents
            if fee != 0 or any(m.amount_cents for m in mats):
                raise DomainError("public-area and free work is not charged", field="fee_cents",
                                  code="not_paid_service")
        if not isinstance(fee, int) or fee < 0:
            raise DomainError("fee must be whole cents >= 0", field="fee_cents", code="invalid_fee")
        now = utc(now)
        self._move("resolved", by, now)
        self.resolution, self.materials, self.fee_cents, self.resolved_at = resolution.strip(), mats, fee, now
        self._record(ev.WorkOrderResolved(
            **self._ids(), technician_id=self._tech(), resolved_at=now, resolution=self.resolution,
            paid_service=self.paid_service, fee_cents=fee, materials=[m.to_dict() for m in mats], by=by,
        ))

    def resident_accept(self, *, by: str, now: datetime, note: str | None = None) -> None:
        now = utc(now)
        self._move("resident_accepted", by, now, note)
        self._record(ev.ResidentAccepted(**self._ids(), accepted_at=now, by=by, note=note))

    def resident_reject(self, *, reason: str, by: str, now: datetime) -> None:
        if not reason or not reason.strip():
            raise DomainError("a rejection needs the resident's reason", field="reason", code="reason_required")
        now = utc(now)
        self._move("resident_rejected", by, now, reason.strip())
        self.rejections += 1
        self.resolved_at = None
        self._record(ev.ResidentRejected(**self._ids(), rejected_at=now, by=by, reason=reason.strip(),
                                         rejection_count=self.rejections))

    def close(self, *, by: str, now: datetime) -> None:
        now = utc(now)
        self._move("closed", by, now)
        self.closed_at = now
        self._record(ev.WorkOrderClosed(**self._ids(), closed_at=now, by=by))

    def cancel(self, *, reason: str, by: str, now: datetime) -> None:
        if not reason or not reason.strip():
            raise DomainError("a cancellation needs a reason", field="reason", code="reason_required")
        now = utc(now)
        previous = self.state
        self._move("cancelled", by, now, reason.strip())
        self.closed_at = now
        self._record(ev.WorkOrderCancelled(**self._ids(), cancelled_from=previous, reason=reason.strip(),
                                           cancelled_at=now, by=by))

    # -- internals -------------------------------------------------------------------------------------------

    def _move(self, to: str, by: str, now: datetime, reason: str | None = None) -> None:
        if self.state == "paused" and to in PAUSABLE and to != self.paused_from:
            raise InvalidTransition(f"work order is paused from {self.paused_from}; it resumes only to that",
                                    current_state=self.state)
        check_transition(self.state, to)
        self.history.append(HistoryEntry(self.state, to, now, by, reason))
        self.state = to
        self.version += 1

    def _clear_pause(self) -> None:
        self.paused_from = self.pause_reason = self.paused_at = None

    def _require_assignee(self, technician_id: str) -> None:
        if self.state == "assigned" and technician_id != self.technician_id:
            raise DomainError(f"work order is assigned to {self.technician_id}, not {technician_id}",
                              field="technician_id", code="not_assignee")

    def _require_consent(self) -> None:
        if not self.paid_service:
            return
        if self.quote is None or self.consent is None or self.consent.total_cents != self.quote.total_cents:
            raise DomainError("paid work needs the resident's consent to the quote before it starts",
                              field="consent", code="consent_required")

    def _tech(self) -> str:
        return self.technician_id or ""

    def _ids(self) -> dict:
        return {"work_order_id": self.id, "request_no": self.request_no, "property_id": self.property_id,
                "department": self.department}

    def _record(self, event: Event) -> None:
        self.events.append(event)
