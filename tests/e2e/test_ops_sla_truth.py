"""The SLA figures on the dashboards are the truth (issue 7, item 2).

A mixed day of traffic (500+ requests over every class and channel; HTTP and the inbound exchange) runs
through the platform under the seconds-scale policy; some requests are acknowledged, worked and resolved,
the rest are left to breach. Then each clock's met and breached counts and its attainment, as escalation's
/metrics exports them, are compared with the same figures recomputed independently from the services' own
event records: every ClockMet / ClockBreached escalation published (its timeline), labelled by the channel and
property intake registered the request with. They must be equal.
"""
from __future__ import annotations

import itertools
import re
import time
import uuid
from collections import Counter
from typing import Any

from tests.e2e.conftest import Platform
from tests.support import admin_conn, publish_inbound, wait_for

TEXTS = {
    "repair": ["厨房水管漏水", "卫生间下水道堵塞", "客厅灯不亮，跳闸了", "The bedroom window is broken"],
    "emergency_medical": ["老人在家晕倒了，需要叫120"],
    "complaint": ["投诉：保安态度很差", "投诉保洁服务质量太差，楼道一直没人打扫"],
    "consultation": ["物业费怎么交", "请问停车月卡怎么办理"],
    "security_incident": ["车库里有人撬车门，正在偷东西"],
    "disaster": ["台风把树刮倒了压在路上"],
    "other": ["想借一个梯子用一下"],
}
HTTP_CHANNELS = ["phone", "visit", "online", "email", "patrol"]
VERDICT = re.compile(r'^sla_clock_verdicts_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$', re.M)


def _labels(text: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', text))


def metric_verdicts(platform: Platform) -> Counter[tuple[str, str, str, str]]:
    out: Counter[tuple[str, str, str, str]] = Counter()
    for m in VERDICT.finditer(platform.metrics("escalation")):
        lab = _labels(m.group("labels"))
        out[(lab["clock"], lab["outcome"], lab["channel"], lab["property"])] += int(float(m.group("value")))
    return +out


def recomputed_verdicts() -> Counter[tuple[str, str, str, str]]:
    """From the event records: one verdict per clock, breached if its deadline passed unmet."""
    with admin_conn() as conn:
        registered = {no: (d["channel"], d["property_id"]) for no, d in conn.execute(
            "SELECT request_no, data FROM intake.timeline WHERE event_type = 'RequestRegistered'").fetchall()}
        # Shift handovers are clocked too; their subject is the handover, known to escalation from dispatch's
        # ShiftHandoverPublished, not a request intake registered.
        registered.update({no: (ch, prop) for no, ch, prop in conn.execute(
            "SELECT request_no, channel, property_id FROM escalation.requests WHERE category = 'handover'"
        ).fetchall()})
        rows = conn.execute(
            "SELECT event_type, data FROM escalation.timeline WHERE event_type IN ('ClockMet', 'ClockBreached')"
        ).fetchall()
    verdict: dict[str, tuple[str, str, str]] = {}
    for event_type, d in rows:
        breached = event_type == "ClockBreached" or not d.get("on_time", True)
        if verdict.get(d["clock_id"], ("", "", ""))[1] == "breached":
            continue
        verdict[d["clock_id"]] = (d["clock"], "breached" if breached else "met", d["request_no"])
    out: Counter[tuple[str, str, str, str]] = Counter()
    for clock, outcome, request_no in verdict.values():
        channel, prop = registered.get(request_no, ("", ""))
        assert prop, f"a verdict for {request_no}, which no service registered"
        out[(clock, outcome, channel, prop)] += 1
    return out


def _submit_mix(platform: Platform, n: int) -> list[str]:
    numbers: list[str] = []
    combos = itertools.cycle(itertools.product(TEXTS.items(), HTTP_CHANNELS + ["iot", "call_centre"]))
    pending_amqp: list[str] = []
    for i in range(n):
        (category, texts), channel = next(combos)
        text = texts[i % len(texts)]
        floor, flat = 1 + i % 30, 1 + i % 4
        prop, unit = ("LY", f"{1 + i % 6}-{floor}0{flat}") if i % 2 else ("JH", f"{1 + i % 5}-{floor}0{flat}")
        body: dict[str, Any] = {"channel": channel, "property_id": prop, "unit": unit, "description": text,
                                "reporter": {"kind": "resident"}, "agent_id": "agent-truth"}
        if channel in ("iot", "call_centre"):
            ext = f"truth-{uuid.uuid4()}"
            body.update(source="truth-system", external_id=ext, reporter={"kind": "system"})
            body["channel_details"] = ({"device_id": f"dev-{i}", "reading": 1.5} if channel == "iot"
                                       else {"caller_number": "13800000000", "call_id": f"call-{i}"})
            publish_inbound(body, routing_key=f"request.{channel}")
            pending_amqp.append(ext)
            continue
        body["external_id"] = f"truth-{uuid.uuid4()}"  # the idempotency key other systems' channels require
        r = platform.api("POST", "/requests", json=body)
        assert r.status_code in (200, 201), r.text
        numbers.append(r.json()["request_no"])
    with admin_conn() as conn:
        def all_registered() -> bool:
            row = conn.execute("SELECT count(*) FROM intake.requests WHERE external_id = ANY(%s)",
                               (pending_amqp,)).fetchone()
            return row is not None and row[0] == len(pending_amqp)
        wait_for(all_registered, timeout=60, what="inbound requests registered")
        numbers += [r[0] for r in conn.execute("SELECT request_no FROM intake.requests WHERE external_id = ANY(%s)",
                                               (pending_amqp,)).fetchall()]
    return numbers


def _work(platform: Platform, request_no: str) -> None:
    """Staff acknowledge, and the technician accepts, arrives and resolves: these clocks are met."""
    platform.api("POST", f"/requests/{request_no}/acknowledge",
                 json={"how": "phone", "promised_at": "2099-01-01T00:00:00+00:00", "by": "agent-truth"})
    r = platform.api("GET", f"/requests/{request_no}/work-orders")
    items = r.json() if r.ok else []
    items = items.get("items", items) if isinstance(items, dict) else items
    if not items:
        return
    wo, tech = items[0]["id"], items[0].get("technician_id")
    for action, body in (("accept", {"technician_id": tech, "by": tech}), ("depart", {"by": tech}),
                         ("arrive", {"by": tech}), ("resolve", {"resolution": "处理完毕", "by": tech})):
        if platform.api("POST", f"/work-orders/{wo}/{action}", json=body).status_code != 200:
            return


def test_each_clocks_met_and_breached_counts_and_attainment_in_the_metrics_equal_the_records(
        platform: Platform) -> None:
    numbers = _submit_mix(platform, 520)
    assert len(numbers) >= 500
    for no in numbers[::4]:
        _work(platform, no)
    # Let the short targets (1.5-12 s) run out for the requests nobody worked on.
    wait_for(lambda: sum(v for k, v in recomputed_verdicts().items() if k[1] == "breached") > 50, timeout=60,
             what="breaches")
    # Compare at a moment when the figures are still: two equal scrapes around the recomputation.
    deadline = time.monotonic() + 60
    while True:
        before = metric_verdicts(platform)
        records = recomputed_verdicts()
        after = metric_verdicts(platform)
        if before == after == records or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert after == records
    outcomes = {o for (_, o, _, _) in records}
    assert outcomes == {"met", "breached"}
    channels = {ch for (_, _, ch, _) in records}
    assert set(HTTP_CHANNELS + ["iot", "call_centre"]) <= channels
    for clock in {c for (c, _, _, _) in records}:
        met = sum(v for k, v in records.items() if k[0] == clock and k[1] == "met")
        breached = sum(v for k, v in records.items() if k[0] == clock and k[1] == "breached")
        m_met = sum(v for k, v in after.items() if k[0] == clock and k[1] == "met")
        m_breached = sum(v for k, v in after.items() if k[0] == clock and k[1] == "breached")
        assert (met, breached) == (m_met, m_breached), clock
        assert abs(met / (met + breached) - m_met / (m_met + m_breached)) < 1e-12
