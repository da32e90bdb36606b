"""Commands intake accepts (built by the entrypoints from validated payloads)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.common.domain import Command


@dataclass(frozen=True)
class RegisterRequest(Command):
    source: str
    external_id: str | None
    channel: str
    property_id: str
    building: str | None
    unit: str | None
    area: str | None
    reporter_kind: str
    reporter_name: str | None
    reporter_phone: str | None
    description: str
    agent_id: str | None
    category: str | None = None
    subcategory: str | None = None
    priority: str | None = None
    paid_service: bool = False
    vip: bool = False
    compensation_demanded: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    reported_at: datetime | None = None
