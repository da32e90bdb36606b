"""The inbound contract: how a request enters the platform, over HTTP (POST /requests) or from another
system over AMQP (exchange `property.inbound`, routing key `request.<channel>`).

`(source, external_id)` is the idempotency key: the same pair always means the same request, however
often it is delivered. Reporter name and phone are accepted here and stored by intake only; every event
and API answer without the `pii` scope shows them masked.
"""
from __future__ import annotations

import functools
import math
import re
from datetime import UTC, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from services.common.contract.intake import CATEGORIES, CHANNELS, PRIORITIES
from services.common.contract.registry import lean_load

MACHINE_CHANNELS = ("iot", "call_centre", "patrol", "online", "email")
PHONE_ERROR = "not a Chinese mobile or landline number"
# ASCII only: `\d` alone also matches full-width and Arabic-Indic digits, which would store a number that no
# duplicate or repeat-caller lookup ever matches.
PHONE = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8}|\+861[3-9]\d{9})$", re.ASCII)
CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
# C0 and C1 controls (tab, LF, CR allowed): never in a resident's text, and C1 is what UTF-8 read as Latin-1 becomes.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
# Times outside these bounds are typing errors or attacks; they also overflow UTC at the calendar's ends.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class Text(fields.String):
    """A string without NUL or control characters (tabs and newlines allowed), trimmed."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if _CONTROL.search(text):
            raise ValidationError("must not contain NUL or control characters")
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
            raise ValidationError("must be valid Unicode (lone surrogate)")
        return text.strip()


class BoundedAwareDateTime(fields.AwareDateTime):
    """An ISO 8601 time with its offset, between EARLIEST and LATEST."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        parsed = super()._deserialize(value, attr, data, **kwargs)
        try:
            in_utc = parsed.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:59:59-14:00 is past the last representable UTC instant
            raise ValidationError("out of range") from None
        if not EARLIEST <= in_utc < LATEST:
            raise ValidationError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
        return parsed


class ClampedAwareDateTime(fields.AwareDateTime):
    """A time filter: any ISO 8601 time with its offset, brought into EARLIEST..LATEST (in UTC). A filter from
    the year 8698 simply finds nothing; refusing it would refuse a well-formed query."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        parsed = super()._deserialize(value, attr, data, **kwargs)
        try:
            in_utc = parsed.astimezone(UTC)
        except OverflowError:
            return LATEST if parsed.year > 2000 else EARLIEST
        return min(max(in_utc, EARLIEST), LATEST)


class Reading(fields.Field):
    """A device's reading: a finite number, a boolean, a short text, or a small list/object of those.

    Free-form JSON would let a sender put NUL (refused by Postgres jsonb), infinity (not JSON) or a
    thousand levels of nesting (past the JSON encoders' recursion limit) into the request.
    """

    MAX_DEPTH = 3
    MAX_ITEMS = 50

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return self._check(value, 0)

    def _check(self, value: Any, depth: int) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValidationError("must be a finite number")
            if isinstance(value, int) and abs(value) >= 2 ** 63:
                raise ValidationError("number out of range")
            return value
        if isinstance(value, str):
            return Text(validate=validate.Length(max=200)).deserialize(value)
        if depth >= self.MAX_DEPTH:
            raise ValidationError(f"nested deeper than {self.MAX_DEPTH} levels")
        if isinstance(value, list) and len(value) <= self.MAX_ITEMS:
            return [self._check(v, depth + 1) for v in value]
        if isinstance(value, dict) and len(value) <= self.MAX_ITEMS:
            return {Text(validate=validate.Length(min=1, max=40)).deserialize(k): self._check(v, depth + 1)
                    for k, v in value.items()}
        raise ValidationError(f"must be a number, boolean, text, or a list/object of at most {self.MAX_ITEMS}")


class Bool(fields.Boolean):
    """JSON true or false only: marshmallow's Boolean also takes 0, 1, "yes", "on"..., which the OpenAPI
    document (type boolean) does not allow, so a client could not know what it sent."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):  # 0 == False in Python: a type check, not a set of values
            raise self.make_error("invalid")
        return value


class QueryBool(fields.Boolean):
    """A boolean in a query string, where OpenAPI serialises it as the text true or false."""

    truthy = {"true"}
    falsy = {"false"}


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
    reading = Reading(required=True)
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


@functools.cache
def _shared(schema: type[Schema]) -> Schema:
    """One instance of an inbound schema for every message (it keeps no state between loads): marshmallow's
    constructor deep-copies every field, 5 % of intake's time when the request schema was built per message and
    2.8 % when the channel-details schema was."""
    return schema()


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
    paid_service = Bool(load_default=False)
    vip = Bool(load_default=False)
    compensation_demanded = Bool(load_default=False)
    channel_details = fields.Dict(keys=fields.String(validate=validate.Length(max=40)), load_default=dict)
    reported_at = BoundedAwareDateTime(load_default=None, allow_none=True)

    @validates_schema
    def check_channel_details(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors: dict[str, Any] = {}
        channel = data.get("channel")
        if channel in CHANNEL_DETAILS:
            try:
                details = _shared(CHANNEL_DETAILS[channel])
                data["channel_details"] = lean_load(details, data.get("channel_details") or {})
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
    # marshmallow's own loop cost as much as the fields' checks (13 % of intake at 200/s); lean_load gives what
    # `Schema.load` gives (tests/unit/test_contract_lean_load.py, inbound bodies valid and broken).
    return lean_load(_shared(SubmitRequestSchema), body)
