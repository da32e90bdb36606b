"""Bodies and query strings of the staff routes (submission uses the inbound contract)."""
from __future__ import annotations

from marshmallow import fields, validate

from services.common.contract.inbound import ClampedAwareDateTime, StrictSchema, Text, code
from services.common.contract.intake import CATEGORIES, CHANNELS


class ListQuery(StrictSchema):
    property_id = code(20, load_default=None)
    channel = fields.String(validate=validate.OneOf(CHANNELS), load_default=None)
    category = fields.String(validate=validate.OneOf(CATEGORIES), load_default=None)
    status = code(30, load_default=None)
    registered_from = ClampedAwareDateTime(load_default=None, data_key="from")
    registered_to = ClampedAwareDateTime(load_default=None, data_key="to")
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100000))
    page_size = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class AssignBody(StrictSchema):
    technician_id = code(40, required=True)
    reason = Text(required=True, validate=validate.Length(min=1, max=500))
    by = code(40, required=True)


class ResolveBody(StrictSchema):
    resolution = Text(required=True, validate=validate.Length(min=1, max=2000))
    by = code(40, required=True)
    fee_cents = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10_000_000))
    materials = fields.List(Text(validate=validate.Length(min=1, max=100)), load_default=list,
                            validate=validate.Length(max=50))
