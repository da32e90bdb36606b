"""The inbound contract: how a request enters the platform, over HTTP (POST /requests) or from another
system over AMQP (exchange `property.inbound`, routing key `request.<channel>`).

`(source, external_id)` is the idempotency key: the same pair always means the same request, however
often it is delivered. Reporter name and phone are accepted here and stored by intake only; every event
and API answer without the `pii` scope shows them masked.
"""
from __future__ import annotations

import re
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from services.common.contract.intake import CATEGORIES, CHANNELS, PRIORITIES

MACHINE_CHANNELS = ("iot", "call_centre", "patrol", "online", "email")
PHONE_ERROR = "not a Chinese mobile or landline number"
PHONE = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8}|\+861[3-9]\d{9})$")
CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


class Text(fields.String):
    """A string without NUL or control characters (tabs and newlines allowed), trimmed."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if _CONTROL.search(text):
            raise ValidationError("must not contain NUL or control characters")
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
            raise ValidationError("must be valid Unicode (lone surrogate)")
        return text.strip()


def code(max_len: int, **kwargs: Any) -> Text:
    rules = [validate.Length(min=1, max=max_len), validate.Regexp(CODE, error="letters, digits and _.:- only")]
    return Text(validate=rules, **kwargs)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class ReporterSchema(StrictSchema):
    """The reporter; name and phone are personal data, kept by intake only."""

    kind = fields.String(required=True, validate=validate.OneOf(["resident", "tenant", "visitor", "staff", "system"]))
    name = Text(validate=validate.Length(min=1, max=50), load_default=None, allow_none=True)
    phone = Text(validate=validate.Regexp(PHONE, error=PHONE_ERROR),
                 load_default=None, allow_none=True)


class LetterDetails(StrictSchema):
    kind = fields.String(required=True, validate=validate.OneOf(["report", "complaint", "praise", "work"]))
    received_date = fields.Date(required=True)
    letter_id = fields.UUID(load_default=None, allow_none=True)


class IotDetails(StrictSchema):
    device_id = code(64, required=True)
    reading = fields.Raw(required=True)
    unit_of_measure = Text(validate=validate.Length(max=20), load_default=None, allow_none=True)
    alarm_code = code(40, load_default=None, allow_none=True)


class CallDetails(StrictSchema):
    caller_number = Text(required=True, validate=validate.Regexp(PHONE, error=PHONE_ERROR))
    call_id = code(100, required=True)
    queue = code(40, load_default=None, allow_none=True)


class OnlineDetails(StrictSchema):
    platform = fields.String(validate=validate.OneOf(["app", "wechat", "web"]), load_default=None, allow_none=True)


class EmailDetails(StrictSchema):
    message_id = Text(validate=validate.Length(max=200), load_default=None, allow_none=True)
    subject = Text(validate=validate.Length(max=200), load_default=None, allow_none=True)


class PatrolDetails(StrictSchema):
    inspector = code(64, load_default=None, allow_none=True)
    round_id = code(64, load_default=None, allow_none=True)


class PhoneDetails(StrictSchema):
    line = code(40, load_default=None, allow_none=True)


class VisitDetails(StrictSchema):
    desk = code(40, load_default=None, allow_none=True)


# What each channel keeps besides the common fields (a letter's kind and date, an alarm's device...).
CHANNEL_DETAILS: dict[str, type[Schema]] = {
    "letter": LetterDetails, "iot": IotDetails, "call_centre": CallDetails, "online": OnlineDetails,
    "email": EmailDetails, "patrol": PatrolDetails, "phone": PhoneDetails, "visit": VisitDetails,
}


class SubmitRequestSchema(StrictSchema):
    source = code(40, required=True)
    external_id = code(100, load_default=None, allow_none=True)
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    property_id = Text(required=True, validate=[
        validate.Length(min=1, max=20), validate.Regexp(r"^[A-Z0-9]+$", error="upper-case letters and digits")])
    building = Text(validate=validate.Length(min=1, max=40), load_default=None, allow_none=True)
    unit = Text(validate=validate.Length(min=1, max=40), load_default=None, allow_none=True)
    area = Text(validate=validate.Length(min=1, max=80), load_default=None, allow_none=True)
    reporter = fields.Nested(ReporterSchema, required=True)
    description = Text(required=True, validate=validate.Length(min=1, max=2000))
    agent_id = code(40, load_default=None, allow_none=True)
    category = fields.String(validate=validate.OneOf(CATEGORIES), load_default=None, allow_none=True)
    subcategory = code(40, load_default=None, allow_none=True)
    priority = fields.String(validate=validate.OneOf(PRIORITIES), load_default=None, allow_none=True)
    paid_service = fields.Boolean(load_default=False)
    vip = fields.Boolean(load_default=False)
    compensation_demanded = fields.Boolean(load_default=False)
    channel_details = fields.Dict(keys=fields.String(validate=validate.Length(max=40)), load_default=dict)
    reported_at = fields.AwareDateTime(load_default=None, allow_none=True)

    @validates_schema
    def check_channel_details(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors: dict[str, Any] = {}
        channel = data.get("channel")
        if channel in CHANNEL_DETAILS:
            try:
                data["channel_details"] = CHANNEL_DETAILS[channel]().load(data.get("channel_details") or {})
            except ValidationError as exc:
                errors["channel_details"] = exc.messages
        if not (data.get("unit") or data.get("area")):
            errors["unit"] = ["unit or area is required"]
        if channel in MACHINE_CHANNELS and data.get("source") != "desk" and not data.get("external_id"):
            errors["external_id"] = ["required for requests from other systems (the idempotency key)"]
        if errors:
            raise ValidationError(errors)


INBOUND_EXAMPLE = {
    "source": "iot-gateway",
    "external_id": "alarm-20261129-0001",
    "channel": "iot",
    "property_id": "LY",
    "building": "3",
    "area": "3栋地下泵房",
    "reporter": {"kind": "system"},
    "description": "泵房水位超高报警",
    "channel_details": {"device_id": "pump-3-level", "reading": 1.82, "unit_of_measure": "m"},
}


def load_inbound(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError({"_body": ["a request must be a JSON object"]})
    return SubmitRequestSchema().load(body)
