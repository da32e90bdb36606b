"""HTTP routes served by the dispatch service (through RPC). Mixed into GatewayService."""
from __future__ import annotations

from services.gateway.entrypoints.http_api import ApiBase


class DispatchRoutes(ApiBase):
    pass
