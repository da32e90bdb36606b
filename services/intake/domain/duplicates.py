"""Probable duplicates and incident clusters: pure rules over candidate records the repository hands in.

A probable duplicate is linked to the earlier request and shown to the agent, never merged. Many reports of one
problem (a burst riser, a water cut, a typhoon) are grouped under one parent incident whose events carry the count.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.common.domain import DomainError, utc
from services.intake.domain.events import IncidentClustered


@dataclass(frozen=True)
class DuplicateRules:
    window: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class ClusterRules:
    window: timedelta = timedelta(hours=2)
    min_reports: int = 3
    # Subclasses whose reports belong together across the whole property, wherever they come from.
    property_wide_subcategories: tuple[str, ...] = ("typhoon",)

    def __post_init__(self) -> None:
        if self.min_reports < 2:
            raise DomainError("a cluster needs at least 2 reports", field="min_reports", code="bad_config")
        if self.window <= timedelta(0):
            raise DomainError("the cluster window must be positive", field="window", code="bad_config")


@dataclass(frozen=True)
class Candidate:
    """What the rules need of a request; the repository builds these for one property's recent requests.
    `phone` is the normalised contact number (reporter's or caller's), compared for equality only."""

    request_no: str
    property_id: str
    registered_at: datetime
    category: str
    subcategory: str | None = None
    building: str | None = None
    unit: str | None = None
    area: str | None = None
    phone: str | None = None
    status: str = "registered"
    duplicate_of: str | None = None
    incident_id: uuid.UUID | None = None


@dataclass(frozen=True)
class DuplicateMatch:
    duplicate_of: str
    reason: str  # same_unit_and_class | same_caller


def find_probable_duplicate(new: Candidate, candidates: Iterable[Candidate],
                            rules: DuplicateRules = DuplicateRules()) -> DuplicateMatch | None:
    """The earliest earlier request (same property, not cancelled, within the window) with the same unit and class,
    or else from the same phone. A match that is itself a duplicate points to its original instead, so a chain of
    repeats all link to the first report."""
    at = utc(new.registered_at)
    by_no = {c.request_no: c for c in candidates}
    pool = sorted((c for c in by_no.values()
                   if c.request_no != new.request_no and c.property_id == new.property_id
                   and c.status != "cancelled" and timedelta(0) <= at - utc(c.registered_at) <= rules.window),
                  key=lambda c: (utc(c.registered_at), c.request_no))
    for reason, same in (
        ("same_unit_and_class", lambda c: new.unit is not None and c.unit == new.unit
         and c.category == new.category),
        ("same_caller", lambda c: new.phone is not None and c.phone == new.phone),
    ):
        for c in pool:
            if same(c):
                return DuplicateMatch(c.duplicate_of or c.request_no, reason)
    return None


@dataclass(frozen=True)
class ClusterDecision:
    """`incident_id` is the existing incident to join, or None when a new incident forms from `members`."""

    incident_id: uuid.UUID | None
    members: tuple[str, ...]
    first_reported_at: datetime


def _same_place(a: Candidate, b: Candidate, rules: ClusterRules) -> bool:
    if a.subcategory in rules.property_wide_subcategories:
        return True
    return (a.building is not None and a.building == b.building) or (a.area is not None and a.area == b.area)


def find_cluster(new: Candidate, candidates: Iterable[Candidate],
                 rules: ClusterRules = ClusterRules()) -> ClusterDecision | None:
    """Does `new` make (or join) an incident? Same property, class and subclass, same building or area (or anywhere
    for property-wide subclasses), registered within `rules.window` before it, at least `rules.min_reports`
    reports counting the new one. Cancelled requests do not count."""
    if new.subcategory is None:
        return None
    at = utc(new.registered_at)
    related = [c for c in candidates
               if c.request_no != new.request_no and c.property_id == new.property_id and c.status != "cancelled"
               and c.category == new.category and c.subcategory == new.subcategory and _same_place(new, c, rules)
               and timedelta(0) <= at - utc(c.registered_at) <= rules.window]
    joined = sorted((c for c in related if c.incident_id is not None), key=lambda c: utc(c.registered_at))
    if joined:
        latest = joined[-1]
        return ClusterDecision(latest.incident_id, (new.request_no,), utc(joined[0].registered_at))
    if len(related) + 1 < rules.min_reports:
        return None
    ordered = sorted(related, key=lambda c: (utc(c.registered_at), c.request_no))
    return ClusterDecision(None, tuple(c.request_no for c in ordered) + (new.request_no,),
                           utc(ordered[0].registered_at))


@dataclass
class Incident:
    """The parent of clustered reports. Its events carry the children's count."""

    incident_id: uuid.UUID
    property_id: str
    category: str
    subcategory: str
    building: str | None
    area: str | None
    first_reported_at: datetime
    request_nos: list[str] = field(default_factory=list)
    events: list[IncidentClustered] = field(default_factory=list, repr=False)

    @classmethod
    def form(cls, *, decision: ClusterDecision, new: Candidate, now: datetime,
             incident_id: uuid.UUID | None = None) -> Incident:
        if decision.incident_id is not None:
            raise DomainError("this decision joins an existing incident", field="incident_id", code="bad_decision")
        if new.subcategory is None:
            raise DomainError("a cluster needs a subclass", field="subcategory", code="bad_decision")
        incident = cls(incident_id=incident_id or uuid.uuid4(), property_id=new.property_id, category=new.category,
                       subcategory=new.subcategory, building=new.building, area=new.area,
                       first_reported_at=decision.first_reported_at)
        incident._grow(list(decision.members), new.request_no, utc(now))
        return incident

    @property
    def children_count(self) -> int:
        return len(self.request_nos)

    def add(self, request_no: str, now: datetime) -> IncidentClustered | None:
        """Join one more report; idempotent for a report already counted (redelivery)."""
        if request_no in self.request_nos:
            return None
        return self._grow([request_no], request_no, utc(now))

    def _grow(self, new_nos: list[str], trigger: str, now: datetime) -> IncidentClustered:
        self.request_nos.extend(n for n in new_nos if n not in self.request_nos)
        event = IncidentClustered(
            incident_id=self.incident_id, request_no=trigger, property_id=self.property_id,
            building=self.building, area=self.area, category=self.category, subcategory=self.subcategory,
            request_nos=list(self.request_nos), new_request_nos=list(new_nos), children_count=self.children_count,
            first_reported_at=self.first_reported_at, clustered_at=now)
        self.events.append(event)
        return event
