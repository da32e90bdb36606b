from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.common.domain import DomainError
from services.dispatch.domain.routing import RoutingTable

ROUTING_YML = Path(__file__).resolve().parents[3] / "services" / "dispatch" / "routing.yml"


@pytest.fixture(scope="module")
def table() -> RoutingTable:
    return RoutingTable.from_config(yaml.safe_load(ROUTING_YML.read_text(encoding="utf-8")))


@pytest.mark.parametrize(
    ("category", "subcategory", "department", "assign_to", "skill"),
    [
        ("emergency_medical", None, "security", "duty_lead", None),
        ("repair", "plumbing", "engineering", "technician", "plumbing"),
        ("repair", "lift", "engineering", "technician", "lift"),
        ("repair", "something_new", "engineering", "technician", "general_repair"),
        ("repair", None, "engineering", "technician", "general_repair"),
        ("repair", "cleaning", "cleaning", "technician", "cleaning"),
        ("complaint", "facility", "engineering", "department", None),
        ("complaint", "service_attitude", "customer_service", "department", None),
        ("complaint", None, "customer_service", "department", None),
        ("consultation", "fees", "finance", "department", None),
        ("security_incident", "theft", "security", "duty_lead", None),
        ("disaster", "flood", "engineering", "technician", "plumbing"),
        ("disaster", "typhoon", "security", "duty_lead", None),
        ("other", "greening", "greening", "technician", "greening"),
        ("other", "letter", "admin", "department", None),
        ("unheard_of", None, "customer_service", "department", None),
    ],
)
def test_default_table_routes_each_class_to_its_department(table, category, subcategory, department, assign_to,
                                                            skill):
    route = table.route(category, subcategory, "LY")
    assert (route.department, route.assign_to, route.skill) == (department, assign_to, skill)


def test_a_complaint_never_goes_straight_to_a_technician(table):
    for sub in (None, "facility", "service_attitude", "service_quality", "sudden_event", "other"):
        assert table.route("complaint", sub).assign_to == "department"


def test_most_specific_rule_wins_and_a_property_override_applies_only_to_its_property():
    table = RoutingTable.from_config({"rules": [
        {"category": "repair", "department": "engineering", "skill": "general_repair"},
        {"category": "repair", "property": "HX", "department": "contractor", "skill": "general_repair"},
        {"category": "repair", "subcategory": "lift", "department": "engineering", "skill": "lift"},
        {"category": "repair", "subcategory": "lift", "property": "HX", "department": "contractor", "skill": "lift"},
    ]})
    assert table.route("repair", "plumbing", "LY").department == "engineering"
    assert table.route("repair", "plumbing", "HX").department == "contractor"
    assert table.route("repair", "lift", "LY").department == "engineering"
    hx_lift = table.route("repair", "lift", "HX")
    assert (hx_lift.department, hx_lift.rule) == ("contractor", "repair/lift/HX")


def test_a_property_wide_rule_does_not_capture_emergency_medical_help():
    table = RoutingTable.from_config({"rules": [
        {"category": "emergency_medical", "department": "security", "assign_to": "duty_lead"},
        {"property": "HX", "department": "customer_service", "assign_to": "department"},
    ]})
    assert table.route("emergency_medical", None, "HX").department == "security"
    assert table.route("consultation", None, "HX").department == "customer_service"


def test_no_matching_rule_falls_back_to_the_default():
    table = RoutingTable.from_config({"default": {"department": "admin", "assign_to": "department"}, "rules": []})
    route = table.route("repair", "plumbing", "LY")
    assert (route.department, route.rule) == ("admin", "default")


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ([{"category": "repair", "department": "plumbers", "skill": "x"}], "department"),
        ([{"category": "repair", "department": "engineering"}], "skill"),
        ([{"category": "repair", "department": "engineering", "assign_to": "anyone", "skill": "x"}], "assign_to"),
        ([{"category": "repair", "department": "engineering", "skill": "x"},
          {"category": "repair", "department": "cleaning", "skill": "y"}], "rules"),
        ([{"category": "repair", "dept": "engineering"}], "rules"),
    ],
)
def test_a_bad_table_is_refused_naming_the_field(rules, field):
    with pytest.raises(DomainError) as exc:
        RoutingTable.from_config({"rules": rules})
    assert exc.value.field == field
