"""The periodic satisfaction survey of all households (000 §二.2: at least once a year, on each service:
power, water, security, cleaning, ...), its per-service results and the improvement actions it led to."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Mapping
from uuid import UUID

from services.common.domain import DomainError, Event, InvalidTransition, utc
from services.feedback.domain.events import SatisfactionSurveyClosed, SurveyActionRecorded
from services.feedback.domain.policy import SATISFACTION_LEVELS, FeedbackPolicy

SURVEY_STATES = ("open", "closed")


def check_survey_transition(previous: str, current: str) -> None:
    match (previous, current):
        case ("open", "open") | ("open", "closed") | ("closed", "closed"):
            # answers arrive while open; actions may be added after closing, since they follow from the results
            return
        case _:
            raise InvalidTransition(f"a survey cannot go from {previous} to {current}", current_state=previous)


@dataclass(frozen=True)
class ServiceRating:
    level: str
    score: int | None = None


@dataclass(frozen=True)
class SurveyResponse:
    unit: str
    ratings: Mapping[str, ServiceRating]
    comments: str
    answered_at: datetime


@dataclass(frozen=True)
class ServiceResult:
    service: str
    responses: int
    satisfied: int
    basically_satisfied: int
    unsatisfied: int
    satisfaction_rate: float | None  # (satisfied + basically satisfied) / responses
    mean_score: float | None

    def to_dict(self) -> dict[str, object]:
        return {"service": self.service, "responses": self.responses, "satisfied": self.satisfied,
                "basically_satisfied": self.basically_satisfied, "unsatisfied": self.unsatisfied,
                "satisfaction_rate": self.satisfaction_rate, "mean_score": self.mean_score}


@dataclass(frozen=True)
class SurveyAction:
    action_id: UUID
    service: str
    description: str
    owner_department: str
    recorded_at: datetime
    due_at: datetime | None = None


@dataclass
class SatisfactionSurvey:
    survey_id: UUID
    property_id: str
    period: str  # e.g. "2026" or "2026-H2"
    services: tuple[str, ...]
    households_total: int
    opened_at: datetime
    state: str = "open"
    responses: dict[str, SurveyResponse] = field(default_factory=dict)  # by unit: one answer per household
    closed_at: datetime | None = None
    actions: list[SurveyAction] = field(default_factory=list)
    events: list[Event] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def open(cls, *, property_id: str, period: str, households_total: int, now: datetime, policy: FeedbackPolicy,
             survey_id: UUID | None = None) -> SatisfactionSurvey:
        if households_total <= 0:
            raise DomainError("a survey of all households needs the number of households", field="households_total")
        if not period:
            raise DomainError("the survey's period is required", field="period")
        return cls(survey_id or uuid.uuid4(), property_id, period, tuple(policy.survey_services), households_total,
                   utc(now))

    def answer(self, *, unit: str, ratings: Mapping[str, ServiceRating], now: datetime, comments: str = "") -> None:
        """A household's answer; answering again replaces its earlier answer."""
        check_survey_transition(self.state, "open")
        if not unit:
            raise DomainError("the household's unit is required", field="unit")
        unknown = sorted(set(ratings) - set(self.services))
        if unknown:
            raise DomainError(f"not a surveyed service: {', '.join(unknown)}", field="ratings")
        for service, r in ratings.items():
            if r.level not in SATISFACTION_LEVELS:
                raise DomainError(f"{service}: satisfaction must be one of {', '.join(SATISFACTION_LEVELS)}",
                                  field="ratings")
            if r.score is not None and not 1 <= r.score <= 5:
                raise DomainError(f"{service}: score must be from 1 to 5", field="ratings")
        if unit not in self.responses and len(self.responses) >= self.households_total:
            raise DomainError("more answers than households", field="unit")
        self.responses[unit] = SurveyResponse(unit, dict(ratings), comments, utc(now))

    def results(self) -> list[ServiceResult]:
        out = []
        for service in self.services:
            rs = [resp.ratings[service] for resp in self.responses.values() if service in resp.ratings]
            counts = {lv: sum(1 for r in rs if r.level == lv) for lv in SATISFACTION_LEVELS}
            scores = [r.score for r in rs if r.score is not None]
            out.append(ServiceResult(
                service, len(rs), counts["satisfied"], counts["basically_satisfied"], counts["unsatisfied"],
                round((counts["satisfied"] + counts["basically_satisfied"]) / len(rs), 4) if rs else None,
                round(sum(scores) / len(scores), 2) if scores else None,
            ))
        return out

    def close(self, *, now: datetime) -> SatisfactionSurveyClosed:
        now = utc(now)
        if self.state != "open":
            raise InvalidTransition("the survey is already closed", current_state=self.state)
        check_survey_transition(self.state, "closed")
        self.state = "closed"
        self.closed_at = now
        n = len(self.responses)
        event = SatisfactionSurveyClosed(self.survey_id, self.property_id, self.period, self.households_total, n,
                                         round(n / self.households_total, 4),
                                         [r.to_dict() for r in self.results()], now)
        self.events.append(event)
        return event

    def record_action(self, *, service: str, description: str, owner_department: str, now: datetime,
                      due_at: datetime | None = None, action_id: UUID | None = None) -> SurveyActionRecorded:
        """An improvement the results led to (to be checked by a later return visit, 000 §二.2)."""
        check_survey_transition(self.state, self.state)
        if service not in self.services:
            raise DomainError(f"not a surveyed service: {service}", field="service")
        if not description.strip():
            raise DomainError("describe the action", field="description")
        a = SurveyAction(action_id or uuid.uuid4(), service, description.strip(), owner_department, utc(now),
                         utc(due_at) if due_at else None)
        self.actions.append(a)
        event = SurveyActionRecorded(self.survey_id, a.action_id, self.property_id, service, a.description,
                                     owner_department, a.recorded_at, a.due_at)
        self.events.append(event)
        return event


def survey_overdue(last_closed_at: datetime | None, now: datetime, policy: FeedbackPolicy) -> bool:
    """True when a property has gone longer than the policy allows (a year by default) without a survey."""
    if last_closed_at is None:
        return True
    return utc(now) - utc(last_closed_at) > policy.survey_max_interval
