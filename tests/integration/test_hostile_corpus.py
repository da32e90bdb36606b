"""The hostile-input corpus (issue 10, item 4), run against real gateway and intake containers.

Every case in tests/hostile/*.yml is sent as is; its expectation is checked (a 4xx naming the field, a dead
letter with its reason, or a request registered and read back byte for byte); a good request sent right
after it must go through; the last test checks that nothing was half-written. Never a 5xx.
"""
from __future__ import annotations

import base64
import copy
import json
import shutil
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import amqp
import pytest
import requests
import yaml
from nameko.containers import ServiceContainer

from services.common import topology
from services.gateway.entrypoints.service import GatewayService
from services.gateway.keys import create_key
from services.intake.entrypoints.service import IntakeService
from tests.support import amqp_uri, db_url, free_port, get_messages, queue_info, scalar, wait_for

CORPUS = Path(__file__).resolve().parents[1] / "hostile"
HTTP = yaml.safe_load((CORPUS / "http_cases.yml").read_text(encoding="utf-8"))
AMQP = yaml.safe_load((CORPUS / "amqp_cases.yml").read_text(encoding="utf-8"))
HTTP_CLIENT = "hostile-http"  # the gateway makes the key's client the request's source
AMQP_SOURCE = AMQP["base"]["source"]
PICKLE_MARKER = Path("/tmp/hostile-corpus-pickle-ran")
DLQ = f"{topology.INBOUND_QUEUE}.dlq"


@dataclass
class Ledger:
    """What the corpus run registered, to compare with intake's tables at the end."""

    accepted: set[str] = field(default_factory=set)
    with_contact: set[str] = field(default_factory=set)


LEDGER = Ledger()


@dataclass
class Platform:
    base: str
    key: str


# ------------------------------------------------------------------------------------------ building bodies
def substitute(value: Any, unique: str) -> Any:
    if isinstance(value, str):
        return value.replace("$UNIQUE", unique).replace("$LONG4000", "A" * 4000)
    if isinstance(value, list):
        return [substitute(v, unique) for v in value]
    if isinstance(value, dict):
        return {substitute(k, unique): substitute(v, unique) for k, v in value.items()}
    return value


def _walk(obj: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str]:
    *parents, last = dotted.split(".")
    for p in parents:
        obj = obj[p]
    return obj, last


def patched(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(base)
    for dotted, value in (patch.get("set") or {}).items():
        parent, last = _walk(body, dotted)
        parent[last] = value
    for dotted in patch.get("unset") or []:
        parent, last = _walk(body, dotted)
        parent.pop(last, None)
    for dotted, spec in (patch.get("grow") or {}).items():
        parent, last = _walk(body, dotted)
        parent[last] = spec["unit"] * int(spec["times"])
    return body


def body_of(case: dict[str, Any], base: dict[str, Any], unique: str) -> tuple[bytes, Any]:
    """The bytes to send, and the JSON value they hold when the case is built from data (else None)."""
    if "raw_b64" in case:
        return base64.b64decode(case["raw_b64"]), None
    if "raw" in case:
        return substitute(case["raw"], unique).encode("utf-8"), None
    if "repeat" in case:
        return "".join(str(text) * int(times) for text, times in case["repeat"]).encode("utf-8"), None
    obj = case["json"] if "json" in case else patched(base, case.get("patch") or {})
    obj = substitute(obj, unique)
    return json.dumps(obj, ensure_ascii=False).encode("utf-8"), obj


def named(errors: Any, dotted: str) -> bool:
    """Whether a per-field error structure names `dotted` (a.b = errors["a"]["b"])."""
    node = errors
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def dig(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj[part]
    return obj


def unique_id() -> str:
    return uuid.uuid4().hex[:20]


# ----------------------------------------------------------------------------------------------- platform
@pytest.fixture(scope="module")
def platform(infra: None) -> Iterator[Platform]:
    shutil.rmtree(PICKLE_MARKER, ignore_errors=True)
    common = {"AMQP_URI": amqp_uri(), "METRICS_PORT": 0, "LOG_LEVEL": "ERROR", "max_workers": 10}
    intake = ServiceContainer(IntakeService, {**common, "DATABASE_URL": db_url("intake")})
    intake.start()
    port = free_port()
    gateway = ServiceContainer(GatewayService, {
        **common, "DATABASE_URL": db_url("gateway"), "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}", "RPC_TIMEOUT": 10,
        "RATE_LIMIT_PER_SECOND": 10000, "RATE_LIMIT_BURST": 10000, "MAX_BODY_BYTES": 65536})
    gateway.start()
    key = create_key(HTTP_CLIENT, ["submit", "read", "staff", "pii", "admin"], db_url("gateway"))[1]
    get_messages(DLQ, 1000)
    try:
        yield Platform(f"http://127.0.0.1:{port}", key)
    finally:
        gateway.stop()
        intake.stop()


def hostile_requests() -> int:
    return int(scalar("intake", "SELECT count(*) FROM requests WHERE source IN (%s, %s)", (HTTP_CLIENT, AMQP_SOURCE)))


def record(request_no: str, sent: Any) -> None:
    LEDGER.accepted.add(request_no)
    sent = sent or {}
    reporter, details = sent.get("reporter") or {}, sent.get("channel_details") or {}
    if reporter.get("name") or reporter.get("phone") or details.get("caller_number"):
        LEDGER.with_contact.add(request_no)


def read_request(platform: Platform, request_no: str) -> dict[str, Any]:
    r = requests.get(f"{platform.base}/requests/{urllib.parse.quote(request_no)}", timeout=30,
                     headers={"X-API-Key": platform.key})
    assert r.status_code == 200, r.text
    return dict(r.json())


def check_read_back(platform: Platform, request_no: str, case: dict[str, Any], sent: Any) -> None:
    stored = read_request(platform, request_no)
    for dotted in case["expect"].get("read_back", []):
        wanted = case["expect"][dotted] if dotted in case["expect"] else dig(sent, dotted)
        assert dig(stored, dotted) == wanted, f"{dotted}: stored {dig(stored, dotted)!r}, sent {wanted!r}"


# ------------------------------------------------------------------------------------------------- HTTP
def http_send(platform: Platform, case: dict[str, Any], body: bytes) -> requests.Response:
    headers = {"X-API-Key": platform.key}
    content_type = case.get("content_type", "application/json")
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers.update(substitute(case.get("headers") or {}, unique_id()))
    method = case.get("method", "POST")
    path = substitute(case.get("path", "/requests"), unique_id())
    data: Any = None
    if method != "GET":
        data = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) if case.get("chunked") else body
    return requests.request(method, platform.base + path, data=data, headers=headers, timeout=60)


def http_good(platform: Platform) -> None:
    body, sent = body_of({}, HTTP["base"], unique_id())
    r = requests.post(f"{platform.base}/requests", data=body, timeout=30,
                      headers={"X-API-Key": platform.key, "Content-Type": "application/json"})
    assert r.status_code == 201, f"the good request after the hostile one: {r.status_code} {r.text}"
    record(r.json()["request_no"], sent)


@pytest.mark.parametrize("case", HTTP["cases"], ids=[c["id"] for c in HTTP["cases"]])
def test_http_case(platform: Platform, case: dict[str, Any]) -> None:
    before = hostile_requests()
    unique = unique_id()
    body, sent = body_of(case, HTTP["base"], unique)
    r = http_send(platform, case, body)
    assert r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    expect = case["expect"]
    created = 0
    if expect.get("valid"):
        assert r.status_code == 201, r.text[:500]
        request_no = r.json()["request_no"]
        record(request_no, sent)
        created = 1
        if "same_key" in case:
            _, sent_again = body_of({"patch": case["same_key"]}, sent, unique)
            again = http_send(platform, case, json.dumps(sent_again, ensure_ascii=False).encode())
            assert again.status_code == 200, again.text
            assert again.json()["request_no"] == request_no and again.json()["created"] is False
        check_read_back(platform, request_no, case, sent)
    else:
        assert r.status_code == expect["status"], r.text[:500]
        if expect.get("field"):
            errors = r.json()["errors"]
            assert named(errors, expect["field"]), f"{expect['field']} not named in {json.dumps(errors)[:500]}"
    http_good(platform)
    assert hostile_requests() == before + created + 1


# ------------------------------------------------------------------------------------------------- AMQP
def amqp_publish(body: bytes, *, routing_key: str, content_type: str | None, content_encoding: str | None) -> None:
    """A plain AMQP client (not kombu's serialisers), so a message can lack a content type or encoding."""
    url = urllib.parse.urlparse(amqp_uri().replace("pyamqp://", "amqp://"))
    conn = amqp.Connection(host=f"{url.hostname}:{url.port or 5672}", userid=url.username, password=url.password,
                           virtual_host=urllib.parse.unquote(url.path[1:]) or "/", confirm_publish=True)
    conn.connect()
    try:
        props: dict[str, Any] = {"delivery_mode": 2}
        if content_type is not None:
            props["content_type"] = content_type
        if content_encoding is not None:
            props["content_encoding"] = content_encoding
        conn.channel().basic_publish(amqp.Message(body, **props), exchange=topology.INBOUND_EXCHANGE,
                                     routing_key=routing_key, mandatory=True)
    finally:
        conn.close()


def amqp_send(case: dict[str, Any], body: bytes) -> None:
    amqp_publish(body, routing_key=case.get("routing_key", "request.call_centre"),
                 content_type=case.get("content_type", "application/json"),
                 content_encoding=case.get("content_encoding", "utf-8"))


def registered_no(source: str, external_id: str) -> str | None:
    return scalar("intake", "SELECT request_no FROM requests WHERE source = %s AND external_id = %s",
                  (source, external_id))  # type: ignore[no-any-return]


def amqp_good() -> None:
    body, sent = body_of({}, AMQP["base"], unique_id())
    amqp_send({}, body)
    request_no = wait_for(lambda: registered_no(AMQP_SOURCE, sent["external_id"]),
                          what="the good message after the hostile one")
    record(request_no, sent)


@pytest.mark.parametrize("case", AMQP["cases"], ids=[c["id"] for c in AMQP["cases"]])
def test_amqp_case(platform: Platform, case: dict[str, Any]) -> None:
    before = hostile_requests()
    unique = unique_id()
    body, sent = body_of(case, AMQP["base"], unique)
    expect = case["expect"]
    amqp_send(case, body)
    created = 0
    if expect.get("valid"):
        sent = sent if sent is not None else json.loads(body.decode(case.get("content_encoding") or "utf-8"))
        request_no = wait_for(lambda: registered_no(sent["source"], sent["external_id"]), what=case["id"])
        record(request_no, sent)
        created = 1
        if "same_key" in case:
            _, sent_again = body_of({"patch": case["same_key"]}, sent, unique)
            amqp_send(case, json.dumps(sent_again, ensure_ascii=False).encode())
        amqp_good()
        # Both deliveries (and the good one) were consumed and acknowledged: nothing waits, nothing dead.
        wait_for(lambda: queue_info(topology.INBOUND_QUEUE).get("messages", 1) == 0, what="inbound queue drained")
        assert get_messages(DLQ, 10) == []
        check_read_back(platform, request_no, case, sent)
    else:
        amqp_good()
        dead = wait_for(lambda: get_messages(DLQ, 10), what=f"dead letter of {case['id']}")
        assert len(dead) == 1, dead
        headers = dead[0]["properties"]["headers"]
        assert headers["x-reason"] == expect["dead_letter"], headers
        if expect.get("field"):
            assert named(json.loads(headers["x-error"]), expect["field"]), headers["x-error"][:500]
    assert hostile_requests() == before + created + 1


# ---------------------------------------------------------------------------------------- nothing half-written
def test_nothing_half_written_after_the_corpus(platform: Platform) -> None:
    assert LEDGER.accepted, "run with the corpus cases"
    rows = {r for (r,) in _rows("SELECT request_no FROM requests WHERE source IN (%s, %s)",
                                (HTTP_CLIENT, AMQP_SOURCE))}
    assert rows == LEDGER.accepted  # every accepted request once, nothing a refusal left behind
    missing_contact = {r for (r,) in _rows(
        "SELECT r.request_no FROM requests r LEFT JOIN contacts c USING (request_no) "
        "WHERE r.request_no = ANY(%s) AND c.request_no IS NULL", (list(LEDGER.with_contact),))}
    assert not missing_contact
    registrations = dict(_rows("SELECT request_no, count(*) FROM timeline WHERE event_type = 'RequestRegistered' "
                               "AND request_no = ANY(%s) GROUP BY request_no", (list(LEDGER.accepted),)))
    assert registrations == {r: 1 for r in LEDGER.accepted}
    wait_for(lambda: scalar("intake", "SELECT count(*) FROM outbox") == 0, what="intake outbox drained")
    assert get_messages(DLQ, 10) == []
    assert not PICKLE_MARKER.exists(), "a pickled message was unpickled"


def _rows(sql: str, params: Any) -> list[tuple[Any, ...]]:
    from tests.support import db

    with db("intake") as conn:
        return conn.execute(sql, params).fetchall()

