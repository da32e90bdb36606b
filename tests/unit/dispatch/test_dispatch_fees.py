from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from dispatch_helpers import DAY, last_event, make_order

from services.common.domain import DomainError, NotFound
from services.dispatch.domain.fees import MaterialUse, PriceList

PRICE_YML = Path(__file__).resolve().parents[3] / "services" / "dispatch" / "price_list.yml"


@pytest.fixture(scope="module")
def prices() -> PriceList:
    return PriceList.from_config(yaml.safe_load(PRICE_YML.read_text(encoding="utf-8")))


def t(minutes: int):
    return DAY + timedelta(minutes=minutes)


def test_a_quote_is_priced_from_the_list_in_whole_cents(prices):
    quote = prices.quote([("pipe_joint", 2), ("drain_unblock", 1)])
    assert quote.total_cents == 2 * 4000 + 8000
    with pytest.raises(NotFound):
        prices.quote([("gold_tap", 1)])
    with pytest.raises(DomainError):
        prices.quote([("pipe_joint", 0)])


def test_public_area_work_is_never_charged_even_when_flagged_paid():
    wo = make_order(unit=None, paid=True)
    assert not wo.paid_service
    wo.assign("tech-li", strategy="least_loaded", reason="r", by="system", now=t(0))
    wo.accept("tech-li", now=t(1))  # no consent needed
    wo.depart(by="tech-li", now=t(2))
    wo.arrive(by="tech-li", now=t(3))
    with pytest.raises(DomainError) as exc:
        wo.resolve("换灯", by="tech-li", now=t(4), fee_cents=2000)
    assert exc.value.code == "not_paid_service"
    wo.resolve("换灯", by="tech-li", now=t(4))
    assert wo.fee_cents == 0 and last_event(wo).paid_service is False


def test_paid_private_work_cannot_be_accepted_or_grabbed_before_the_resident_consents(prices):
    wo = make_order(paid=True)
    wo.assign("tech-li", strategy="least_loaded", reason="r", by="system", now=t(0))
    with pytest.raises(DomainError) as exc:
        wo.accept("tech-li", now=t(1))
    assert exc.value.code == "consent_required" and wo.state == "assigned"
    with pytest.raises(DomainError):
        wo.record_consent(method="phone", by="agent-007", now=t(1))  # nothing to consent to yet
    wo.issue_quote(prices.quote([("pipe_joint", 1)]), by="agent-007", now=t(1))
    with pytest.raises(DomainError):
        wo.accept("tech-li", now=t(2))
    wo.record_consent(method="phone", by="agent-007", now=t(2))
    wo.accept("tech-li", now=t(3))
    assert wo.state == "accepted"

    grabbed = make_order(paid=True)
    grabbed.offer(["tech-li"], by="system", now=t(0))
    with pytest.raises(DomainError) as grab_exc:
        grabbed.grab("tech-li", now=t(1))
    assert grab_exc.value.code == "consent_required"


def test_a_new_quote_with_a_different_total_needs_consent_again_and_the_fee_is_capped(prices):
    wo = make_order(paid=True)
    wo.issue_quote(prices.quote([("pipe_joint", 1)]), by="agent-007", now=t(0))
    wo.record_consent(method="signature", by="agent-007", now=t(0))
    wo.assign("tech-li", strategy="least_loaded", reason="r", by="system", now=t(0))
    wo.accept("tech-li", now=t(1))
    wo.depart(by="tech-li", now=t(2))
    wo.arrive(by="tech-li", now=t(3))
    wo.issue_quote(prices.quote([("pipe_joint", 2)]), by="tech-li", now=t(4))
    with pytest.raises(DomainError) as exc:
        wo.resolve("换两个接头", by="tech-li", now=t(5))
    assert exc.value.code == "consent_required"
    wo.record_consent(method="signature", by="tech-li", now=t(6))
    with pytest.raises(DomainError) as over:
        wo.resolve("换两个接头", by="tech-li", now=t(7), fee_cents=9000)
    assert over.value.code == "fee_exceeds_consent"
    wo.resolve("换两个接头", by="tech-li", now=t(8),
               materials=[MaterialUse("铜接头", 2, "个", 0), MaterialUse("生料带", 1, "卷", 0)])
    resolved = last_event(wo)
    assert (resolved.paid_service, resolved.fee_cents) == (True, 8000)
    assert resolved.materials[0] == {"name": "铜接头", "quantity": 2, "unit": "个", "amount_cents": 0}


def test_free_work_is_not_quoted():
    wo = make_order(paid=False)
    with pytest.raises(DomainError):
        wo.issue_quote(PriceList.from_config({"items": [{"code": "x", "name": "x", "price_cents": 1}]}).quote(
            [("x", 1)]), by="agent-007", now=t(0))


def test_prices_must_be_whole_cents():
    with pytest.raises(DomainError):
        PriceList.from_config({"items": [{"code": "x", "name": "x", "price_cents": 12.5}]})
