"""Time-based condition rules fire on time, and condition escalations that say `climb: true` climb the ladder:
an in-process container, real Postgres and RabbitMQ, and a policy where 7 days last 4 s (time_scale 4/604800),
with no clocks so that only the condition rules act."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, UTC
from pathlib import Path
from typing import Any

import pytest
import yaml
from nameko.standalone.rpc import ServiceRpcProxy

from services.common.config import REPO_ROOT
from services.escalation.entrypoints.service import EscalationService
from tests.integration.test_escalation_helpers import envelope, new_request_no, publish, timeline
from tests.support import amqp_uri, scalar, wait_for

SCALE = 4 / 604800  # one policy day is 4/7 s
DELAY = timedelta(seconds=4)  # repair_delayed: 7 policy days
WAITS = {"front_desk": {"minutes": 30}, "cs_supervisor": {"days": 3}, "cs_department": {"days": 2},
         "manager": {"days": 1}, "leadership": {"days": 1}}  # scaled: 1 s (at least), 2 s, 1 s, 1 s, 1 s


@pytest.fixture(scope="module")
def condition_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    doc = yaml.safe_load((REPO_ROOT / "services" / "escalation" / "policy.yml").read_text(encoding="utf-8"))
    rules = {r["name"]: r for r in doc["conditions"]}
    doc.update(time_scale=SCALE, clocks={}, description="condition timers test",
               ladder=[{"rung": rung, "wait": wait} for rung, wait in WAITS.items()],
               conditions=[rules["repair_delayed"], {**rules["vip_or_directed"], "climb": True}])
    path = tmp_path_factory.mktemp("policy") / "policy_conditions.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def rpc(run_service: Any, condition_policy: Path) -> Iterator[Any]:
    run_service(EscalationService, ESCALATION_POLICY=str(condition_policy), TIMER_INTERVAL=0.05, DB_POOL_SIZE=4)
    with ServiceRpcProxy("escalation", {"AMQP_URI": amqp_uri()}) as proxy:
        yield proxy


def registered(request_no: str, at: datetime, **kw: Any) -> dict[str, Any]:
    values = {"property_id": "LY", "unit": "5-0801", "channel": "phone", "category": "repair",
              "subcategory": "plumbing", "priority": "normal", "emergency": False, "registered_at": at, **kw}
    return envelope("RequestRegistered", request_no, **values)


def escalations(request_no: str, rule: str) -> list[dict[str, Any]]:
    return [d for t, d in timeline(request_no) if t == "RequestEscalated" and d["rule"] == rule]


def test_a_repair_left_unresolved_escalates_when_seven_days_pass_and_a_resolved_one_does_not(rpc: Any) -> None:
    t0 = datetime.now(UTC)
    late, resolved = new_request_no(), new_request_no()
    publish(registered(late, t0), registered(resolved, t0))
    # Resolved well before its due instant: its due row is dropped.
    publish(envelope("WorkOrderResolved", resolved, property_id="LY", department="engineering",
                     resolved_at=t0 + timedelta(seconds=1)))
    wait_for(lambda: scalar("escalation", "SELECT resolved_at FROM requests WHERE request_no = %s", (resolved,)),
             what="resolution recorded")
    assert scalar("escalation", "SELECT count(*) FROM request_timers WHERE request_no = %s", (resolved,)) == 0

    hit = wait_for(lambda: escalations(late, "repair_delayed"), timeout=20, what="repair_delayed escalation")[0]
    escalated_at = datetime.fromisoformat(hit["escalated_at"])
    assert timedelta(0) <= escalated_at - (t0 + DELAY) < timedelta(seconds=1), escalated_at - t0
    assert hit["reason"] == "维修延误7天以上" and hit["rung"] == "cs_department" and hit["source"] == "condition"
    # Fired once: the row is the record, no row is pending, and the rule is marked as fired for the request.
    assert scalar("escalation", "SELECT count(*) FROM request_timers WHERE request_no = %s AND kind = 'condition' "
                  "AND fired_at IS NOT NULL", (late,)) == 1
    assert scalar("escalation", "SELECT count(*) FROM request_timers WHERE request_no = %s AND fired_at IS NULL",
                  (late,)) == 0
    assert scalar("escalation", "SELECT count(*) FROM condition_fired WHERE request_no = %s", (late,)) == 1
    # The resolved repair's due instant has passed too (same registration time), without an escalation.
    assert escalations(resolved, "repair_delayed") == []
    assert len(escalations(late, "repair_delayed")) == 1
    view = rpc.request_clocks(late)["data"]
    assert [(e["rule"], e["rung"]) for e in view["escalations"]] == [("repair_delayed", "cs_department")]


def test_a_closed_request_is_not_escalated_for_delay(rpc: Any) -> None:
    no = new_request_no()
    t0 = datetime.now(UTC)
    publish(registered(no, t0))
    wait_for(lambda: scalar("escalation", "SELECT count(*) FROM request_timers WHERE request_no = %s AND "
                            "fired_at IS NULL", (no,)) == 1, what="due row of the delay rule")
    publish(envelope("RequestCancelled", no, cancelled_at=t0 + timedelta(milliseconds=500)))
    wait_for(lambda: scalar("escalation", "SELECT count(*) FROM request_timers WHERE request_no = %s", (no,)) == 0,
             what="due row dropped on cancellation")


def test_a_condition_escalation_that_climbs_follows_the_ladder_waits_until_acknowledged(rpc: Any) -> None:
    no = new_request_no()
    publish(registered(no, datetime.now(UTC) + timedelta(hours=1), vip=True))  # not delayed within the test

    def three_rungs() -> Any:
        run = [e for e in rpc.request_clocks(no).get("data", {}).get("escalations", [])
               if e["rule"] == "vip_or_directed"]
        return run[0] if run and len(run[0]["climbs"]) >= 3 else None

    run = wait_for(three_rungs, timeout=20, what="three rungs of a condition escalation")
    climbs = run["climbs"]
    assert [c["rung"] for c in climbs[:3]] == ["cs_supervisor", "cs_department", "manager"]
    at = [datetime.fromisoformat(c["at"]) for c in climbs]
    # Each rung is told exactly the scaled wait of the rung before it.
    assert at[1] - at[0] == timedelta(seconds=2) and at[2] - at[1] == timedelta(seconds=1)

    answer = rpc.acknowledge_escalation(run["escalation_id"], "staff-li")
    assert answer["status"] == 200 and answer["data"]["acknowledged_by"] == "staff-li"
    wait_for(lambda: "EscalationAcknowledged" in [t for t, _ in timeline(no)], what="acknowledged event")
    # Acknowledged: no rung pending, so the climb stops here.
    assert scalar("escalation", "SELECT count(*) FROM request_timers WHERE ref = %s AND fired_at IS NULL",
                  (run["escalation_id"],)) == 0
    told = escalations(no, "vip_or_directed")
    assert len(told) <= 4  # at most the leadership rung, told while the acknowledgement was on its way
    view = next(e for e in rpc.request_clocks(no)["data"]["escalations"] if e["rule"] == "vip_or_directed")
    assert len(view["climbs"]) == len(told) and view["acknowledged_by"] == "staff-li"
