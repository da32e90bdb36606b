"""HTTP plumbing of the gateway: the route table, API-key authentication, scopes, body limits, JSON errors.

Every route is declared with `route(...)`, which records it in ROUTES: the OpenAPI document and the
security test that probes every route without a key, with a wrong, revoked or under-scoped key are
both generated from that one table.
"""
from __future__ import annotations

import services.common  # noqa: F401  (sets PSYCOPG_WAIT_FUNC before psycopg is imported)

import functools

import amqp.exceptions
import eventlet
import kombu.exceptions
import psycopg
import psycopg_pool
import json
import logging
import math
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

from marshmallow import Schema, ValidationError
from nameko.exceptions import UnknownService
from nameko.web.handlers import http
from prometheus_client import Counter, Histogram
from werkzeug.wrappers import Request, Response

from services.common import logs
from services.gateway.adapters import keys as key_repo
from services.gateway.domain import keys

log = logging.getLogger(__name__)

OUTAGES: tuple[type[BaseException], ...] = (psycopg.OperationalError, psycopg_pool.PoolTimeout,
                                           kombu.exceptions.OperationalError, amqp.exceptions.ConnectionError,
                                           ConnectionError, TimeoutError)

HTTP_REQUESTS = Counter("http_requests", "HTTP requests answered", ["route", "method", "status"])
HTTP_SECONDS = Histogram("http_request_duration_seconds", "HTTP request latency", ["route", "method"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # werkzeug syntax, e.g. /requests/<string:request_no>
    scope: str | None
    name: str
    summary: str
    body: type[Schema] | None
    query: type[Schema] | None
    ok_status: int
    content_types: tuple[str, ...] = ("application/json",)


ROUTES: list[Route] = []
PATH_VALUE_MAX = 40  # as the OpenAPI document declares for every path parameter
_PATH_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class HttpError(Exception):
    def __init__(self, status: int, errors: dict[str, Any], code: str, headers: dict[str, str] | None = None):
        super().__init__(code)
        self.status, self.errors, self.code, self.headers = status, errors, code, headers or {}


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False, default=str), status=status,
                    headers=headers or {}, mimetype="application/json")


def error_response(status: int, errors: dict[str, Any], code: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"error": code, "errors": errors}, headers)


def read_json(request: Request, max_bytes: int) -> Any:
    length = request.content_length
    if length is not None and length > max_bytes:
        raise HttpError(413, {"_body": [f"body larger than {max_bytes} bytes"]}, "too_large")
    if length is None and request.headers.get("Transfer-Encoding"):
        # werkzeug hands a chunked body to the app as empty (eventlet does not mark the input terminated), which
        # would read as "malformed JSON"; say what is wrong instead.
        raise HttpError(411, {"_body": ["Content-Length required (chunked bodies are not accepted)"]},
                        "length_required")
    mimetype = (request.mimetype or "").lower()
    if mimetype != "application/json":
        raise HttpError(415, {"_body": ["Content-Type must be application/json"]}, "unsupported_media_type")
    raw = request.get_data(cache=True)
    if len(raw) > max_bytes:
        raise HttpError(413, {"_body": [f"body larger than {max_bytes} bytes"]}, "too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, {"_body": ["body is not valid UTF-8"]}, "bad_encoding") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                          object_pairs_hook=_unique_keys)
    except RecursionError:
        raise HttpError(400, {"_body": ["JSON nested too deeply"]}, "bad_json") from None
    except ValueError as exc:
        raise HttpError(400, {"_body": [f"malformed JSON: {exc}"[:200]]}, "bad_json") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # 1e400 parses as infinity, which neither JSON nor Postgres jsonb can hold.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on which of two equal keys wins; a body that says two things is refused, not guessed.
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {dup[:40]!r}")
    return out


def route(method: str, path: str, scope: str | None, *, summary: str, body: type[Schema] | None = None,
          query: type[Schema] | None = None, ok_status: int = 200,
          content_types: tuple[str, ...] = ("application/json",)) -> Callable[..., Any]:
    def decorate(fn: Callable[..., Any]) -> Any:
        ROUTES.append(Route(method, path, scope, fn.__name__, summary, body, query, ok_status, content_types))

        @functools.wraps(fn)
        def wrapper(self: Any, request: Request, **path_values: Any) -> Response:
            started = time.perf_counter()
            token = logs.bind(correlation_id=request.headers.get("X-Correlation-Id") or str(uuid.uuid4()))
            status = 500
            try:
                response = self._dispatch(fn, request, path_values, scope, body, query, ok_status)
                status = response.status_code
                return response
            except HttpError as exc:
                status = exc.status
                return error_response(exc.status, exc.errors, exc.code, exc.headers)
            except OUTAGES as exc:
                # The database restarting or the broker unreachable: nothing was accepted; try again shortly.
                status = 503
                log.warning("%s %s: %s during an outage", method, path, type(exc).__name__)
                return error_response(503, {"_": ["temporarily unavailable; retry with the same Idempotency-Key"]},
                                      "unavailable", {"Retry-After": "5"})
            except Exception:
                log.exception("unhandled error on %s %s", method, path)
                return error_response(500, {"_": ["internal error"]}, "internal")
            finally:
                HTTP_REQUESTS.labels(path, method, str(status)).inc()
                HTTP_SECONDS.labels(path, method).observe(time.perf_counter() - started)
                logs.unbind(token)

        return http(method, path)(wrapper)

    return decorate


def validated(schema: type[Schema], body: dict[str, Any]) -> dict[str, Any]:
    """Load a body with its marshmallow schema; 422 naming every bad field."""
    try:
        return schema().load(body)
    except ValidationError as exc:
        errors = exc.messages if isinstance(exc.messages, dict) else {"_": exc.messages}
        raise HttpError(422, errors, "invalid") from None


def jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """Loaded bodies hold dates and UUIDs; RPC carries JSON."""
    return json.loads(json.dumps(data, default=str))


class ApiBase:
    """Mixin of the gateway service: authentication and body/query loading around each route, and RPC calls.

    Route mixins (routes_<service>.py) call `self.call("dispatch", "method", ...)`, which answers with the
    service's data or raises the service's 4xx refusal as an HttpError.
    """

    uow: Any
    config: Any
    buckets: Any

    def _rpc(self, service: str, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        proxy = getattr(self, service)
        timeout = float(self.config.get("RPC_TIMEOUT", 10))
        try:
            reply = getattr(proxy, method).call_async(*args, **kwargs)
            with eventlet.Timeout(timeout):
                return reply.result()
        except UnknownService:
            # No instance of the service is consuming: nothing was sent, so nothing happens later either.
            raise HttpError(503, {"_": [f"{service} is not running"]}, "unavailable", {"Retry-After": "5"}) from None
        except eventlet.Timeout:
            raise HttpError(503, {"_": [f"{service} did not answer within {timeout:.0f}s; retry with the same "
                                        "Idempotency-Key"]}, "unavailable", {"Retry-After": "5"}) from None

    def call(self, service: str, method: str, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        result = self._rpc(service, method, *args, **kwargs)
        if result.get("errors") is not None:
            status = int(result["status"])
            raise HttpError(status, result["errors"], result.get("code", "refused"),
                            {"Retry-After": "5"} if status == 503 else None)
        return int(result.get("status", 200)), result["data"]

    def _authenticate(self, request: Request) -> keys.ApiKey:
        presented = request.headers.get("X-API-Key") or ""
        auth = request.headers.get("Authorization", "")
        if not presented and auth.lower().startswith("bearer "):
            presented = auth[7:].strip()
        parsed = keys.parse(presented)
        if not parsed:
            raise HttpError(401, {"api_key": ["missing or malformed API key"]}, "unauthenticated",
                            {"WWW-Authenticate": "Bearer"})
        key_id, secret = parsed
        with self.uow() as uow:
            key = key_repo.find(uow.conn, key_id)
        if not keys.verify(key, secret):
            raise HttpError(401, {"api_key": ["unknown or revoked API key"]}, "unauthenticated",
                            {"WWW-Authenticate": "Bearer"})
        assert key is not None
        return key

    def _dispatch(self, fn: Callable[..., Any], request: Request, path_values: dict[str, Any], scope: str | None,
                  body: type[Schema] | None, query: type[Schema] | None, ok_status: int) -> Response:
        key = None
        if scope is not None:
            key = self._authenticate(request)
            if scope not in key.scopes:
                raise HttpError(403, {"api_key": [f"this key lacks the '{scope}' scope"]}, "forbidden")
            wait = self.buckets.take(key.key_id, time.monotonic())
            if wait > 0:
                raise HttpError(429, {"api_key": ["rate limit exceeded"]}, "rate_limited",
                                {"Retry-After": str(max(1, math.ceil(wait)))})
        for name, value in path_values.items():
            # No number or id is this long or holds control characters; Postgres would refuse a NUL with an error.
            if len(value) > PATH_VALUE_MAX or _PATH_CONTROL.search(value):
                raise HttpError(404, {name: [f"no such {name}"]}, "not_found")
        kwargs: dict[str, Any] = dict(path_values)
        if body is not None:
            payload = read_json(request, int(self.config.get("MAX_BODY_BYTES", 65536)))
            if not isinstance(payload, dict):
                raise HttpError(400, {"_body": ["a JSON object is required"]}, "bad_json")
            kwargs["body"] = payload
        if query is not None:
            try:
                kwargs["query"] = query().load(request.args.to_dict())
            except ValidationError as exc:
                raise HttpError(400, exc.messages if isinstance(exc.messages, dict) else {"_": exc.messages},
                                "invalid_query") from None
        result = fn(self, request, key=key, **kwargs)
        if isinstance(result, Response):
            return result
        status, payload = result if isinstance(result, tuple) else (ok_status, result)
        return json_response(status, payload)
