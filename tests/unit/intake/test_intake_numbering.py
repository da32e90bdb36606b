"""Request numbers: LY-20261129-000042, per property, by Beijing date, sortable."""
from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.common.domain import DomainError
from services.intake.domain.numbering import RequestNo, format_request_no, local_date, parse_request_no


def test_the_number_shows_property_local_date_and_a_six_digit_sequence():
    assert format_request_no("LY", date(2026, 11, 29), 42) == "LY-20261129-000042"


def test_a_number_parses_back_to_its_parts():
    assert parse_request_no("LY-20261129-000042") == RequestNo("LY", date(2026, 11, 29), 42)
    assert str(parse_request_no("LY-20261129-000042")) == "LY-20261129-000042"


def test_the_day_rolls_over_at_midnight_beijing_time_not_utc():
    assert local_date(datetime(2026, 11, 28, 15, 59, tzinfo=UTC)) == date(2026, 11, 28)
    assert local_date(datetime(2026, 11, 28, 16, 0, tzinfo=UTC)) == date(2026, 11, 29)


def test_numbers_of_one_property_sort_as_text_in_time_order():
    issued = [format_request_no("LY", date(2026, 11, 28), 999), format_request_no("LY", date(2026, 11, 29), 1),
              format_request_no("LY", date(2026, 11, 29), 2), format_request_no("LY", date(2026, 11, 29), 10),
              format_request_no("LY", date(2026, 12, 1), 3)]
    assert sorted(issued) == issued
    assert sorted(issued, key=parse_request_no) == issued


def test_numbers_are_unique_per_property_day_and_sequence():
    numbers = {format_request_no(p, date(2026, 11, 29), s) for p in ("LY", "SZ1") for s in range(1, 201)}
    assert len(numbers) == 400


@pytest.mark.parametrize("prop,seq", [("ly", 1), ("L", 1), ("LY-1", 1), ("LY", 0), ("LY", 1_000_000), ("LY", True)])
def test_bad_property_codes_and_sequences_are_refused(prop, seq):
    with pytest.raises(DomainError):
        format_request_no(prop, date(2026, 11, 29), seq)


@pytest.mark.parametrize("bad", ["", "LY-2026112-000042", "LY-20261329-000042", "LY-20261129-000000",
                                 "ly-20261129-000042", "LY-20261129-42"])
def test_malformed_numbers_are_refused(bad):
    with pytest.raises(DomainError) as err:
        parse_request_no(bad)
    assert err.value.field == "request_no"
