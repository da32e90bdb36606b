"""Base types every service's pure domain layer builds on.

Nothing here may import nameko, psycopg or marshmallow: domain code stays pure.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from datetime import datetime, UTC
from typing import Any, ClassVar


class DomainError(Exception):
    """A rule of the domain refused a command; `field` names the offending input when there is one."""

    def __init__(self, message: str, field: str | None = None, code: str = "domain_error"):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


class NotFound(DomainError):
    def __init__(self, message: str, field: str | None = None):
        super().__init__(message, field, code="not_found")


class InvalidTransition(DomainError):
    def __init__(self, message: str, current_state: str):
        super().__init__(message, field="state", code="invalid_transition")
        self.current_state = current_state


@dataclass(frozen=True)
class Command:
    """Imperative intent (AssignTechnician). Subclasses are frozen dataclasses."""


@dataclass(frozen=True)
class Event:
    """Something that happened (RequestRegistered). The class name is the contract's event type.

    `request_no` ties the event to a request for correlation and logging; events about something
    else (a roster, a report) leave it None.
    """

    version: ClassVar[int] = 1

    @property
    def event_type(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        names = _field_names(type(self))  # type: ignore[arg-type]  # a class is hashable; mypy reads Event's __hash__
        return {name: getattr(self, name) for name in names}


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    # dataclasses.fields() filters the class's field table on every call: 2 % of escalation's CPU, which
    # publishes several events per request.
    return tuple(f.name for f in dataclasses.fields(cls))


def utc(dt: datetime) -> datetime:
    """Refuse naive datetimes early: every instant in the platform is timezone-aware UTC."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime; the platform stores UTC-aware instants only")
    return dt.astimezone(UTC)
