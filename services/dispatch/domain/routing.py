"""Which department (and whom in it) a request goes to.

The table is data: the caller parses `services/dispatch/routing.yml` (or a property's own table) and hands the
resulting dict to `RoutingTable.from_config`. A rule matches on category, subcategory and property; a key left out
matches anything, and the most specific matching rule wins.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping

from services.common.domain import DomainError

DEPARTMENTS = (
    "engineering", "security", "cleaning", "greening", "customer_service", "finance", "admin", "contractor",
)
# technician: a named person does the work; duty_lead: the department's lead on duty takes charge (emergency
# medical help, per the help-request procedure 4.2); department: the department investigates (complaints).
ASSIGN_TO = ("technician", "duty_lead", "department")


@dataclass(frozen=True)
class Route:
    department: str
    assign_to: str = "technician"
    skill: str | None = None
    rule: str = "default"  # which rule matched, so the work order can say why it went where it went


@dataclass(frozen=True)
class RoutingRule:
    department: str
    assign_to: str = "technician"
    skill: str | None = None
    category: str | None = None
    subcategory: str | None = None
    property_id: str | None = None

    def __post_init__(self) -> None:
        if self.department not in DEPARTMENTS:
            raise DomainError(f"unknown department {self.department!r}", field="department", code="invalid_route")
        if self.assign_to not in ASSIGN_TO:
            raise DomainError(f"unknown assign_to {self.assign_to!r}", field="assign_to", code="invalid_route")
        if self.assign_to == "technician" and not self.skill:
            raise DomainError(
                f"a technician route needs a skill ({self.key_text()})", field="skill", code="invalid_route"
            )

    @property
    def specificity(self) -> int:
        # A subcategory says more than a category, and either says more than a property: a property-wide
        # override must not capture emergency medical help that a global category rule sends to security.
        return (4 if self.subcategory else 0) + (2 if self.category else 0) + (1 if self.property_id else 0)

    @property
    def key(self) -> tuple[str | None, str | None, str | None]:
        return (self.category, self.subcategory, self.property_id)

    def key_text(self) -> str:
        return "/".join(k or "*" for k in self.key)

    def matches(self, category: str, subcategory: str | None, property_id: str | None) -> bool:
        return (
            (self.category is None or self.category == category)
            and (self.subcategory is None or self.subcategory == subcategory)
            and (self.property_id is None or self.property_id == property_id)
        )

    def to_route(self) -> Route:
        return Route(self.department, self.assign_to, self.skill, self.key_text())


def _rule_from(data: Mapping[str, Any]) -> RoutingRule:
    known = {"department", "assign_to", "skill", "category", "subcategory", "property", "property_id"}
    unknown = set(data) - known
    if unknown:
        raise DomainError(f"unknown routing rule keys {sorted(unknown)}", field="rules", code="invalid_route")
    if "department" not in data:
        raise DomainError("a routing rule needs a department", field="department", code="invalid_route")
    return RoutingRule(
        department=str(data["department"]),
        assign_to=str(data.get("assign_to", "technician")),
        skill=data.get("skill"),
        category=data.get("category"),
        subcategory=data.get("subcategory"),
        property_id=data.get("property_id", data.get("property")),
    )


@dataclass(frozen=True)
class RoutingTable:
    rules: tuple[RoutingRule, ...]
    default: RoutingRule

    def __post_init__(self) -> None:
        seen: set[tuple[str | None, str | None, str | None]] = set()
        for rule in self.rules:
            if rule.key in seen:
                raise DomainError(f"routing rule {rule.key_text()} given twice", field="rules", code="invalid_route")
            seen.add(rule.key)

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> RoutingTable:
        """Build from the parsed routing.yml: {"default": {...}, "rules": [{...}, ...]}."""
        default = data.get("default") or {"department": "customer_service", "assign_to": "department"}
        return cls(rules=tuple(_rule_from(r) for r in data.get("rules", ())), default=_rule_from(default))

    def route(self, category: str, subcategory: str | None = None, property_id: str | None = None) -> Route:
        matching = [r for r in self.rules if r.matches(category, subcategory, property_id)]
        if not matching:
            return Route(self.default.department, self.default.assign_to, self.default.skill, "default")
        return max(matching, key=lambda r: r.specificity).to_route()
