"""Paid services (有偿服务): the price list, quotes, the resident's consent and the fee charged.

Public facilities and public areas are repaired at the company's cost; work inside a resident's own unit is charged
by the price list (《有偿服务收费标准》), and only after the resident has agreed to the quote. Money is integer cents.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from collections.abc import Iterable, Mapping

from services.common.domain import DomainError, NotFound

CONSENT_METHODS = ("signature", "phone", "app", "in_person")


@dataclass(frozen=True)
class PriceItem:
    code: str
    name: str
    unit: str
    price_cents: int

    def __post_init__(self) -> None:
        if not isinstance(self.price_cents, int) or self.price_cents < 0:
            raise DomainError(f"price of {self.code} must be whole cents >= 0", field="price_cents",
                              code="invalid_price")


@dataclass(frozen=True)
class QuoteLine:
    code: str
    name: str
    quantity: int
    unit_price_cents: int

    @property
    def amount_cents(self) -> int:
        return self.quantity * self.unit_price_cents

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "quantity": self.quantity,
                "unit_price_cents": self.unit_price_cents, "amount_cents": self.amount_cents}


@dataclass(frozen=True)
class Quote:
    lines: tuple[QuoteLine, ...]

    @property
    def total_cents(self) -> int:
        return sum(line.amount_cents for line in self.lines)


@dataclass(frozen=True)
class Consent:
    """The resident agreed to a quote of `total_cents`; a later, different quote needs a new consent."""

    total_cents: int
    method: str
    given_at: datetime
    recorded_by: str


@dataclass(frozen=True)
class MaterialUse:
    name: str
    quantity: int
    unit: str = "个"
    amount_cents: int = 0  # what the resident is charged for it; 0 when included in a price-list item

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "quantity": self.quantity, "unit": self.unit, "amount_cents": self.amount_cents}


@dataclass(frozen=True)
class PriceList:
    items: Mapping[str, PriceItem]
    currency: str = "CNY"

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> PriceList:
        """Build from the parsed price_list.yml: {"currency": "CNY", "items": [{code, name, unit, price_cents}]}."""
        items: dict[str, PriceItem] = {}
        for raw in data.get("items", ()):
            item = PriceItem(str(raw["code"]), str(raw["name"]), str(raw.get("unit", "次")), raw["price_cents"])
            if item.code in items:
                raise DomainError(f"price item {item.code} listed twice", field="items", code="invalid_price")
            items[item.code] = item
        return cls(items=items, currency=str(data.get("currency", "CNY")))

    def item(self, code: str) -> PriceItem:
        try:
            return self.items[code]
        except KeyError:
            raise NotFound(f"no price-list item {code!r}", field="code") from None

    def quote(self, lines: Iterable[tuple[str, int]]) -> Quote:
        """A quote for (item code, quantity) pairs, priced from the list."""
        out = []
        for code, quantity in lines:
            if not isinstance(quantity, int) or quantity <= 0:
                raise DomainError(f"quantity of {code} must be a whole number above 0", field="quantity",
                                  code="invalid_quote")
            item = self.item(code)
            out.append(QuoteLine(item.code, item.name, quantity, item.price_cents))
        if not out:
            raise DomainError("a quote needs at least one item", field="items", code="invalid_quote")
        return Quote(tuple(out))


def is_chargeable(paid_service: bool, public_area: bool) -> bool:
    """Only private-unit work flagged as a paid service is charged; public-area work never is."""
    return paid_service and not public_area
