from datetime import datetime, timedelta, UTC
from uuid import UUID

import pytest

from services.common.domain import DomainError, InvalidTransition
from services.feedback.domain.policy import FeedbackPolicy
from services.feedback.domain.praise import record_praise
from services.feedback.domain.surveys import SatisfactionSurvey, ServiceRating, survey_overdue

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
POLICY = FeedbackPolicy()


def test_praise_of_a_staff_member_is_recorded_against_them_and_their_department():
    p, e = record_praise(property_id="LY", department="engineering", staff_id="tech-li", channel="letter",
                         summary=" 半夜上门修水管 ", received_at=T0 - timedelta(days=1), recorded_by="cc-zhao",
                         now=T0, letter_id="LTR-1", praise_id=UUID(int=4))
    assert (e.target_kind, e.staff_id, e.department, e.summary, e.letter_id) == (
        "staff", "tech-li", "engineering", "半夜上门修水管", "LTR-1")
    assert p.praise_id == e.praise_id == UUID(int=4)


def test_praise_of_a_department_and_bad_praise_records():
    _, e = record_praise(property_id="LY", department="security", channel="phone", summary="巡逻认真",
                         received_at=T0, recorded_by="cc-zhao", now=T0)
    assert e.target_kind == "department" and e.staff_id is None
    with pytest.raises(DomainError) as exc:
        record_praise(property_id="LY", department="", channel="phone", summary="x", received_at=T0,
                      recorded_by="cc", now=T0)
    assert exc.value.field == "department"
    with pytest.raises(DomainError) as exc:
        record_praise(property_id="LY", department="security", channel="pigeon", summary="x", received_at=T0,
                      recorded_by="cc", now=T0)
    assert exc.value.field == "channel"


def survey():
    return SatisfactionSurvey.open(property_id="LY", period="2026", households_total=3, now=T0, policy=POLICY,
                                   survey_id=UUID(int=8))


def test_survey_results_per_service_and_close_event():
    s = survey()
    s.answer(unit="1-101", now=T0, ratings={"water": ServiceRating("satisfied", 5),
                                            "power": ServiceRating("unsatisfied", 2)})
    s.answer(unit="1-102", now=T0, ratings={"water": ServiceRating("unsatisfied", 1),
                                            "power": ServiceRating("basically_satisfied")})
    # answering again replaces the household's answer rather than counting twice
    s.answer(unit="1-102", now=T0, ratings={"water": ServiceRating("basically_satisfied", 3),
                                            "power": ServiceRating("basically_satisfied")})
    water = next(r for r in s.results() if r.service == "water")
    assert (water.responses, water.satisfied, water.basically_satisfied, water.unsatisfied) == (2, 1, 1, 0)
    assert water.satisfaction_rate == 1.0 and water.mean_score == 4.0
    greening = next(r for r in s.results() if r.service == "greening")
    assert greening.responses == 0 and greening.satisfaction_rate is None
    e = s.close(now=T0 + timedelta(days=20))
    assert e.responses == 2 and e.response_rate == 0.6667
    assert [r["service"] for r in e.results] == ["power", "water", "security", "cleaning", "greening", "repairs"]
    assert e.results[0]["satisfaction_rate"] == 0.5
    with pytest.raises(InvalidTransition):
        s.answer(unit="1-103", now=T0, ratings={"water": ServiceRating("satisfied")})
    a = s.record_action(service="power", description="配电房改造,公示停电计划", owner_department="engineering",
                        now=T0 + timedelta(days=21))
    assert a.service == "power" and s.actions[0].action_id == a.action_id


def test_survey_refuses_unknown_services_and_more_answers_than_households():
    s = survey()
    with pytest.raises(DomainError):
        s.answer(unit="1-101", now=T0, ratings={"parking": ServiceRating("satisfied")})
    for u in ("a", "b", "c"):
        s.answer(unit=u, now=T0, ratings={"water": ServiceRating("satisfied")})
    with pytest.raises(DomainError):
        s.answer(unit="d", now=T0, ratings={"water": ServiceRating("satisfied")})


def test_a_survey_is_owed_at_least_yearly():
    assert survey_overdue(None, T0, POLICY)
    assert not survey_overdue(T0 - timedelta(days=300), T0, POLICY)
    assert survey_overdue(T0 - timedelta(days=366), T0, POLICY)
