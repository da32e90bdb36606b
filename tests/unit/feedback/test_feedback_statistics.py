"""Statistics on a fixed small data set; every expected figure below is counted by hand from the data."""
import json
from datetime import datetime, UTC
from uuid import UUID

import pytest

from services.common.domain import DomainError
from services.feedback.domain.events import MonthlyReportPublished
from services.feedback.domain.policy import FeedbackPolicy
from services.feedback.domain.statistics import (
    ClockRecord,
    PraiseRecord,
    RequestRecord,
    SatisfactionRecord,
    VisitRecord,
    monthly_report,
    quarterly_report,
)


def t(s):
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


def req(no, pid, cat, ch, at, sub=None, dept=None, bld=None, unit=None, valid=None):
    return RequestRecord(no, pid, cat, ch, t(at), subcategory=sub, department=dept, building=bld, unit=unit,
                         complaint_valid=valid)


REQUESTS = [
    req("R1", "LY", "repair", "phone", "2026-11-02T02:00", "plumbing", "engineering", "3", "3-1502"),
    req("R2", "LY", "repair", "online", "2026-11-10T02:00", "plumbing", "engineering", "3", "3-1502"),
    req("R3", "LY", "repair", "phone", "2026-11-20T02:00", "plumbing", "engineering", "3", "3-1502"),
    req("R4", "LY", "complaint", "visit", "2026-11-05T02:00", "service_attitude", "customer_service", "5",
        "5-0201", valid=True),
    req("R5", "HY", "complaint", "phone", "2026-11-06T02:00", "facility", None, valid=False),
    req("R6", "HY", "consultation", "phone", "2026-11-07T02:00", None, "customer_service"),
    req("R7", "HY", "repair", "phone", "2026-11-08T02:00", "electrical", "engineering", "1", "1-0101"),
    # 23:59 on 31 October in Beijing: October's, not November's
    req("R8", "HY", "repair", "phone", "2026-10-31T15:59", "electrical", "engineering", "1", "1-0101"),
    # 00:30 on 1 December in Beijing
    req("R9", "HY", "repair", "phone", "2026-11-30T16:30", "electrical", "engineering", "1", "1-0101"),
    req("R10", "LY", "complaint", "online", "2026-11-25T02:00", "service_quality", "customer_service", "3",
        "3-1502", valid=True),
    req("R11", "LY", "complaint", "phone", "2026-12-15T02:00", "service_attitude", "customer_service", "5",
        "5-0201", valid=False),
    req("R12", "LY", "repair", "phone", "2027-01-03T02:00", "plumbing", "engineering", "3", "3-1502"),
]

CLOCKS = [
    ClockRecord("R1", "resolution", "met", t("2026-11-02T08:00")),
    ClockRecord("R2", "resolution", "breached", t("2026-11-11T02:00")),
    ClockRecord("R3", "resolution", "met", t("2026-11-20T09:00")),
    ClockRecord("R7", "resolution", "met", t("2026-11-08T09:00")),
    ClockRecord("R3", "return_visit", "breached", t("2026-12-01T00:00")),  # settled in December
    ClockRecord("R10", "return_visit", "running", t("2026-11-26T00:00")),  # not settled: not counted
    ClockRecord("R1", "first_response", "met", t("2026-11-02T02:10")),
    ClockRecord("R2", "first_response", "met", t("2026-11-10T02:10")),
    ClockRecord("R4", "first_response", "breached", t("2026-11-05T03:00")),
    ClockRecord("R5", "first_response", "breached", t("2026-11-06T03:00")),
]

VISITS = [
    VisitRecord("R4", "LY", "valid_complaint", "done", t("2026-11-06T02:00"), t("2026-11-09T02:00"),
                t("2026-11-07T02:00")),
    VisitRecord("R10", "LY", "valid_complaint", "scheduled", t("2026-11-26T02:00"), t("2026-11-29T02:00")),
    VisitRecord("R1", "LY", "sampled", "done", t("2026-11-02T08:00"), t("2026-11-05T08:00"), t("2026-11-06T08:00")),
    VisitRecord("R7", "HY", "paid_service", "failed", t("2026-11-08T09:00"), t("2026-11-11T09:00")),
    VisitRecord("R2", "LY", "sampled", "done", t("2026-10-30T02:00"), t("2026-11-02T02:00"), t("2026-11-01T02:00")),
]

SATISFACTIONS = [
    SatisfactionRecord("R4", "LY", "satisfied", 5, t("2026-11-07T02:00"), "customer_service"),
    SatisfactionRecord("R1", "LY", "basically_satisfied", 4, t("2026-11-06T08:00"), "engineering"),
    SatisfactionRecord("R3", "LY", "unsatisfied", 2, t("2026-11-22T08:00"), "engineering"),
    SatisfactionRecord("R7", "HY", "satisfied", 4, t("2026-11-09T08:00"), "engineering"),
    SatisfactionRecord("R2", "LY", "unsatisfied", 1, t("2026-11-01T00:00"), "engineering"),  # 08:00 Nov 1 Beijing: in
]

PRAISES = [
    PraiseRecord("LY", "engineering", t("2026-11-03T02:00"), "tech-li"),
    PraiseRecord("LY", "engineering", t("2026-11-21T02:00"), "tech-li"),
    PraiseRecord("HY", "security", t("2026-11-15T02:00")),
    PraiseRecord("HY", "security", t("2026-12-02T02:00")),
]

HOUSEHOLDS = {"LY": 400, "HY": 250}
GENERATED = t("2026-12-01T01:00")


def november(property_id=None):
    return monthly_report("2026-11", requests=REQUESTS, clocks=CLOCKS, visits=VISITS, satisfactions=SATISFACTIONS,
                          praises=PRAISES, households=HOUSEHOLDS, policy=FeedbackPolicy(), generated_at=GENERATED,
                          property_id=property_id)


def test_requests_are_counted_by_class_channel_property_and_department_in_beijing_months():
    r = november()
    assert r.requests_total == 8  # R1-R7 and R10; R8 is October's and R9 December's in Beijing time
    assert r.requests_by_class == {"repair": 4, "complaint": 3, "consultation": 1}
    assert r.requests_by_channel == {"phone": 5, "online": 2, "visit": 1}
    assert r.requests_by_property == {"LY": 5, "HY": 3}
    assert r.requests_by_department == {"engineering": 4, "customer_service": 3, "unassigned": 1}


def test_each_clocks_attainment_is_met_over_met_and_breached():
    r = november()
    assert r.clocks == {
        "first_response": {"met": 2, "breached": 2, "attainment": 0.5},
        "resolution": {"met": 3, "breached": 1, "attainment": 0.75},
    }


def test_return_visit_rate_is_done_of_required_against_a_100_percent_target():
    rv = november().return_visits
    assert (rv["required"], rv["done"], rv["done_on_time"], rv["failed"], rv["pending"]) == (4, 2, 1, 1, 1)
    assert rv["rate"] == 0.5 and rv["target"] == 1.0 and rv["meets_target"] is False
    assert rv["by_reason"]["valid_complaint"]["rate"] == 0.5
    assert rv["by_reason"]["sampled"] == {"required": 1, "done": 1, "done_on_time": 0, "failed": 0, "pending": 0,
                                          "rate": 1.0}
    assert rv["by_reason"]["paid_service"]["rate"] == 0.0


def test_satisfaction_distribution_and_rate():
    s = november().satisfaction
    assert s["total"] == 5
    assert s["distribution"] == {"satisfied": 2, "basically_satisfied": 1, "unsatisfied": 2}
    assert s["satisfaction_rate"] == 0.6  # (2 + 1) / 5
    assert s["satisfied_rate"] == 0.4
    assert s["mean_score"] == 3.2  # (5 + 4 + 2 + 4 + 1) / 5


def test_valid_complaint_rate_per_household():
    c = november().complaints
    assert (c["complaints"], c["valid_complaints"], c["households"]) == (3, 2, 650)
    assert c["rate"] == 0.0031  # 2 / 650 = 0.003077
    assert c["meets_target"] is True
    assert c["by_property"] == {"HY": {"valid_complaints": 0, "households": 250, "rate": 0.0},
                                "LY": {"valid_complaints": 2, "households": 400, "rate": 0.005}}


def test_praise_counts():
    p = november().praise
    assert p == {"total": 3, "by_department": {"engineering": 2, "security": 1}, "by_staff": {"tech-li": 2}}


def test_one_property_report_leaves_out_the_others_records():
    r = november("LY")
    assert r.requests_total == 5
    assert r.clocks["resolution"] == {"met": 2, "breached": 1, "attainment": 0.6667}
    assert r.clocks["first_response"] == {"met": 2, "breached": 1, "attainment": 0.6667}
    assert r.return_visits["required"] == 3 and r.return_visits["rate"] == 0.6667
    assert r.satisfaction["distribution"] == {"satisfied": 1, "basically_satisfied": 1, "unsatisfied": 2}
    assert r.complaints["rate"] == 0.005 and list(r.complaints["by_property"]) == ["LY"]
    assert r.praise["total"] == 2


def test_report_is_json_ready_and_csv_carries_the_same_figures():
    r = november()
    assert json.loads(json.dumps(r.to_dict()))["return_visits"]["rate"] == 0.5
    lines = r.to_csv().splitlines()
    assert lines[0] == "section,item,metric,value"
    for expected in ["requests_by_class,repair,requests,4", "clock_attainment,resolution,attainment,0.75",
                     "summary,return_visit_rate,value,0.5", "summary,return_visit_rate,target,1.0",
                     "valid_complaints,LY,rate,0.005", "return_visits,total,required,4",
                     "satisfaction,unsatisfied,count,2", "praise_by_staff,tech-li,praises,2"]:
        assert expected in lines


def test_html_page_is_self_contained_with_inline_svg_charts():
    page = november().to_html()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") >= 8
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert "75.00%" in page  # resolution attainment label
    assert "2026-12-01 09:00" in page  # generated time shown in Beijing time


def test_html_escapes_names_from_the_data():
    evil = [PraiseRecord("LY", "<script>alert(1)</script>", t("2026-11-03T02:00"))]
    page = monthly_report("2026-11", requests=[], praises=evil, households=HOUSEHOLDS, policy=FeedbackPolicy(),
                          generated_at=GENERATED).to_html()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_published_event_carries_the_headline_figures():
    e = november().published(UUID(int=3), now=GENERATED)
    assert e == MonthlyReportPublished(UUID(int=3), "2026-11", None, GENERATED, 8, 0.5, 0.6, 0.0031, 3)


def test_quarterly_recurring_problems_are_ranked_by_count_then_recency():
    q = quarterly_report("2026-Q4", requests=REQUESTS, generated_at=GENERATED)
    got = [(p.rank, p.property_id, p.place, p.subcategory, p.count, p.request_nos) for p in q.recurring]
    assert got == [
        (1, "HY", "1-0101", "electrical", 3, ["R8", "R7", "R9"]),  # last seen 1 Dec, later than R3
        (2, "LY", "3-1502", "plumbing", 3, ["R1", "R2", "R3"]),  # R12 is January's
        (3, "LY", "5-0201", "service_attitude", 2, ["R4", "R11"]),
    ]
    assert "recurring_problems,LY 3 3-1502 · plumbing,count,3" in q.to_csv().splitlines()
    assert q.to_html().count("<svg") == 1
    assert [p["rank"] for p in q.to_dict()["recurring_problems"]] == [1, 2, 3]


def test_bad_periods_are_refused():
    with pytest.raises(DomainError):
        quarterly_report("2026-Q5", requests=[], generated_at=GENERATED)
    with pytest.raises(DomainError):
        monthly_report("2026-13", requests=[], households={}, policy=FeedbackPolicy(), generated_at=GENERATED)
