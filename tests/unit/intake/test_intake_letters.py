"""The letters registry (来函): each kind goes where the company's procedure sends it."""
from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from services.common.contract.registry import dump_data, spec_for
from services.common.domain import DomainError, InvalidTransition
from services.intake.domain.letters import Letter
from services.intake.domain.model import InvalidRequest

NOW = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)


def log(kind: str, **kw) -> Letter:
    base = dict(property_id="LY", kind=kind, received_date="2026-11-28", subject="关于车库照明", logged_by="agent-007",
                now=NOW, sender_name="王五", sender_phone="13812341234")
    base.update(kw)
    return Letter.log(**base)  # type: ignore[arg-type]


def check(event) -> None:
    spec_for(event.event_type).schema().load(dump_data(event.event_type, event.to_dict()))


@pytest.mark.parametrize("kind,route,status", [
    ("report", "request", "to_register"), ("complaint", "cs_assistant", "awaiting_decision"),
    ("praise", "praise_register", "awaiting_praise_record"), ("work", "admin", "forwarded_admin"),
])
def test_each_kind_of_letter_is_routed_where_the_procedure_says(kind, route, status):
    letter = log(kind)
    event: Any = letter.events[-1]
    assert (event.routed_to, letter.status) == (route, status)
    assert event.sender_phone_masked == "138****1234" and "王五" not in repr(event.to_dict())
    check(event)


def test_a_report_letter_becomes_a_letter_channel_request():
    letter = log("report")
    details = letter.request_channel_details()
    assert details == {"kind": "report", "received_date": "2026-11-28", "letter_id": str(letter.letter_id)}
    letter.mark_registered("LY-20261129-000050")
    assert letter.request_no == "LY-20261129-000050" and letter.status == "registered"


def test_the_assistant_decides_whether_a_complaint_letter_is_tracked():
    tracked = log("complaint")
    event = tracked.decide_complaint(track=True, reason="涉及服务质量", by="assistant-02", now=NOW)
    assert event.tracked and tracked.status == "to_register"
    check(event)
    dropped = log("complaint")
    dropped.decide_complaint(track=False, reason="已电话答复", by="assistant-02", now=NOW)
    assert dropped.status == "not_tracked"
    with pytest.raises(InvalidTransition):
        dropped.request_channel_details()
    with pytest.raises(InvalidTransition):
        dropped.decide_complaint(track=True, reason="改主意", by="assistant-02", now=NOW)


def test_only_complaint_letters_are_decided():
    with pytest.raises(DomainError):
        log("report").decide_complaint(track=True, reason="x y", by="assistant-02", now=NOW)


def test_praise_is_recorded_against_staff_or_department():
    letter = log("praise", praised_department="engineering")
    event = letter.record_praise(by="agent-007", now=NOW, staff_id="tech-li")
    assert (event.staff_id, event.department) == ("tech-li", "engineering")
    check(event)
    with pytest.raises(InvalidTransition):
        letter.record_praise(by="agent-007", now=NOW, staff_id="tech-li")


def test_praise_without_anyone_to_praise_is_refused():
    with pytest.raises(InvalidRequest) as err:
        log("praise").record_praise(by="agent-007", now=NOW)
    assert "staff_id" in err.value.errors


def test_bad_letters_are_refused_naming_each_field():
    with pytest.raises(InvalidRequest) as err:
        Letter.log(property_id="ly", kind="poem", received_date=date(2026, 12, 1), subject="", logged_by="agent-007",
                   now=NOW, sender_phone="555")
    assert {"property_id", "kind", "received_date", "subject", "sender_phone"} <= set(err.value.errors)
