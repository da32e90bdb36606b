"""Every channel end to end: staff channels over HTTP, machine channels over the inbound exchange, each read back
through GET /requests/{no} with its channel fields and classification; staff actions over HTTP; no PII in logs."""
from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, UTC
from typing import Any

import pytest

from tests.support import publish_inbound, scalar, wait_for

NAME, PHONE = "司马相如", "13698765432"
TODAY = date.today().isoformat()

CASES = list[tuple[str, dict[str, Any], str, str | None, str | None]]
HTTP_CASES: CASES = [
    ("phone", {"line": "hotline-1"}, "电梯困人了，快来", "repair", "emergency"),
    ("visit", {"desk": "lobby-a"}, "家里马桶堵了", "repair", None),
    ("letter", {"kind": "report", "received_date": TODAY}, "小区路灯坏了好几天", "repair", None),
    ("online", {"platform": "wechat"}, "The kitchen pipe is leaking water everywhere", "repair", None),
    ("email", {"message_id": "<m-1@example.com>", "subject": "投诉保安态度"}, "保安态度很差，对业主大喊大叫",
     "complaint", None),
    ("patrol", {"inspector": "insp-07", "round_id": "r-2026-1"}, "消防通道被杂物堵塞", None, None),
]
INBOUND_CASES: CASES = [
    ("iot", {"device_id": "smoke-3-12", "reading": 0.31, "unit_of_measure": "obs/m", "alarm_code": "SMK"},
     "烟感探测器报警：3栋12楼起火冒烟", "disaster", "emergency"),
    ("call_centre", {"caller_number": PHONE, "call_id": "cc-991", "queue": "repair"}, "卫生间天花板漏水",
     "repair", None),
]


def _post(platform: Any, path: str, body: dict[str, Any], key: str = "all") -> Any:
    """The platform fixture is ready when metrics answer, which is before intake consumes RPC: retry the
    gateway's 503 "not running" (every body here is idempotent) until intake answers."""
    return wait_for(lambda: (r := platform.api("POST", path, key=key, json=body)).status_code != 503 and r,
                    timeout=60, interval=0.3, what=f"intake answering POST {path}")


def _http_body(channel: str, details: dict[str, Any], text: str, marker: str) -> dict[str, Any]:
    return {"channel": channel, "property_id": "LY", "unit": "2-1503", "external_id": f"{channel}-{marker}",
            "reporter": {"kind": "resident", "name": NAME, "phone": PHONE}, "description": text,
            "agent_id": "agent-e2e", "channel_details": details}


@pytest.mark.parametrize("channel,details,text,category,priority", HTTP_CASES + INBOUND_CASES,
                         ids=[c[0] for c in HTTP_CASES + INBOUND_CASES])
def test_each_channel_registers_with_its_fields_and_classification(
        platform: Any, channel: str, details: dict[str, Any], text: str, category: str | None,
        priority: str | None) -> None:
    marker = uuid.uuid4().hex[:8]
    body = _http_body(channel, details, text, marker)
    if channel in ("iot", "call_centre"):
        body.update(source=f"{channel}-gw", reporter={"kind": "system"} if channel == "iot" else body["reporter"])
        publish_inbound(body, routing_key=f"request.{channel}")
        no = wait_for(lambda: scalar("intake", "SELECT request_no FROM requests WHERE external_id = %s",
                                     (body["external_id"],)), what=f"{channel} request registered")
    else:
        r = _post(platform, "/requests", body)
        assert r.status_code == 201, r.text
        no = r.json()["request_no"]
        assert r.json()["owner_agent"] == "agent-e2e"
    got = platform.api("GET", f"/requests/{no}", key="read")
    assert got.status_code == 200, got.text
    data = got.json()
    assert data["channel"] == channel
    for k, v in details.items():
        if k == "caller_number":
            assert data["channel_details"][k] == "136****5432"  # masked for a key without `pii`
        else:
            assert data["channel_details"][k] == v, (k, data["channel_details"])
    if category:
        assert data["category"] == category, data
    if priority:
        assert data["priority"] == priority
    assert data["auto_classification"]["confidence"] >= 0
    assert data["owner_agent"]
    assert any(e["event_type"] == "RequestRegistered" for e in data["timeline"])
    if channel != "iot":
        assert data["reporter"]["phone"] == "136****5432" and NAME not in got.text
        full = platform.api("GET", f"/requests/{no}", key="all").json()
        assert full["reporter"]["phone"] == PHONE


def test_staff_actions_and_letters_over_http(platform: Any) -> None:
    r = _post(platform, "/requests", _http_body("online", {"platform": "app"}, "楼道灯不亮", uuid.uuid4().hex[:8]))
    assert r.status_code == 201, r.text
    no = r.json()["request_no"]
    assert r.json()["acknowledgement_required"] is True
    promised = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    ack = platform.api("POST", f"/requests/{no}/acknowledge", key="staff",
                       json={"how": "app", "promised_at": promised, "by": "agent-e2e"})
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged", ack.text
    bad = platform.api("POST", f"/requests/{no}/handover", key="staff", json={"to_agent": "x y", "by": "agent-e2e"})
    assert bad.status_code == 422 and {"to_agent", "reason"} <= set(bad.json()["errors"])
    assert platform.api("POST", f"/requests/{no}/cancel", key="read",
                        json={"reason": "no", "by": "a"}).status_code == 403
    hand = platform.api("POST", f"/requests/{no}/handover", key="staff",
                        json={"to_agent": "agent-night", "reason": "交接班", "by": "agent-e2e"})
    assert hand.status_code == 200 and hand.json()["owner_agent"] == "agent-night"
    letter = platform.api("POST", "/letters", key="staff", json={
        "property_id": "LY", "kind": "complaint", "received_date": TODAY, "subject": "垃圾清运不及时",
        "logged_by": "agent-e2e", "area": "5栋垃圾站", "sender": {"name": NAME, "phone": PHONE}})
    assert letter.status_code == 201, letter.text
    queue = platform.api("GET", "/letters?routed_to=cs_assistant", key="read").json()["items"]
    assert letter.json()["letter_id"] in [x["letter_id"] for x in queue]
    decided = platform.api("POST", f"/letters/{letter.json()['letter_id']}/decide", key="staff",
                           json={"track": True, "reason": "需跟踪处理", "by": "assistant-02"})
    assert decided.status_code == 200 and decided.json()["request_no"], decided.text


def test_reporter_name_and_phone_never_reach_the_logs(platform: Any) -> None:
    r = _post(platform, "/requests", _http_body("phone", {}, "门禁卡失效", uuid.uuid4().hex[:8]))
    assert r.status_code == 201
    publish_inbound({**_http_body("call_centre", {"caller_number": PHONE, "call_id": "cc-pii"}, "水压低",
                                  uuid.uuid4().hex[:8]), "source": "cc-gw"}, routing_key="request.call_centre")
    wait_for(lambda: scalar("intake", "SELECT count(*) FROM contacts WHERE caller_number = %s", (PHONE,)),
             what="the call registered")
    logs = platform.logs()
    assert "RequestRegistered" in logs or "intake" in logs
    assert PHONE not in logs and NAME not in logs


def test_registrations_are_counted_by_channel_class_priority_and_property(platform: Any) -> None:
    r = _post(platform, "/requests", {**_http_body("visit", {}, "电梯困人了", uuid.uuid4().hex[:8]),
                                      "property_id": "HY", "unit": "1-0101"})
    assert r.status_code == 201, r.text

    def sample(labels: str) -> float | None:
        for line in platform.metrics("intake").splitlines():
            if line.startswith(f"intake_requests_registered_total{{{labels}}}"):
                return float(line.rsplit(" ", 1)[1])
        return None

    assert (sample('channel="visit",class="repair",priority="emergency",property="HY"') or 0) >= 1
    # Children exist before any traffic (read as zero, not absent), for every property in the table.
    assert sample('channel="iot",class="other",priority="planned",property="JH"') == 0.0
