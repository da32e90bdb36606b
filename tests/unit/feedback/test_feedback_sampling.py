from datetime import datetime, timedelta, UTC
from uuid import UUID

import pytest

from services.common.domain import DomainError
from services.feedback.domain.policy import FeedbackPolicy, SamplingConfig
from services.feedback.domain.sampling import (
    AuditCandidate,
    decide_return_visit,
    draw_value,
    sample_share,
    select_for_audit,
    verify_decision,
)

RESOLVED = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
POLICY = FeedbackPolicy(return_visit_sampling=SamplingConfig(rate=0.10, seed_id="2026a", seed="s3cret"))
NUMBERS = [f"LY-20261129-{i:06d}" for i in range(10_000)]


def decide(no, policy=POLICY, complaint_valid=None, paid=False):
    return decide_return_visit(no, complaint_valid=complaint_valid, paid_service=paid, resolved_at=RESOLVED,
                               policy=policy)


def test_same_seed_and_request_give_the_same_decision():
    first = [decide(n) for n in NUMBERS[:500]]
    again = [decide(n) for n in NUMBERS[:500]]
    assert first == again
    assert all(d.seed_id == "2026a" and d.rate == 0.10 for d in first)


def test_a_different_seed_draws_a_different_sample():
    other = FeedbackPolicy(return_visit_sampling=SamplingConfig(rate=0.10, seed_id="2026b", seed="another"))
    mine = {n for n in NUMBERS[:2000] if decide(n).required}
    theirs = {n for n in NUMBERS[:2000] if decide(n, other).required}
    assert mine != theirs


def test_sample_rate_is_close_to_ten_percent_over_ten_thousand_numbers():
    selected = sum(1 for n in NUMBERS if decide(n).required)
    # binomial(10000, 0.1): sd = 30, so +-150 is five standard deviations
    assert 850 <= selected <= 1150
    assert sample_share(NUMBERS, POLICY.return_visit_sampling) == selected / 10_000


def test_configured_rate_is_honoured():
    quarter = FeedbackPolicy(return_visit_sampling=SamplingConfig(rate=0.25, seed_id="q", seed="s3cret"))
    selected = sum(1 for n in NUMBERS if decide(n, quarter).required)
    assert 2350 <= selected <= 2650


def test_draw_is_uniform_in_unit_interval_and_recorded_with_the_decision():
    d = decide("LY-20261129-000042")
    assert 0.0 <= d.draw < 1.0
    assert d.draw == draw_value("s3cret", "return_visit", "LY-20261129-000042")
    assert d.required == (d.draw < 0.10)
    assert verify_decision(d, POLICY.return_visit_sampling)


def test_valid_complaint_and_paid_service_are_always_visited_whatever_the_draw():
    unsampled = next(n for n in NUMBERS if not decide(n).required)
    complaint = decide(unsampled, complaint_valid=True, paid=True)
    paid = decide(unsampled, paid=True)
    assert (complaint.required, complaint.reason) == (True, "valid_complaint")
    assert (paid.required, paid.reason) == (True, "paid_service")
    assert decide(unsampled).reason is None


def test_visit_is_due_three_days_after_resolution_and_unselected_has_no_due_date():
    sampled = next(n for n in NUMBERS if decide(n).required)
    unsampled = next(n for n in NUMBERS if not decide(n).required)
    assert decide(sampled).due_at == RESOLVED + timedelta(days=3)
    assert decide(sampled).reason == "sampled"
    assert decide(unsampled).due_at is None


def test_tampered_draw_fails_verification():
    d = decide("LY-20261129-000042")
    from dataclasses import replace
    assert not verify_decision(replace(d, draw=0.01), POLICY.return_visit_sampling)
    with pytest.raises(DomainError):
        verify_decision(d, SamplingConfig(seed_id="other", seed="x"))


def test_audit_takes_every_paid_service_and_about_ten_percent_of_the_rest_reproducibly():
    cands = [AuditCandidate(UUID(int=i + 1), n, paid_service=(i % 20 == 0)) for i, n in enumerate(NUMBERS)]
    cfg = SamplingConfig(rate=0.10, seed_id="2026a", seed="s3cret")
    chosen = select_for_audit(cands, "2026-11", cfg)
    assert chosen == select_for_audit(reversed(cands), "2026-11", cfg)
    paid = [c for c in chosen if c.reason == "paid_service"]
    sampled = [c for c in chosen if c.reason == "sampled"]
    assert len(paid) == 500
    assert 9500 * 0.085 <= len(sampled) <= 9500 * 0.115
    assert all(c.seed_id == "2026a" and c.draw < 0.10 for c in sampled)


def test_audit_sample_is_independent_of_the_visit_sample():
    cfg = POLICY.return_visit_sampling
    visit = {n for n in NUMBERS if decide(n).required}
    audited = {c.request_no for c in select_for_audit(
        [AuditCandidate(UUID(int=i + 1), n, False) for i, n in enumerate(NUMBERS)], "2026-11", cfg)}
    overlap = len(visit & audited)
    # independent 10% samples of 10,000 overlap in about 100
    assert 50 <= overlap <= 160


def test_policy_from_config_mapping():
    p = FeedbackPolicy.from_mapping({"return_visit": {"sample_rate": 0.2, "seed_id": "k1", "seed": "abc",
                                                      "retry_after_hours": [1, 4]},
                                     "audit": {"sample_rate": 0.05}})
    assert p.return_visit_sampling == SamplingConfig(0.2, "k1", "abc")
    assert p.audit_sampling == SamplingConfig(0.05, "k1", "abc")
    assert p.retry_after == (timedelta(hours=1), timedelta(hours=4))
    assert p.return_visit_due_within == timedelta(days=3)
    with pytest.raises(DomainError):
        FeedbackPolicy.from_mapping({"return_visit": {"sample_rate": 1.5}})
