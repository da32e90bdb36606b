"""Feedback's settings as plain data.

The caller (service layer) loads its config file and hands the mapping to `FeedbackPolicy.from_mapping`; the
domain never reads files or the environment. Defaults are the numbers the company's standards and issue 6 name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from collections.abc import Mapping

from services.common.domain import DomainError

SATISFACTION_LEVELS = ("satisfied", "basically_satisfied", "unsatisfied")
VISIT_METHODS = ("phone", "on_site")
SURVEY_SERVICES = ("power", "water", "security", "cleaning", "greening", "repairs")

# A development seed only: production must configure its own, kept out of staff's reach, so that nobody can
# predict which resolved requests will be visited.
DEV_SEED = "feedback-dev-seed-change-me"


@dataclass(frozen=True)
class SamplingConfig:
    """A reproducible sample: `rate` of the population, drawn by a keyed hash under the seed called `seed_id`."""

    rate: float = 0.10
    seed_id: str = "dev"
    seed: str = field(default=DEV_SEED, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise DomainError(f"sample rate {self.rate} is outside [0, 1]", field="rate", code="invalid_config")
        if not self.seed or not self.seed_id:
            raise DomainError("a sample needs a seed and a seed id", field="seed", code="invalid_config")


@dataclass(frozen=True)
class FeedbackPolicy:
    return_visit_sampling: SamplingConfig = SamplingConfig()
    return_visit_due_within: timedelta = timedelta(days=3)
    # Offsets from the first failed attempt: "after 2 h, next day, 2 days"; after the last one the resident is
    # recorded as unreachable.
    retry_after: tuple[timedelta, ...] = (timedelta(hours=2), timedelta(days=1), timedelta(days=2))
    # How long after the last planned retry the visit waits for that retry to be made before it is recorded as
    # failed (unreachable) by the service's timer.
    retry_lapse: timedelta = timedelta(hours=4)
    audit_sampling: SamplingConfig = SamplingConfig()
    follow_up_within: timedelta = timedelta(hours=24)
    letter_confirmation_after: timedelta = timedelta(days=3)
    survey_max_interval: timedelta = timedelta(days=365)
    survey_services: tuple[str, ...] = SURVEY_SERVICES
    return_visit_rate_target: float = 1.0
    valid_complaint_rate_target: float = 0.01

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> FeedbackPolicy:
        """Build from the nested mapping of the config file; a missing key keeps its default.

        return_visit: {sample_rate, seed_id, seed, due_within_hours, retry_after_hours: [..], retry_lapse_hours}
        audit: {sample_rate, seed_id, seed}
        follow_up: {within_hours}
        letters: {confirmation_after_days}
        surveys: {max_interval_days, services: [..]}
        targets: {return_visit_rate, valid_complaint_rate}
        """
        raw = raw or {}
        d = cls()
        rv = raw.get("return_visit", {}) or {}
        au = raw.get("audit", {}) or {}
        fu = raw.get("follow_up", {}) or {}
        lt = raw.get("letters", {}) or {}
        sv = raw.get("surveys", {}) or {}
        tg = raw.get("targets", {}) or {}
        rv_s = d.return_visit_sampling
        au_s = d.audit_sampling
        retry = rv.get("retry_after_hours")
        return cls(
            return_visit_sampling=SamplingConfig(
                rate=float(rv.get("sample_rate", rv_s.rate)),
                seed_id=str(rv.get("seed_id", rv_s.seed_id)),
                seed=str(rv.get("seed", rv_s.seed)),
            ),
            return_visit_due_within=_hours(rv, "due_within_hours", d.return_visit_due_within),
            retry_after=(tuple(timedelta(hours=float(h)) for h in retry) if retry is not None else d.retry_after),
            retry_lapse=_hours(rv, "retry_lapse_hours", d.retry_lapse),
            audit_sampling=SamplingConfig(
                rate=float(au.get("sample_rate", au_s.rate)),
                # The audit reuses the return-visit seed unless given its own: the purpose is part of the hashed key,
                # so the two draws stay independent either way.
                seed_id=str(au.get("seed_id", rv.get("seed_id", au_s.seed_id))),
                seed=str(au.get("seed", rv.get("seed", au_s.seed))),
            ),
            follow_up_within=_hours(fu, "within_hours", d.follow_up_within),
            letter_confirmation_after=(
                timedelta(days=float(lt["confirmation_after_days"]))
                if "confirmation_after_days" in lt else d.letter_confirmation_after
            ),
            survey_max_interval=(
                timedelta(days=float(sv["max_interval_days"])) if "max_interval_days" in sv else d.survey_max_interval
            ),
            survey_services=tuple(sv.get("services", d.survey_services)),
            return_visit_rate_target=float(tg.get("return_visit_rate", d.return_visit_rate_target)),
            valid_complaint_rate_target=float(tg.get("valid_complaint_rate", d.valid_complaint_rate_target)),
        )


def _hours(section: Mapping[str, Any], key: str, default: timedelta) -> timedelta:
    return timedelta(hours=float(section[key])) if key in section else default
