"""The Request aggregate: registration, validation, ownership, acknowledgement, desk answers, lifecycle."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.contract.registry import dump_data, spec_for
from services.common.domain import DomainError, InvalidTransition
from services.intake.domain import events as ev
from services.intake.domain.classification import Classification
from services.intake.domain.model import (
    InvalidRequest,
    Reporter,
    Request,
    allowed_transition,
    mask_name,
    mask_phone,
    normalise_phone,
    validate_channel_details,
)

NOW = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
PLUMBING = Classification("repair", "plumbing", "urgent", False, 0.9, ("水管", "爆了"))
CONSULT = Classification("consultation", None, "normal", False, 0.8, ("物业费", "怎么"))


def register(**overrides: Any) -> Request:
    kwargs: dict[str, Any] = dict(
        request_no="LY-20261129-000042", property_id="LY", channel="phone",
        description="3栋1502厨房水管爆了，水漫到客厅",
        reporter=Reporter.create("resident", "张三", "13812341234"), classification=PLUMBING,
        registered_by="agent-007", now=NOW, building="3", unit="3-1502")
    kwargs.update(overrides)
    return Request.register(**kwargs)


def assert_matches_contract(event) -> None:
    data = dump_data(event.event_type, event.to_dict())
    spec_for(event.event_type).schema().load(data)


# --- personal data ---

@pytest.mark.parametrize("raw,normal", [
    ("13812341234", "13812341234"), ("+86 138 1234 1234", "13812341234"), ("0755-12345678", "0755-12345678"),
    ("010-1234567", "010-1234567"),
])
def test_chinese_mobile_and_landline_numbers_are_accepted(raw, normal):
    assert normalise_phone(raw) == normal


@pytest.mark.parametrize("bad", ["12812341234", "1381234123", "138123412345", "abc", "755-12345678", ""])
def test_other_phone_numbers_are_refused(bad):
    with pytest.raises(DomainError) as err:
        normalise_phone(bad)
    assert err.value.field == "phone"


def test_phone_and_name_are_masked_for_other_systems():
    assert mask_phone("13812341234") == "138****1234"
    assert mask_phone("0755-12345678") == "075****5678"
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_name("John Smith") == "J*** S****"


# --- registration ---

def test_registering_records_the_request_with_the_registering_agent_as_owner():
    req = register()
    assert req.status == "registered"
    assert req.owner_agent == "agent-007"
    assert [type(e) for e in req.events] == [ev.RequestRegistered, ev.RequestClassified]
    registered: Any = req.events[0]
    assert registered.owner_agent == "agent-007"
    assert (registered.category, registered.subcategory, registered.priority) == ("repair", "plumbing", "urgent")


def test_events_carry_only_the_masked_phone_and_never_the_name():
    req = register()
    for event in req.events:
        text = repr(event.to_dict())
        assert "13812341234" not in text and "张三" not in text
    first: Any = req.events[0]
    assert first.reporter_phone_masked == "138****1234"


def test_registration_events_match_the_contract():
    for event in register().events:
        assert_matches_contract(event)


def test_every_bad_field_is_named_at_once():
    with pytest.raises(InvalidRequest) as err:
        register(request_no="XX-1", channel="fax", description="", unit=None, registered_by="")
    assert {"request_no", "channel", "description", "unit", "registered_by"} <= set(err.value.errors)


def test_a_number_of_another_property_is_refused():
    with pytest.raises(InvalidRequest) as err:
        register(request_no="SZ-20261129-000001")
    assert "request_no" in err.value.errors


def test_oversized_and_control_character_text_is_refused():
    with pytest.raises(InvalidRequest) as err:
        register(description="漏" * 4001)
    assert "description" in err.value.errors
    with pytest.raises(InvalidRequest) as err:
        register(description="水管\x00爆了")
    assert "description" in err.value.errors


def test_a_public_area_is_enough_without_a_unit():
    req = register(unit=None, building=None, area="北门岗亭")
    assert req.area == "北门岗亭"


def test_reporter_with_a_bad_phone_is_refused_naming_the_field():
    with pytest.raises(InvalidRequest) as err:
        Reporter.create("resident", "张三", "1234")
    assert "reporter.phone" in err.value.errors
    with pytest.raises(InvalidRequest) as err:
        Reporter.create("landlord")
    assert "reporter.kind" in err.value.errors


# --- channels ---

def test_letter_needs_its_kind_and_received_date():
    assert validate_channel_details("letter", {"kind": "report", "received_date": "2026-11-28"}, NOW) == {
        "kind": "report", "received_date": "2026-11-28"}
    with pytest.raises(InvalidRequest) as err:
        validate_channel_details("letter", {"kind": "poem"}, NOW)
    assert {"channel_details.kind", "channel_details.received_date"} == set(err.value.errors)


def test_a_letter_received_tomorrow_is_refused():
    with pytest.raises(InvalidRequest) as err:
        validate_channel_details("letter", {"kind": "report", "received_date": "2026-11-30"}, NOW)
    assert "channel_details.received_date" in err.value.errors


def test_iot_alarm_needs_device_and_reading():
    assert validate_channel_details("iot", {"device_id": "smoke-3-15", "reading": 0.42}, NOW)["reading"] == 0.42
    with pytest.raises(InvalidRequest) as err:
        validate_channel_details("iot", {"device_id": "smoke-3-15"}, NOW)
    assert set(err.value.errors) == {"channel_details.reading"}


def test_call_centre_needs_a_valid_caller_number_and_call_id():
    with pytest.raises(InvalidRequest) as err:
        validate_channel_details("call_centre", {"caller_number": "12345"}, NOW)
    assert set(err.value.errors) == {"channel_details.caller_number", "channel_details.call_id"}


def test_unknown_channel_fields_are_refused():
    with pytest.raises(InvalidRequest) as err:
        validate_channel_details("phone", {"device_id": "x"}, NOW)
    assert "channel_details.device_id" in err.value.errors


def test_call_centre_caller_number_is_masked_in_the_event():
    req = register(channel="call_centre", reporter=Reporter.create("resident"),
                   channel_details={"caller_number": "13912345678", "call_id": "cc-991"})
    registered: Any = req.events[0]
    assert registered.channel_details["caller_number"] == "139****5678"
    assert registered.reporter_phone_masked == "139****5678"
    assert_matches_contract(registered)


def test_online_requests_must_be_acknowledged_and_phone_ones_need_not():
    assert register(channel="online").acknowledgement_required is True
    assert register().acknowledgement_required is False
    online: Any = register(channel="online").events[0]
    assert online.acknowledgement_required is True


# --- classification override ---

def test_agent_override_keeps_both_classifications():
    req = register(classification=CONSULT)
    event = req.reclassify(category="repair", subcategory="plumbing", priority="urgent", by="agent-007",
                           reason="住户补充说明已经漏水", now=NOW)
    assert req.auto_classification == CONSULT
    assert req.classification.category == "repair" and req.classification.source == "agent"
    assert (event.previous_category, event.category, event.priority) == ("consultation", "repair", "urgent")
    assert_matches_contract(event)


def test_reclassification_without_a_reason_is_refused():
    req = register()
    with pytest.raises(InvalidRequest) as err:
        req.reclassify(category="complaint", by="agent-007", reason=" ", now=NOW)
    assert "reason" in err.value.errors


# --- first-contact ownership ---

def test_handover_moves_ownership_and_is_on_later_events():
    req = register()
    event = req.hand_over(to_agent="agent-012", reason="交接班", by="agent-007", now=NOW + timedelta(hours=8))
    assert req.owner_agent == "agent-012"
    assert (event.from_agent, event.to_agent) == ("agent-007", "agent-012")
    assert_matches_contract(event)
    closed = req.close(by="agent-012", now=NOW + timedelta(hours=9))
    assert closed.owner_agent == "agent-012"


def test_handover_without_a_reason_is_refused_and_ownership_stays():
    req = register()
    with pytest.raises(InvalidRequest):
        req.hand_over(to_agent="agent-012", reason="", by="agent-007", now=NOW)
    assert req.owner_agent == "agent-007"


def test_handover_to_the_current_owner_is_refused():
    with pytest.raises(DomainError):
        register().hand_over(to_agent="agent-007", reason="交接班", by="agent-007", now=NOW)


def test_a_closed_request_cannot_be_handed_over():
    req = register()
    req.close(by="agent-007", now=NOW)
    with pytest.raises(InvalidTransition):
        req.hand_over(to_agent="agent-012", reason="交接班", by="agent-007", now=NOW)


# --- acknowledgement ---

def test_acknowledgement_records_how_and_the_promised_time():
    req = register(channel="online")
    event = req.acknowledge(how="sms", promised_at=NOW + timedelta(minutes=30), by="agent-007", now=NOW)
    assert req.status == "acknowledged"
    assert req.acknowledgement is not None and req.acknowledgement.promised_at == NOW + timedelta(minutes=30)
    assert_matches_contract(event)


def test_a_second_acknowledgement_revises_the_promise():
    req = register()
    req.acknowledge(how="phone", promised_at=NOW + timedelta(hours=1), by="agent-007", now=NOW)
    req.acknowledge(how="phone", promised_at=NOW + timedelta(hours=3), by="agent-007", now=NOW)
    assert len(req.acknowledgements) == 2
    assert req.acknowledgement is not None and req.acknowledgement.promised_at == NOW + timedelta(hours=3)


def test_sms_acknowledgement_needs_a_phone_on_record():
    req = register(reporter=Reporter.create("visitor", "李四"))
    with pytest.raises(InvalidRequest) as err:
        req.acknowledge(how="sms", promised_at=NOW + timedelta(hours=1), by="agent-007", now=NOW)
    assert "how" in err.value.errors


def test_a_promise_in_the_past_is_refused():
    with pytest.raises(InvalidRequest) as err:
        register().acknowledge(how="phone", promised_at=NOW - timedelta(minutes=1), by="agent-007", now=NOW)
    assert "promised_at" in err.value.errors


# --- answered at the desk ---

def test_a_consultation_answered_at_the_desk_is_closed_with_the_answer():
    req = register(classification=CONSULT, description="物业费怎么交")
    answered, closed = req.answer_at_desk(answer="可在APP或前台缴纳", by="agent-007", now=NOW)
    assert req.status == "closed" and req.closed_reason == "answered_at_desk"
    assert isinstance(answered, ev.RequestAnsweredAtDesk) and answered.answer == "可在APP或前台缴纳"
    assert isinstance(closed, ev.RequestClosed) and closed.closed_reason == "answered_at_desk"
    for e in (answered, closed):
        assert_matches_contract(e)


def test_only_a_consultation_is_answered_at_the_desk():
    with pytest.raises(DomainError) as err:
        register().answer_at_desk(answer="好的", by="agent-007", now=NOW)
    assert err.value.code == "not_consultation"


def test_an_unanswerable_consultation_goes_on_as_a_normal_request():
    planned = Classification("consultation", None, "planned", False, 0.5, ("装修",))
    req = register(classification=planned, description="下周想咨询装修的事")
    event = req.refer_consultation(note="需主管答复", by="agent-007", now=NOW)
    assert req.is_open and req.classification.priority == "normal" and event.priority == "normal"
    assert req.auto_classification.priority == "planned"
    with pytest.raises(DomainError):
        req.answer_at_desk(answer="x", by="agent-007", now=NOW)
    assert_matches_contract(event)


# --- lifecycle ---

@pytest.mark.parametrize("previous,current,ok", [
    ("registered", "acknowledged", True), ("acknowledged", "acknowledged", True),
    ("registered", "closed", True), ("acknowledged", "cancelled", True),
    ("closed", "acknowledged", False), ("cancelled", "closed", False), ("closed", "closed", False),
    ("registered", "registered", False),
])
def test_the_transition_table(previous, current, ok):
    assert allowed_transition(previous, current) is ok


def test_cancel_needs_a_reason_and_ends_the_request():
    req = register()
    with pytest.raises(InvalidRequest):
        req.cancel(reason="", by="agent-007", now=NOW)
    event = req.cancel(reason="住户已自行修好", by="agent-007", now=NOW)
    assert req.status == "cancelled"
    assert_matches_contract(event)
    with pytest.raises(InvalidTransition):
        req.close(by="agent-007", now=NOW)


def test_a_closed_request_cannot_be_acknowledged_or_reclassified():
    req = register()
    event = req.close(by="agent-007", now=NOW)
    assert_matches_contract(event)
    with pytest.raises(InvalidTransition):
        req.acknowledge(how="phone", promised_at=NOW + timedelta(hours=1), by="agent-007", now=NOW)
    with pytest.raises(InvalidTransition):
        req.reclassify(category="complaint", by="agent-007", reason="误分类", now=NOW)


def test_a_probable_duplicate_is_linked_not_merged():
    req = register(request_no="LY-20261129-000043")
    event = req.link_duplicate(duplicate_of="LY-20261129-000042", reason="same_unit_and_class", now=NOW)
    assert req.duplicate_of == "LY-20261129-000042" and req.is_open
    assert_matches_contract(event)
    with pytest.raises(DomainError):
        req.link_duplicate(duplicate_of="LY-20261129-000040", reason="same_caller", now=NOW)


def test_a_request_cannot_duplicate_itself_or_another_property():
    req = register()
    for other in ("LY-20261129-000042", "SZ-20261129-000001"):
        with pytest.raises(DomainError):
            req.link_duplicate(duplicate_of=other, reason="agent", now=NOW)


def test_naive_times_are_refused():
    with pytest.raises(ValueError):
        register(now=datetime(2026, 11, 29, 12, 0))
