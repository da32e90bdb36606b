"""Human-readable request numbers: `LY-20261129-000042` = property code, local (Asia/Shanghai) date, sequence.

The per-property-per-day sequence is issued atomically by the database; this module only formats and parses.
Within one property the numbers sort as text in registration order (date first, then a zero-padded sequence).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from services.common.domain import DomainError, utc

# China has had no daylight saving since 1991: a fixed offset avoids reading the tz database in the domain.
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
MAX_SEQ = 999_999
PROPERTY_CODE = re.compile(r"^[A-Z][A-Z0-9]{1,9}$")
_REQUEST_NO = re.compile(r"^(?P<prop>[A-Z][A-Z0-9]{1,9})-(?P<date>\d{8})-(?P<seq>\d{6})$")


@dataclass(frozen=True, order=True)
class RequestNo:
    property_id: str
    local_date: date
    seq: int

    def __str__(self) -> str:
        return format_request_no(self.property_id, self.local_date, self.seq)


def validate_property_code(property_id: str) -> str:
    if not isinstance(property_id, str) or not PROPERTY_CODE.match(property_id):
        raise DomainError("a property code is 2-10 capital letters or digits, starting with a letter",
                          field="property_id", code="invalid_property")
    return property_id


def local_date(now: datetime) -> date:
    """The company's calendar day of an instant: numbers roll over at midnight Beijing time, not UTC."""
    return utc(now).astimezone(CHINA_TZ).date()


def format_request_no(property_id: str, local_date: date, seq: int) -> str:
    validate_property_code(property_id)
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_SEQ:
        raise DomainError(f"sequence must be 1..{MAX_SEQ}", field="seq", code="invalid_sequence")
    return f"{property_id}-{local_date:%Y%m%d}-{seq:06d}"


def parse_request_no(request_no: str) -> RequestNo:
    m = _REQUEST_NO.match(request_no or "")
    if not m:
        raise DomainError(f"{request_no!r} is not a request number like LY-20261129-000042", field="request_no",
                          code="invalid_request_no")
    try:
        day = datetime.strptime(m["date"], "%Y%m%d").date()
    except ValueError:
        raise DomainError(f"{request_no!r} has no valid date", field="request_no",
                          code="invalid_request_no") from None
    seq = int(m["seq"])
    if seq < 1:
        raise DomainError(f"{request_no!r} has sequence 0", field="request_no", code="invalid_request_no")
    return RequestNo(m["prop"], day, seq)
