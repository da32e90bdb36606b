"""Time-based condition rules: the instant each would come true (stored as a due row by the service), in policy
days scaled by the policy's time_scale, and nothing pending once a rule cannot come true by time alone."""
from dataclasses import replace
from datetime import datetime, timedelta, UTC

import pytest

from services.escalation.domain.conditions import RequestFacts
from services.escalation.domain.policy import Policy, default_policy

POLICY = default_policy()
NOW = datetime(2026, 12, 10, 2, 0, tzinfo=UTC)
REG = NOW - timedelta(hours=2)
PLAIN = RequestFacts(request_no="LY-1", category="repair", registered_at=REG)
TIMED = {"repair_delayed", "quality_dispute_unsettled"}


def scaled(time_scale: float) -> Policy:
    return Policy.from_dict({**POLICY.to_dict(), "time_scale": time_scale})


def test_only_the_time_based_rules_are_scheduled_and_a_repair_is_due_seven_days_after_registration():
    due = POLICY.condition_schedule(PLAIN, NOW)
    assert set(due) == TIMED
    assert due["quality_dispute_unsettled"] is None  # no disputed plan: nothing counts
    at = due["repair_delayed"]
    assert at is not None and timedelta(0) < at - (REG + timedelta(days=7)) <= timedelta(microseconds=2)
    # The service re-evaluates at the due instant: the rule fires then, not a moment before.
    assert [h.rule for h in POLICY.evaluate_conditions(PLAIN, at)] == ["repair_delayed"]
    assert POLICY.evaluate_conditions(PLAIN, at - timedelta(milliseconds=1)) == []


@pytest.mark.parametrize("time_scale, seconds", [(1 / 1800, 336.0), (4 / 604800, 4.0)])
def test_a_scaled_policy_counts_policy_days(time_scale, seconds):
    policy = scaled(time_scale)
    at = policy.condition_schedule(PLAIN, REG)["repair_delayed"]
    assert at is not None and abs((at - REG).total_seconds() - seconds) < 1e-3
    assert [h.rule for h in policy.evaluate_conditions(PLAIN, at)] == ["repair_delayed"]
    assert policy.evaluate_conditions(PLAIN, at - timedelta(milliseconds=10)) == []


def test_a_disputed_plan_of_a_major_quality_problem_is_due_two_days_after_the_dispute():
    disputed = NOW - timedelta(hours=1)
    facts = replace(PLAIN, major_quality_issue=True, plan_disputed_at=disputed)
    at = POLICY.condition_schedule(facts, NOW)["quality_dispute_unsettled"]
    assert at is not None and timedelta(0) < at - (disputed + timedelta(days=2)) <= timedelta(microseconds=2)
    assert "quality_dispute_unsettled" in [h.rule for h in POLICY.evaluate_conditions(facts, at)]


@pytest.mark.parametrize("facts, rule", [
    (replace(PLAIN, resolved=True), "repair_delayed"),
    (replace(PLAIN, closed=True), "repair_delayed"),
    (replace(PLAIN, category="complaint"), "repair_delayed"),  # a clause only a new fact can change is false
    (replace(PLAIN, major_quality_issue=False, plan_disputed_at=NOW), "quality_dispute_unsettled"),
    (replace(PLAIN, major_quality_issue=True, plan_disputed_at=NOW, dispute_settled=True),
     "quality_dispute_unsettled"),
])
def test_nothing_is_pending_for_a_rule_time_alone_cannot_make_true(facts, rule):
    assert POLICY.condition_schedule(facts, NOW)[rule] is None


def test_nothing_is_pending_for_a_fired_rule_or_one_already_due():
    assert POLICY.condition_schedule(PLAIN, NOW, frozenset({"repair_delayed"}))["repair_delayed"] is None
    # Due already: the evaluation at `now` decided (it fires there); no row to wait for.
    late = replace(PLAIN, registered_at=NOW - timedelta(days=8))
    assert POLICY.condition_schedule(late, NOW)["repair_delayed"] is None
    assert [h.rule for h in POLICY.evaluate_conditions(late, NOW)] == ["repair_delayed"]


def test_days_since_a_previous_repair_are_policy_days_too():
    facts = replace(PLAIN, previous_repair_at=REG - timedelta(seconds=800), resolved=True)
    assert [h.rule for h in scaled(1 / 1800).evaluate_conditions(facts, NOW)] == ["repeat_repair"]  # 16.7 days
    assert scaled(1 / 3600).evaluate_conditions(facts, NOW) == []  # 33.3 days
