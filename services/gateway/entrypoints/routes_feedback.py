"""HTTP routes served by the feedback service (through RPC). Mixed into GatewayService."""
from __future__ import annotations

from services.gateway.entrypoints.http_api import ApiBase


class FeedbackRoutes(ApiBase):
    pass
