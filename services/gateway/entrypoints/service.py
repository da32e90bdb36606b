"""The HTTP API: one base URL for desks and other systems; every call but the docs needs an API key."""
from __future__ import annotations

import services.common  # noqa: F401

from typing import Any

import eventlet
from nameko.exceptions import UnknownService
from nameko.rpc import RpcProxy
from werkzeug.wrappers import Request

from services.common.config import REPO_ROOT
from services.common.contract.inbound import SubmitRequestSchema
from services.common.nameko_ext import Observability, Store
from services.gateway.domain.ratelimit import TokenBuckets
from services.gateway.entrypoints.http_api import ROUTES, ApiBase, json_response, jsonable, route, validated
from services.gateway.entrypoints.routes_dispatch import DispatchRoutes
from services.gateway.entrypoints.routes_escalation import EscalationRoutes
from services.gateway.entrypoints.routes_feedback import FeedbackRoutes
from services.gateway.entrypoints.routes_intake import IntakeRoutes
from services.gateway.entrypoints.schemas import AssignBody, ListQuery, ResolveBody
from services.gateway.openapi import openapi_document
from nameko.dependency_providers import Config

TIMELINE_SOURCES = ("intake", "dispatch", "escalation", "feedback")
_buckets: dict[str, TokenBuckets] = {}


class GatewayService(IntakeRoutes, DispatchRoutes, EscalationRoutes, FeedbackRoutes, ApiBase):
    name = "gateway"

    obs = Observability()
    uow = Store(REPO_ROOT / "services" / "gateway" / "migrations")
    config = Config()
    # Expired RPC messages are dropped by the broker, so a call the API gave up on never runs later.
    intake = RpcProxy("intake", expiration=10)
    dispatch = RpcProxy("dispatch", expiration=10)
    escalation = RpcProxy("escalation", expiration=10)
    feedback = RpcProxy("feedback", expiration=10)

    @property
    def buckets(self) -> TokenBuckets:
        rate = float(self.config.get("RATE_LIMIT_PER_SECOND", 200))
        burst = float(self.config.get("RATE_LIMIT_BURST", 400))
        return _buckets.setdefault(f"{rate}/{burst}", TokenBuckets(rate, burst))

    def _timelines(self, request_no: str) -> tuple[dict[str, Any], list[str]]:
        """Ask every service for its part of a request's timeline at once; services not running are listed."""
        replies, down = {}, []
        for service in TIMELINE_SOURCES:
            try:
                replies[service] = getattr(self, service).timeline.call_async(request_no)
            except UnknownService:
                down.append(service)
        return replies, down

    @route("GET", "/openapi.json", None, summary="This API's OpenAPI 3 document")
    def get_openapi(self, request: Request, key: Any) -> Any:
        return json_response(200, openapi_document(ROUTES))

    @route("GET", "/health", None, summary="Liveness of the gateway")
    def health(self, request: Request, key: Any) -> Any:
        return {"status": "ok"}

    @route("GET", "/health/ready", None, summary="Readiness: every service answers RPC (503 naming those that do not)")
    def ready(self, request: Request, key: Any) -> Any:
        replies, down = self._timelines("LY-20000101-000000")
        for service, reply in replies.items():
            try:
                with eventlet.Timeout(3):
                    reply.result()
            except (eventlet.Timeout, Exception):
                down.append(service)
        return (503, {"status": "unavailable", "down": down}) if down else {"status": "ready"}

    @route("POST", "/requests", "submit", body=SubmitRequestSchema, ok_status=201,
           summary="Register a request (idempotent on source + Idempotency-Key / external_id)")
    def submit_request(self, request: Request, key: Any, body: dict[str, Any]) -> Any:
        # The key's client is the source: a client cannot submit in another system's name.
        body["source"] = key.client
        if not body.get("external_id") and request.headers.get("Idempotency-Key"):
            body["external_id"] = request.headers["Idempotency-Key"]
        validated(SubmitRequestSchema, body)
        return self.call("intake", "submit", body)

    @route("GET", "/requests", "read", query=ListQuery, summary="List requests with filters and pagination")
    def list_requests(self, request: Request, key: Any, query: dict[str, Any]) -> Any:
        q = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in query.items()}
        return self.call("intake", "list_requests", q, "pii" in key.scopes)

    @route("GET", "/requests/<string:request_no>", "read",
           summary="A request by its number, with its timeline from all four services")
    def get_request(self, request: Request, key: Any, request_no: str) -> Any:
        status, data = self.call("intake", "get_request", request_no, "pii" in key.scopes)
        replies, down = self._timelines(request_no)
        timeline: list[dict[str, Any]] = []
        details: dict[str, Any] = {service: {"unavailable": True} for service in down}
        timeout = float(self.config.get("RPC_TIMEOUT", 10))
        for service, reply in replies.items():
            try:
                with eventlet.Timeout(timeout):
                    part = reply.result()
            except eventlet.Timeout:
                details[service] = {"unavailable": True}
                continue
            timeline.extend(dict(e, service=service) for e in part["data"]["timeline"])
            details[service] = part["data"].get("state")
        timeline.sort(key=lambda e: (e["at"], e["service"]))
        data.update({"timeline": timeline, "services": details})
        return status, data

    @route("POST", "/requests/<string:request_no>/assign", "staff", body=AssignBody,
           summary="Assign or reassign the request's work order to a technician, with a reason")
    def assign(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self.call("dispatch", "assign", request_no, jsonable(validated(AssignBody, body)))

    @route("POST", "/requests/<string:request_no>/resolve", "staff", body=ResolveBody,
           summary="Record the request's work order as resolved")
    def resolve(self, request: Request, key: Any, request_no: str, body: dict[str, Any]) -> Any:
        return self.call("dispatch", "resolve", request_no, jsonable(validated(ResolveBody, body)))
