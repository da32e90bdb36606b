from dataclasses import replace
from datetime import datetime, timedelta, UTC
from uuid import UUID

import pytest

from services.common.domain import DomainError
from services.escalation.domain.conditions import RequestFacts
from services.escalation.domain.ladder import Ladder, LadderRun
from services.escalation.domain.mapping import Verb, actions_for
from services.escalation.domain.policy import default_policy

POLICY = default_policy()
NOW = datetime(2026, 12, 10, 2, 0, tzinfo=UTC)
PLAIN = RequestFacts(request_no="LY-1", category="repair", registered_at=NOW - timedelta(hours=2))


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


@pytest.mark.parametrize("facts, rule, rung", [
    (replace(PLAIN, previous_repair_at=PLAIN.registered_at - timedelta(days=19)), "repeat_repair", "cs_department"),
    (replace(PLAIN, reopen_count=2), "repeat_repair", "cs_department"),
    (replace(PLAIN, registered_at=days_ago(7)), "repair_delayed", "cs_department"),
    (replace(PLAIN, major_quality_issue=True, plan_disputed_at=days_ago(2)), "quality_dispute_unsettled",
     "cs_department"),
    (replace(PLAIN, compensation_demanded=True), "compensation", "cs_department"),
    (replace(PLAIN, large_loss_expected=True), "compensation", "cs_department"),
    (replace(PLAIN, cluster_size=5), "many_residents", "cs_department"),
    (replace(PLAIN, serious_case=True), "many_residents", "cs_department"),
    (replace(PLAIN, vip=True), "vip_or_directed", "cs_supervisor"),
    (replace(PLAIN, directed=True), "vip_or_directed", "cs_supervisor"),
    (replace(PLAIN, category="emergency_medical"), "emergency_medical", "manager"),
])
def test_each_condition_rule_fires_with_its_rung_and_reason(facts, rule, rung):
    hits = POLICY.evaluate_conditions(facts, NOW)
    assert [(h.rule, h.rung) for h in hits] == [(rule, rung)]
    assert hits[0].reason and hits[0].rung_index == POLICY.rung_index(rung)


@pytest.mark.parametrize("facts", [
    PLAIN,
    replace(PLAIN, previous_repair_at=PLAIN.registered_at - timedelta(days=21)),
    replace(PLAIN, reopen_count=1),
    replace(PLAIN, registered_at=days_ago(6.9)),
    replace(PLAIN, registered_at=days_ago(30), resolved=True),
    replace(PLAIN, major_quality_issue=True, plan_disputed_at=days_ago(1.9)),
    replace(PLAIN, major_quality_issue=True, plan_disputed_at=days_ago(5), dispute_settled=True),
    replace(PLAIN, cluster_size=4),
])
def test_conditions_short_of_their_thresholds_do_not_fire(facts):
    assert POLICY.evaluate_conditions(facts, NOW) == []


def test_several_rules_come_highest_rung_first_and_fired_rules_are_not_repeated():
    facts = replace(PLAIN, category="emergency_medical", vip=True, compensation_demanded=True)
    assert [h.rule for h in POLICY.evaluate_conditions(facts, NOW)] == [
        "emergency_medical", "compensation", "vip_or_directed"]
    assert [h.rule for h in POLICY.evaluate_conditions(facts, NOW, frozenset({"emergency_medical"}))] == [
        "compensation", "vip_or_directed"]


def test_a_condition_escalation_starts_at_its_rung_and_climbs_only_if_asked():
    hit = POLICY.evaluate_conditions(replace(PLAIN, category="emergency_medical"), NOW)[0]
    run, events = LadderRun.start(escalation_id=UUID(int=1), request_no="LY-1", ladder=Ladder.default(),
                                  rung_index=hit.rung_index, reason=hit.reason, source="condition", rule=hit.rule,
                                  now=NOW, climb_further=hit.climb)
    assert (events[0].rung, events[0].rule, events[0].source) == ("manager", "emergency_medical", "condition")
    assert run.next_due() is None
    climbing, _ = LadderRun.start(escalation_id=UUID(int=2), request_no="LY-1", ladder=Ladder.default(),
                                  rung_index=1, reason="r", source="condition", now=NOW)
    assert climbing.next_due() == NOW + timedelta(minutes=30)
    climbed = climbing.climb(NOW + timedelta(minutes=30))
    assert climbed[0].rung == "cs_department"
    assert climbing.acknowledge("staff-li", NOW + timedelta(minutes=31))
    assert climbing.acknowledge("staff-zhao", NOW + timedelta(minutes=32)) == []
    assert climbing.acknowledged_by == "staff-li" and climbing.next_due() is None


# -- which facts drive which clocks -------------------------------------------------------------------------------

AT = "2026-11-29T04:00:00+00:00"
T0 = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)


def test_registration_proposes_the_request_clocks():
    actions = actions_for("RequestRegistered", {"request_no": "LY-1", "registered_at": AT}, NOW)
    assert [(a.verb, a.clock, a.at) for a in actions] == [
        (Verb.START, "acknowledge", T0), (Verb.START, "first_response", T0), (Verb.START, "resolution", T0),
        (Verb.START, "complaint_reply", T0)]


def test_assignment_is_the_first_response_and_starts_on_site():
    actions = actions_for("WorkOrderAssigned", {"request_no": "LY-1", "assigned_at": AT}, NOW)
    assert [(a.verb, a.clock, a.at) for a in actions] == [
        (Verb.STOP, "first_response", T0), (Verb.START, "on_site", T0)]


def test_closing_a_request_cancels_its_own_clocks_but_not_the_after_care_ones():
    actions = actions_for("RequestClosed", {"request_no": "LY-1", "closed_at": AT}, NOW)
    assert {a.clock for a in actions} == {"acknowledge", "first_response", "supervisor_answer", "on_site",
                                          "resolution", "plan", "complaint_reply"}
    assert all(a.verb is Verb.CANCEL and a.reason == "request closed" for a in actions)


def test_work_order_pause_carries_its_reason_to_both_clocks():
    actions = actions_for("WorkOrderPaused", {"request_no": "LY-1", "reason": "waiting_parts"}, NOW)
    assert [(a.verb, a.clock, a.reason, a.at) for a in actions] == [
        (Verb.PAUSE, "on_site", "waiting_parts", NOW), (Verb.PAUSE, "resolution", "waiting_parts", NOW)]


def test_only_a_follow_up_work_order_stops_the_revisit_fix_clock():
    assert actions_for("WorkOrderCreated", {"request_no": "LY-1"}, NOW) == []
    follow_up = actions_for("WorkOrderCreated", {"request_no": "LY-1", "follow_up_of": "RV-9"}, NOW)
    assert [(a.verb, a.clock) for a in follow_up] == [(Verb.STOP, "revisit_fix")]


def test_resolution_stops_resolution_and_starts_the_return_visit():
    actions = actions_for("WorkOrderResolved", {"request_no": "LY-1", "resolved_at": AT}, NOW)
    assert [(a.verb, a.clock) for a in actions] == [(Verb.STOP, "resolution"), (Verb.START, "return_visit"),
                                                    (Verb.STOP, "complaint_reply")]


def test_a_complaint_is_replied_when_its_investigation_is_resolved_or_a_reply_letter_is_sent():
    resolved = actions_for("WorkOrderResolved", {"request_no": "LY-1", "resolved_at": AT}, NOW)
    assert (Verb.STOP, "complaint_reply", T0) in [(a.verb, a.clock, a.at) for a in resolved]
    sent = actions_for("ReplyLetterSent", {"request_no": "LY-1", "sent_at": AT}, NOW)
    assert [(a.verb, a.clock, a.at) for a in sent] == [(Verb.START, "letter_confirmation", T0),
                                                       (Verb.STOP, "complaint_reply", T0)]


def test_handover_clocks_belong_to_the_handover_and_reclassification_touches_every_clock():
    assert actions_for("ShiftHandoverPublished", {"handover_id": "HO-7"}, NOW)[0].subject == "HO-7"
    retarget = actions_for("RequestReclassified", {"request_no": "LY-1"}, NOW)[0]
    assert (retarget.verb, retarget.clock, retarget.reason) == (Verb.RETARGET, "*", "reclassified")


def test_an_event_without_its_subject_is_refused_and_unrelated_events_touch_nothing():
    with pytest.raises(DomainError) as exc:
        actions_for("TechnicianArrived", {"arrived_at": AT}, NOW)
    assert exc.value.field == "request_no"
    assert actions_for("SomethingElse", {}, NOW) == []
