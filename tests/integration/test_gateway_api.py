"""The HTTP API's gatekeeping, on a real gateway container (issue 2 item 6, issue 10 item 6).

The security cases are generated from the route table: every route is probed with no key, a malformed
key, a wrong secret, a revoked key and a key without the route's scope.
"""
from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from services.gateway.entrypoints.http_api import ROUTES
from services.gateway.entrypoints.service import GatewayService
from services.gateway.keys import create_key, revoke_key
from tests.support import db_url, free_port

SCOPED = [r for r in ROUTES if r.scope]


@pytest.fixture(scope="module")
def gateway(infra: None) -> Any:
    from nameko.containers import ServiceContainer
    from tests.support import amqp_uri

    port = free_port()
    container = ServiceContainer(GatewayService, {
        "AMQP_URI": amqp_uri(), "DATABASE_URL": db_url("gateway"), "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}",
        "METRICS_PORT": 0, "LOG_LEVEL": "WARNING", "RPC_TIMEOUT": 2, "RATE_LIMIT_PER_SECOND": 1000,
        "RATE_LIMIT_BURST": 1000, "MAX_BODY_BYTES": 65536})
    container.start()
    yield f"http://127.0.0.1:{port}"
    container.stop()


@pytest.fixture(scope="module")
def keys(gateway: str) -> dict[str, str]:
    out = {scope: create_key(f"test-{scope}", [scope], db_url("gateway"))[1]
           for scope in ("submit", "read", "staff", "pii", "admin")}
    revoked_id, revoked = create_key("test-revoked", ["submit", "read", "staff", "pii", "admin"], db_url("gateway"))
    assert revoke_key(revoked_id, db_url("gateway"))
    out["revoked"] = revoked
    return out


def _path(route: Any) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "LY-20261129-000001" if "no" in m.group(1) else
                  "5b0b7a52-3f43-4c1e-9d9a-0f6e1d2c3b4a", route.path)


def _call(base: str, route: Any, key: str | None) -> requests.Response:
    headers = {"X-API-Key": key} if key is not None else {}
    kwargs: dict[str, Any] = {"headers": headers, "timeout": 10}
    if route.body is not None:
        kwargs["json"] = {}
    return requests.request(route.method, base + _path(route), **kwargs)


@pytest.mark.parametrize("route", SCOPED, ids=[f"{r.method} {r.path}" for r in SCOPED])
def test_every_route_refuses_callers_without_a_valid_key_of_its_scope(gateway: str, keys: dict[str, str],
                                                                     route: Any) -> None:
    assert _call(gateway, route, None).status_code == 401
    assert _call(gateway, route, "not-a-key").status_code == 401
    forged = keys[route.scope][:-4] + "AAAA"
    assert _call(gateway, route, forged).status_code == 401
    revoked = _call(gateway, route, keys["revoked"])
    assert revoked.status_code == 401 and "revoked" in revoked.text
    other = next(s for s in ("submit", "read", "staff", "pii", "admin") if s != route.scope)
    refused = _call(gateway, route, keys[other])
    assert refused.status_code == 403, refused.text
    assert route.scope in refused.json()["errors"]["api_key"][0]


def test_the_openapi_document_lists_every_route_with_its_security(gateway: str) -> None:
    doc = requests.get(f"{gateway}/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    for r in ROUTES:
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.path)
        op = doc["paths"][path][r.method.lower()]
        assert ("security" in op) == bool(r.scope), path


def test_an_invalid_submission_is_answered_422_naming_each_bad_field(gateway: str, keys: dict[str, str]) -> None:
    r = requests.post(f"{gateway}/requests", headers={"X-API-Key": keys["submit"]}, timeout=10, json={
        "channel": "pigeon", "property_id": "ly", "reporter": {"kind": "resident", "phone": "123"},
        "description": "", "unexpected": 1})
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert {"channel", "property_id", "reporter", "description", "unexpected"} <= set(errors)
    assert "phone" in errors["reporter"]


@pytest.mark.parametrize("body,content_type,status,field", [
    (b"{not json", "application/json", 400, "_body"),
    (b"\xff\xfe\x00", "application/json", 400, "_body"),
    (b"[1, 2]", "application/json", 400, "_body"),
    (b'{"a": NaN}', "application/json", 400, "_body"),
    (b"[" * 100000 + b"]" * 100000, "application/json", 413, "_body"),
    (b"description=x", "application/x-www-form-urlencoded", 415, "_body"),
    (b"{}", "text/plain", 415, "_body"),
])
def test_malformed_bodies_get_a_4xx_naming_the_body(gateway: str, keys: dict[str, str], body: bytes,
                                                    content_type: str, status: int, field: str) -> None:
    r = requests.post(f"{gateway}/requests", data=body, timeout=10,
                      headers={"X-API-Key": keys["submit"], "Content-Type": content_type})
    assert r.status_code == status, r.text
    assert field in r.json()["errors"]


def test_deeply_nested_json_is_refused_cleanly(gateway: str, keys: dict[str, str]) -> None:
    body = b'{"a":' * 5000 + b"1" + b"}" * 5000
    r = requests.post(f"{gateway}/requests", data=body, timeout=10,
                      headers={"X-API-Key": keys["submit"], "Content-Type": "application/json"})
    assert r.status_code in (400, 422), r.text


def test_an_unknown_route_is_404_and_never_500(gateway: str) -> None:
    assert requests.get(f"{gateway}/nope", timeout=10).status_code == 404


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(infra: None) -> None:
    from nameko.containers import ServiceContainer
    from tests.support import amqp_uri

    port = free_port()
    container = ServiceContainer(GatewayService, {
        "AMQP_URI": amqp_uri(), "DATABASE_URL": db_url("gateway"), "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}",
        "METRICS_PORT": 0, "LOG_LEVEL": "WARNING", "RATE_LIMIT_PER_SECOND": 0.5, "RATE_LIMIT_BURST": 3,
        # No intake runs here: the allowed calls answer 503 quickly, whether or not its queue exists.
        "RPC_TIMEOUT": 1})
    container.start()
    try:
        key = create_key("test-rate", ["read"], db_url("gateway"))[1]
        # An invalid query is refused (400) right after the rate check, with no RPC: five calls back to back.
        answers = [requests.get(f"http://127.0.0.1:{port}/requests", params={"page_size": 0}, timeout=10,
                                headers={"X-API-Key": key}) for _ in range(5)]
        codes = [a.status_code for a in answers]
        assert codes == [400, 400, 400, 429, 429], codes
        assert int(answers[-1].headers["Retry-After"]) >= 1
    finally:
        container.stop()


def test_a_call_to_a_service_that_is_not_running_is_503_not_500(gateway: str, keys: dict[str, str]) -> None:
    r = requests.get(f"{gateway}/requests/LY-20261129-999999", headers={"X-API-Key": keys["read"]}, timeout=20)
    assert r.status_code == 503
    assert r.headers["Retry-After"]
