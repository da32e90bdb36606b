"""Who gets a return visit (回访) and which visits a supervisor re-checks each month.

Both samples are drawn by HMAC-SHA256(seed, purpose|key) mapped to [0, 1): the same seed and request number always
give the same draw, so an auditor holding the seed can re-derive every decision, while staff without the seed cannot
predict (or steer) which requests will be checked. Each decision records the seed id, the draw and the rate.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from collections.abc import Iterable, Sequence
from uuid import UUID

from services.common.domain import DomainError, utc
from services.feedback.domain.policy import FeedbackPolicy, SamplingConfig

RETURN_VISIT_PURPOSE = "return_visit"
AUDIT_PURPOSE = "audit"


def draw_value(seed: str, purpose: str, key: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, purpose, key).

    The purpose is hashed with the key so that the audit sample is independent of the visit sample even under one
    seed; 53 bits are used so the value is exactly representable as a float.
    """
    digest = hmac.new(seed.encode("utf-8"), f"{purpose}|{key}".encode(), hashlib.sha256).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)


@dataclass(frozen=True)
class VisitDecision:
    """The record of one return-visit decision, kept whether or not a visit follows."""

    request_no: str
    required: bool
    reason: str | None  # valid_complaint | paid_service | sampled | None (not selected)
    seed_id: str
    draw: float
    rate: float
    resolved_at: datetime
    due_at: datetime | None


def decide_return_visit(
    request_no: str,
    *,
    complaint_valid: bool | None,
    paid_service: bool,
    resolved_at: datetime,
    policy: FeedbackPolicy,
) -> VisitDecision:
    """Valid complaints and paid services always get a visit; the rest by the configured sample.

    The draw is computed for every request (also mandatory ones) so that a later change of the mandatory rules can be
    audited against the same numbers.
    """
    if not request_no:
        raise DomainError("a return-visit decision needs the request number", field="request_no")
    resolved_at = utc(resolved_at)
    cfg = policy.return_visit_sampling
    draw = draw_value(cfg.seed, RETURN_VISIT_PURPOSE, request_no)
    reason: str | None
    if complaint_valid:
        reason = "valid_complaint"
    elif paid_service:
        reason = "paid_service"
    elif draw < cfg.rate:
        reason = "sampled"
    else:
        reason = None
    required = reason is not None
    return VisitDecision(
        request_no=request_no,
        required=required,
        reason=reason,
        seed_id=cfg.seed_id,
        draw=draw,
        rate=cfg.rate,
        resolved_at=resolved_at,
        due_at=resolved_at + policy.return_visit_due_within if required else None,
    )


def verify_decision(decision: VisitDecision, config: SamplingConfig) -> bool:
    """An auditor's check: does the recorded draw match what the seed gives for this request?"""
    if config.seed_id != decision.seed_id:
        raise DomainError(
            f"decision was drawn under seed {decision.seed_id!r}, not {config.seed_id!r}", field="seed_id"
        )
    return draw_value(config.seed, RETURN_VISIT_PURPOSE, decision.request_no) == decision.draw


# --- supervisor audit ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditCandidate:
    """A return visit done (or failed) in the audited month."""

    visit_id: UUID
    request_no: str
    paid_service: bool


@dataclass(frozen=True)
class AuditSelection:
    visit_id: UUID
    request_no: str
    reason: str  # paid_service | sampled
    seed_id: str
    draw: float
    rate: float


def audit_period(period: str) -> str:
    """Validate a 'YYYY-MM' month label."""
    try:
        year, month = period.split("-")
        if len(year) != 4 or not 1 <= int(month) <= 12 or len(month) != 2:
            raise ValueError
        int(year)
    except ValueError:
        raise DomainError(f"period {period!r} is not YYYY-MM", field="period") from None
    return period


def select_for_audit(
    candidates: Iterable[AuditCandidate], period: str, config: SamplingConfig
) -> list[AuditSelection]:
    """All paid services, plus `config.rate` of the others, for the supervisor's monthly re-check (3.4 of 003).

    The period is part of the key: a month's selection is fixed once the month's visits are known.
    """
    audit_period(period)
    chosen: list[AuditSelection] = []
    seen: set[UUID] = set()
    for c in sorted(candidates, key=lambda c: c.request_no):
        if c.visit_id in seen:
            continue
        seen.add(c.visit_id)
        draw = draw_value(config.seed, AUDIT_PURPOSE, f"{period}|{c.request_no}")
        if c.paid_service:
            reason = "paid_service"
        elif draw < config.rate:
            reason = "sampled"
        else:
            continue
        chosen.append(AuditSelection(c.visit_id, c.request_no, reason, config.seed_id, draw, config.rate))
    return chosen


def sample_share(request_nos: Sequence[str], config: SamplingConfig) -> float:
    """The share of these requests the visit sample would select (for reports and for checking a new rate)."""
    if not request_nos:
        return 0.0
    hits = sum(1 for n in request_nos if draw_value(config.seed, RETURN_VISIT_PURPOSE, n) < config.rate)
    return hits / len(request_nos)
