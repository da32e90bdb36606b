from datetime import date, datetime

import pytest

from services.common.domain import DomainError
from services.escalation.domain.calendar import (
    SHANGHAI,
    WorkingCalendar,
    YearCalendar,
    add_working_days,
    complaint_reply_deadline,
)


def sh(y, mo, d, h=10, mi=0):
    return datetime(y, mo, d, h, mi, tzinfo=SHANGHAI)


def test_national_day_2026_follows_the_official_schedule_with_make_up_days():
    cal = WorkingCalendar()
    # chinese-calendar 1.11: Oct 1-7 off; Sep 20 (Sun) and Oct 10 (Sat) are make-up working days.
    assert cal.day(date(2026, 9, 30)).working
    assert [cal.day(date(2026, 10, d)).working for d in range(1, 8)] == [False] * 7
    assert cal.day(date(2026, 10, 8)).working
    assert cal.day(date(2026, 10, 10)).working
    assert cal.day(date(2026, 9, 20)).working
    assert not cal.day(date(2026, 10, 11)).working
    assert cal.day(date(2026, 10, 10)).source == "chinese_calendar"


def test_three_working_days_from_the_eve_of_national_day_land_on_the_make_up_saturday():
    deadline, fallback = add_working_days(sh(2026, 9, 30), 3)
    assert deadline == sh(2026, 10, 10)
    assert not fallback


def test_a_start_on_a_day_off_counts_from_the_next_working_day():
    deadline, _ = add_working_days(sh(2026, 10, 3, 15, 30), 1)
    assert deadline == sh(2026, 10, 9, 0, 0)  # the whole of Oct 8


def test_complaint_reply_is_capped_at_seven_calendar_days_over_the_holiday():
    deadline, fallback = complaint_reply_deadline(sh(2026, 9, 30))
    assert deadline == sh(2026, 10, 7)
    assert not fallback


def test_complaint_reply_in_an_ordinary_week_is_three_working_days():
    deadline, _ = complaint_reply_deadline(sh(2026, 11, 27))  # Friday
    assert deadline == sh(2026, 12, 2)


def test_complaint_on_2026_12_30_without_2027_data_falls_back_and_says_so():
    deadline, fallback = complaint_reply_deadline(sh(2026, 12, 30))
    # Dec 31, then Jan 1 2027 (statutory holiday per `holidays`) and the weekend are skipped: Jan 4, Jan 5.
    assert deadline == sh(2027, 1, 5)
    assert fallback is True


def test_complaint_on_2026_12_30_with_2027_data_loaded_uses_it_without_fallback():
    # Illustrative 2027 data (not the official schedule): New Year on Friday, a make-up Saturday after it.
    y2027 = YearCalendar.from_dict({"year": 2027, "version": 1, "holidays": ["2027-01-01"], "workdays": ["2027-01-02"]})
    cal = WorkingCalendar().load(y2027)
    deadline, fallback = complaint_reply_deadline(sh(2026, 12, 30), cal)
    assert deadline == sh(2027, 1, 4)  # Dec 31, Jan 2, Jan 4
    assert fallback is False


def test_weekdays_fallback_rule_knows_no_holidays():
    cal = WorkingCalendar(fallback_rule="weekdays")
    deadline, fallback = complaint_reply_deadline(sh(2026, 12, 30), cal)
    assert deadline == sh(2027, 1, 4)  # Dec 31, Jan 1, Jan 4
    assert fallback is True


def test_ops_year_data_takes_precedence_over_the_library():
    fixed = YearCalendar(2026, frozenset({date(2026, 10, d) for d in range(1, 9)}),
                         frozenset({date(2026, 9, 20), date(2026, 10, 10)}), version=2)
    cal = WorkingCalendar().load(fixed)
    deadline, _ = add_working_days(sh(2026, 9, 30), 3, cal)
    assert deadline == sh(2026, 10, 12)  # Oct 9, Oct 10, Oct 12
    assert cal.day(date(2026, 10, 8)).source == "ops"


def test_has_data_for_tells_missing_years():
    cal = WorkingCalendar()
    assert cal.has_data_for(2026)
    assert not cal.has_data_for(2027)
    assert cal.load(YearCalendar(2027, frozenset(), frozenset())).has_data_for(2027)


@pytest.mark.parametrize("data, field", [
    ({"year": 2027, "holidays": ["2026-12-31"]}, "holidays"),
    ({"year": 2027, "holidays": ["2027-01-02"], "workdays": ["2027-01-02"]}, "workdays"),
    ({"year": 2027, "workdays": ["2027-01-04"]}, "workdays"),  # a Monday
    ({"year": 2027, "holidays": ["2027-02-30"]}, "holidays"),
    ({"year": "2027"}, "year"),
    ({"year": 2027, "holidays": "2027-01-01"}, "holidays"),
    ({"year": 2027, "extra": 1}, "extra"),
])
def test_bad_year_data_is_refused_naming_the_field(data, field):
    with pytest.raises(DomainError) as exc:
        YearCalendar.from_dict(data)
    assert exc.value.field == field
    assert exc.value.code == "invalid_calendar"


def test_year_data_versions_only_move_forward():
    v1 = YearCalendar(2027, frozenset({date(2027, 1, 1)}), frozenset(), version=1)
    v2 = YearCalendar(2027, frozenset({date(2027, 1, 1), date(2027, 1, 4)}), frozenset(), version=2)
    cal = WorkingCalendar().load(v2)
    with pytest.raises(DomainError) as exc:
        cal.load(v1)
    assert exc.value.code == "stale_calendar_version"
    assert WorkingCalendar.with_years([v2, v1]).years[2027] is v2


def test_year_data_round_trips():
    y = YearCalendar.from_dict({"year": 2027, "version": 3, "holidays": ["2027-01-01"], "workdays": ["2027-01-02"]})
    assert YearCalendar.from_dict(y.to_dict()) == y
