from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time, timedelta, UTC

import pytest
from dispatch_helpers import DAY, NIGHT, roster_data

from services.common.domain import DomainError
from services.dispatch.domain.assignment import (
    AssignmentPolicy,
    NoAssignee,
    acceptance_deadline,
    choose_assignee,
    deadline_for,
    manual_assignment,
)
from services.dispatch.domain.roster import Roster, ShiftPattern
from services.dispatch.domain.routing import Route

PLUMBING = Route("engineering", "technician", "plumbing", "repair/plumbing/*")


@pytest.fixture
def roster() -> Roster:
    return Roster.from_config(roster_data())


def test_least_loaded_picks_the_on_duty_technician_with_skill_and_zone_and_lowest_load(roster):
    a = choose_assignee(PLUMBING, roster, "least_loaded", DAY, zone="3")
    # tech-li (load 2) and tech-zhou / tech-ma (load 1) fit zone 3; tech-sun lacks plumbing; tech-wang is off duty.
    assert (a.technician_id, a.reason, a.night) == ("tech-ma", "least_loaded", False)


def test_least_loaded_ties_are_broken_by_id(roster):
    a = choose_assignee(PLUMBING, roster, "least_loaded", DAY, zone="5")
    # zone 5: tech-zhou (serves 3 and 5) and tech-ma (serves everywhere), both load 1.
    assert a.technician_id == "tech-ma"
    b = choose_assignee(PLUMBING, roster, "least_loaded", DAY, zone="5", exclude={"tech-ma"})
    assert b.technician_id == "tech-zhou"


def test_a_technician_outside_the_zone_is_not_chosen(roster):
    a = choose_assignee(PLUMBING, roster, "least_loaded", DAY, zone="9")
    assert a.technician_id == "tech-ma"  # the only one serving every building


def test_an_absent_technician_is_never_chosen(roster):
    a = choose_assignee(PLUMBING, roster.with_absent("tech-ma", True), "least_loaded", DAY, zone="3")
    assert a.technician_id == "tech-zhou"


def test_round_robin_moves_past_the_cursor_and_wraps(roster):
    first = choose_assignee(PLUMBING, roster, "round_robin", DAY, zone="3")
    assert (first.technician_id, first.cursor) == ("tech-li", "tech-li")
    picks = []
    cursor = first.cursor
    for _ in range(3):
        a = choose_assignee(PLUMBING, roster, "round_robin", DAY, zone="3", cursor=cursor)
        picks.append(a.technician_id)
        cursor = a.cursor
    assert picks == ["tech-ma", "tech-zhou", "tech-li"]


def test_grab_offers_to_the_whole_pool_of_fitting_technicians(roster):
    a = choose_assignee(PLUMBING, roster, "grab", DAY, zone="3")
    assert a.is_offer and a.technician_id is None
    assert a.pool == ("tech-li", "tech-ma", "tech-zhou")


def test_no_on_duty_match_goes_to_the_on_call_person_then_the_lead(roster):
    at_night = choose_assignee(PLUMBING, roster, "least_loaded", NIGHT, zone="3")
    assert (at_night.technician_id, at_night.reason, at_night.night) == ("tech-wang", "on_call", True)
    after_on_call = choose_assignee(PLUMBING, roster, "least_loaded", NIGHT, zone="3", exclude={"tech-wang"})
    assert (after_on_call.technician_id, after_on_call.reason) == ("lead-zhao", "department_lead")


def test_grab_with_nobody_on_duty_assigns_the_on_call_person_directly(roster):
    a = choose_assignee(PLUMBING, roster, "grab", NIGHT, zone="3")
    assert (a.technician_id, a.reason) == ("tech-wang", "on_call")


def test_the_lead_is_the_last_rung_even_after_letting_it_lapse(roster):
    a = choose_assignee(PLUMBING, roster, "least_loaded", NIGHT, exclude={"tech-wang", "lead-zhao"})
    assert a.technician_id == "lead-zhao"


def test_nobody_at_all_is_an_error_not_silence():
    roster = Roster.from_config({**roster_data(), "on_call": {}, "leads": {}})
    with pytest.raises(NoAssignee) as exc:
        choose_assignee(PLUMBING, roster, "least_loaded", NIGHT)
    assert exc.value.code == "no_assignee"


def test_emergency_medical_goes_to_the_security_duty_lead_by_day_and_by_night(roster):
    route = Route("security", "duty_lead", None, "emergency_medical/*/*")
    by_day = choose_assignee(route, roster, "least_loaded", DAY)
    by_night = choose_assignee(route, roster, "least_loaded", NIGHT)
    assert (by_day.technician_id, by_day.reason) == ("sec-lead-hu", "duty_lead")
    assert (by_night.technician_id, by_night.reason) == ("sec-night-xu", "duty_lead")


def test_a_complaint_goes_to_the_department_lead_for_investigation(roster):
    route = Route("customer_service", "department", None, "complaint/*/*")
    a = choose_assignee(route, roster, "least_loaded", DAY)
    assert (a.technician_id, a.reason) == ("cs-lead-guo", "department")


def test_manual_assignment_needs_a_reason_and_a_present_technician(roster):
    a = manual_assignment(roster, "tech-wang", "engineering", DAY, "熟悉该户管道")
    assert (a.technician_id, a.strategy) == ("tech-wang", "manual")
    assert "off duty" in a.detail
    with pytest.raises(DomainError):
        manual_assignment(roster, "tech-wang", "engineering", DAY, " ")
    with pytest.raises(DomainError) as exc:
        manual_assignment(roster.with_absent("tech-wang", True), "tech-wang", "engineering", DAY, "x")
    assert exc.value.code == "technician_absent"


def test_unknown_strategy_is_refused(roster):
    with pytest.raises(DomainError):
        choose_assignee(PLUMBING, roster, "lottery", DAY)


# -- acceptance timeouts -----------------------------------------------------------------------------------------

def test_default_acceptance_timeout_is_five_minutes():
    policy = AssignmentPolicy.from_config({})
    assert policy.for_department("engineering").accept_timeout_minutes == 5
    roster = Roster.from_config(roster_data())
    assert deadline_for(policy, roster, "engineering", DAY) == DAY + timedelta(minutes=5)


def test_acceptance_timeout_is_configurable_per_department():
    policy = AssignmentPolicy.from_config({"departments": {"cleaning": {"strategy": "grab",
                                                                        "accept_timeout_minutes": 10}}})
    assert policy.for_department("cleaning").strategy == "grab"
    assert policy.for_department("cleaning").accept_timeout_minutes == 10
    assert policy.for_department("engineering").accept_timeout_minutes == 5


def test_acceptance_minutes_count_only_inside_the_working_shift():
    day_only = [ShiftPattern("day", time(7, 0), time(22, 0))]
    # 21:58 local: two minutes tonight, three more from 07:00 tomorrow.
    assigned = datetime(2026, 11, 29, 13, 58, tzinfo=UTC)
    assert acceptance_deadline(assigned, 5, working_shifts=day_only) == datetime(2026, 11, 29, 23, 3,
                                                                                   tzinfo=UTC)
    # Assigned overnight: the clock starts at 07:00.
    assert acceptance_deadline(datetime(2026, 11, 29, 18, 0, tzinfo=UTC), 5, working_shifts=day_only) == \
        datetime(2026, 11, 29, 23, 5, tzinfo=UTC)
    # Inside the shift it is plain minutes.
    assert acceptance_deadline(DAY, 5, working_shifts=day_only) == DAY + timedelta(minutes=5)


def test_on_call_fallbacks_run_on_plain_minutes_even_for_a_day_only_department():
    policy = AssignmentPolicy.from_config({"departments": {"engineering": {"working_shifts": ["day"]}}})
    roster = Roster.from_config(roster_data())
    assigned = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)  # 02:00 local
    assert deadline_for(policy, roster, "engineering", assigned, "on_call") == assigned + timedelta(minutes=5)
    assert deadline_for(policy, roster, "engineering", assigned, "least_loaded") > assigned + timedelta(hours=4)


def test_a_bad_policy_is_refused():
    with pytest.raises(DomainError):
        AssignmentPolicy.from_config({"default": {"accept_timeout_minutes": 0}})
    with pytest.raises(DomainError):
        AssignmentPolicy.from_config({"departments": {"cleaning": {"strategy": "lottery"}}})


def test_load_changes_move_the_least_loaded_choice(roster):
    busy = roster.with_load("tech-ma", +3)
    assert choose_assignee(PLUMBING, busy, "least_loaded", DAY, zone="3").technician_id == "tech-zhou"
    assert replace(busy.technician("tech-ma")).load == 4
