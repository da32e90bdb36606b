from __future__ import annotations

from datetime import datetime, UTC

import pytest
from dispatch_helpers import DAY, NIGHT, roster_data

from services.common.domain import DomainError, NotFound
from services.dispatch.domain.roster import Roster


def shift_name(roster: Roster, now: datetime) -> str | None:
    current = roster.current_shift(now)
    return current[0].name if current else None


@pytest.fixture
def roster() -> Roster:
    return Roster.from_config(roster_data())


def test_default_shifts_are_day_0700_to_2200_and_night_2200_to_0700_shanghai(roster):
    at = lambda h, m=0: datetime(2026, 11, 29, h, m, tzinfo=UTC)  # noqa: E731  UTC+8
    assert shift_name(roster, at(13, 59)) == "day"  # 21:59 local
    assert shift_name(roster, at(14, 0)) == "night"  # 22:00 local
    assert shift_name(roster, at(22, 59)) == "night"  # 06:59 local next day
    assert shift_name(roster, at(23, 0)) == "day"  # 07:00 local
    assert roster.is_night(NIGHT) and not roster.is_night(DAY)


def test_on_duty_follows_the_calendar_and_absence(roster):
    assert roster.is_on_duty("tech-li", DAY)
    assert not roster.is_on_duty("tech-li", NIGHT)
    assert not roster.is_on_duty("tech-wang", DAY)  # no shift that day
    assert not roster.with_absent("tech-li", True).is_on_duty("tech-li", DAY)
    assert [t.id for t in roster.on_duty("security", NIGHT)] == ["sec-night-xu"]


def test_a_night_shift_covers_the_small_hours_of_the_next_day(roster):
    three_am = datetime(2026, 11, 29, 19, 0, tzinfo=UTC)  # 2026-11-30 03:00 local
    assert roster.is_on_duty("sec-night-xu", three_am)
    assert roster.duty_lead("security", three_am) == "sec-night-xu"


def test_on_call_can_be_dated_per_night_and_an_absent_on_call_person_is_skipped():
    data = roster_data()
    data["on_call_dated"] = [{"department": "engineering", "date": "2026-11-29", "technician_id": "tech-sun"}]
    roster = Roster.from_config(data)
    assert roster.on_call_for("engineering", NIGHT) == "tech-sun"
    three_am = datetime(2026, 11, 29, 19, 0, tzinfo=UTC)  # still the night of the 29th
    assert roster.on_call_for("engineering", three_am) == "tech-sun"
    assert roster.on_call_for("engineering", datetime(2026, 11, 30, 15, 0, tzinfo=UTC)) == "tech-wang"
    assert roster.with_absent("tech-sun", True).on_call_for("engineering", NIGHT) == "tech-wang"


def test_a_calendar_naming_an_unknown_shift_or_person_is_refused():
    bad_shift = roster_data()
    bad_shift["calendar"] = [{"technician_id": "tech-li", "shift": "evening", "date": "2026-11-29"}]
    with pytest.raises(DomainError):
        Roster.from_config(bad_shift)
    bad_person = roster_data()
    bad_person["calendar"] = [{"technician_id": "ghost", "shift": "day", "date": "2026-11-29"}]
    with pytest.raises(NotFound):
        Roster.from_config(bad_person)


def test_custom_shift_patterns_replace_the_defaults():
    data = roster_data()
    data["shifts"] = [{"name": "day", "start": "08:00", "end": "20:00"}, {"name": "night", "start": "20:00",
                                                                           "end": "08:00"}]
    roster = Roster.from_config(data)
    seven_thirty = datetime(2026, 11, 28, 23, 30, tzinfo=UTC)  # 07:30 local on the 29th
    assert shift_name(roster, seven_thirty) == "night"
    assert not roster.is_on_duty("tech-li", seven_thirty)
