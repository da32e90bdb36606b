"""Probable duplicates (linked, not merged) and incident clusters."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.contract.registry import dump_data, spec_for
from services.common.domain import DomainError
from services.intake.domain.duplicates import (
    Candidate,
    ClusterRules,
    DuplicateRules,
    Incident,
    find_cluster,
    find_probable_duplicate,
)

T0 = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)


def cand(no: int, minutes: float = 0, **kw: Any) -> Candidate:
    base: dict[str, Any] = dict(
        request_no=f"LY-20261129-{no:06d}", property_id="LY", registered_at=T0 + timedelta(minutes=minutes),
        category="repair", subcategory="plumbing", building="3", unit=f"3-{1500 + no}")
    base.update(kw)
    return Candidate(**base)


# --- duplicates ---

def test_same_unit_and_class_within_a_day_is_a_probable_duplicate():
    earlier = cand(1, unit="3-1502")
    new = cand(2, minutes=23 * 60, unit="3-1502")
    match = find_probable_duplicate(new, [earlier])
    assert match is not None and (match.duplicate_of, match.reason) == (earlier.request_no, "same_unit_and_class")


def test_same_unit_after_the_window_is_not_a_duplicate():
    assert find_probable_duplicate(cand(2, minutes=24 * 60 + 1, unit="3-1502"), [cand(1, unit="3-1502")]) is None


def test_same_unit_but_another_class_is_not_a_duplicate():
    new = cand(2, minutes=10, unit="3-1502", category="complaint", subcategory="service_attitude")
    assert find_probable_duplicate(new, [cand(1, unit="3-1502")]) is None


def test_the_same_caller_within_a_day_is_a_probable_duplicate_even_elsewhere():
    earlier = cand(1, unit="3-1502", phone="13812341234")
    new = cand(2, minutes=60, unit="5-0101", category="complaint", phone="13812341234")
    match = find_probable_duplicate(new, [earlier])
    assert match is not None and match.reason == "same_caller"


def test_a_chain_of_repeats_links_to_the_first_report():
    first = cand(1, unit="3-1502")
    second = cand(2, minutes=10, unit="3-1502", duplicate_of=first.request_no)
    match = find_probable_duplicate(cand(3, minutes=20, unit="3-1502"), [second, first])
    assert match is not None and match.duplicate_of == first.request_no


def test_cancelled_and_other_property_requests_are_not_duplicates():
    pool = [cand(1, unit="3-1502", status="cancelled"), cand(9, unit="3-1502", property_id="SZ")]
    assert find_probable_duplicate(cand(2, minutes=5, unit="3-1502"), pool) is None


def test_the_duplicate_window_is_configuration():
    rules = DuplicateRules(window=timedelta(hours=1))
    assert find_probable_duplicate(cand(2, minutes=90, unit="3-1502"), [cand(1, unit="3-1502")], rules) is None


# --- clusters ---

def test_three_reports_from_one_building_within_two_hours_form_an_incident():
    pool = [cand(1), cand(2, minutes=30)]
    decision = find_cluster(cand(3, minutes=100), pool)
    assert decision is not None and decision.incident_id is None
    assert decision.members == ("LY-20261129-000001", "LY-20261129-000002", "LY-20261129-000003")
    incident = Incident.form(decision=decision, new=cand(3, minutes=100), now=T0 + timedelta(minutes=100))
    event = incident.events[-1]
    assert event.children_count == 3 and event.request_no == "LY-20261129-000003"
    data = dump_data(event.event_type, event.to_dict())
    assert spec_for(event.event_type).schema().load(data)["children_count"] == 3


def test_two_reports_are_not_yet_an_incident():
    assert find_cluster(cand(2, minutes=10), [cand(1)]) is None


def test_reports_outside_the_window_or_of_another_subclass_or_building_do_not_count():
    pool = [cand(1, minutes=-200), cand(2, subcategory="electrical"), cand(4, building="5")]
    assert find_cluster(cand(3, minutes=10), pool) is None


def test_the_same_public_area_clusters_without_a_building():
    pool = [cand(1, building=None, area="地下车库"), cand(2, building=None, area="地下车库")]
    assert find_cluster(cand(3, minutes=5, building=None, area="地下车库"), pool) is not None


def test_typhoon_reports_cluster_across_the_whole_property():
    kw: dict[str, Any] = dict(category="disaster", subcategory="typhoon")
    pool = [cand(1, building="1", **kw), cand(2, building="2", **kw)]
    assert find_cluster(cand(3, minutes=5, building="7", **kw), pool) is not None


def test_a_later_report_joins_the_existing_incident_and_the_count_grows():
    incident_id = uuid.uuid4()
    pool = [cand(1, incident_id=incident_id), cand(2, incident_id=incident_id), cand(3, incident_id=incident_id)]
    decision = find_cluster(cand(4, minutes=40), pool)
    assert decision is not None and decision.incident_id == incident_id and decision.members == (
        "LY-20261129-000004",)
    incident = Incident(incident_id, "LY", "repair", "plumbing", "3", None, T0,
                        request_nos=[c.request_no for c in pool])
    event = incident.add("LY-20261129-000004", T0 + timedelta(minutes=40))
    assert event is not None and event.children_count == 4 and event.new_request_nos == ["LY-20261129-000004"]
    assert incident.add("LY-20261129-000004", T0 + timedelta(minutes=41)) is None


def test_cluster_thresholds_are_configuration():
    rules = ClusterRules(window=timedelta(minutes=30), min_reports=2)
    assert find_cluster(cand(2, minutes=20), [cand(1)], rules) is not None
    assert find_cluster(cand(2, minutes=40), [cand(1)], rules) is None
    with pytest.raises(DomainError):
        ClusterRules(min_reports=1)
