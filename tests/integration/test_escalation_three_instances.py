"""Three escalation instances share 10,000 deadlines falling due within a few seconds: each fires exactly once
(one ClockBreached per clock in the timeline, one fired row), promptly (fired_at - due_at; the 1 s target is
measured by `make bench`), and the due-timer query reads the partial index on due_at, not the table."""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, UTC
from typing import Any

import psycopg
import yaml

from services.common.config import REPO_ROOT
from services.escalation.domain.policy import Policy
from services.escalation.entrypoints.service import EscalationService
from tests.support import bulk_insert_breach_timers, db, wait_for

N = 10_000
SPREAD = 15.0  # seconds over which the deadlines fall due: ~670 a second, all on this one process


def one(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def _policy(conn: psycopg.Connection[Any]) -> Policy:
    # A one-rung ladder: a breach tells the front desk and climbs no further, so the test measures breaches only.
    doc = yaml.safe_load((REPO_ROOT / "tests" / "e2e" / "policy_seconds.yml").read_text(encoding="utf-8"))
    doc["ladder"] = [{"rung": "front_desk", "wait": {"hours": 1}}]
    doc["conditions"] = []
    version = one(conn, "SELECT coalesce(max(version), 0) + 1 FROM policy_versions")
    policy = Policy.from_dict({**doc, "version": version})
    conn.execute("INSERT INTO policy_versions (version, policy, digest, source) VALUES (%s, %s, %s, 'test')",
                 (version, json.dumps(policy.to_dict()), uuid.uuid4().hex))
    return policy




def test_three_instances_fire_ten_thousand_deadlines_exactly_once_and_on_time(run_service: Any) -> None:
    for _ in range(3):
        run_service(EscalationService, ESCALATION_POLICY="tests/e2e/policy_seconds.yml", TIMER_INTERVAL=0.1,
                    DB_POOL_SIZE=4, max_workers=10)
    with db("escalation") as conn:
        policy = _policy(conn)
        prepared = time.monotonic()
        first_due = datetime.now(UTC) + timedelta(seconds=5)
        prefix = bulk_insert_breach_timers(conn, policy, N, first_due, SPREAD)
        assert time.monotonic() - prepared < 5, "the clocks must be in before the first one falls due"
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT id, clock_id, kind, token, due_at FROM deadlines WHERE fired_at IS NULL "
            "AND due_at <= now() ORDER BY due_at LIMIT 200 FOR UPDATE SKIP LOCKED").fetchall())
        assert "deadlines_due" in plan, plan

        def all_fired() -> bool:
            return one(conn, "SELECT count(*) FROM deadlines d JOIN clocks c USING (clock_id) "
                       "WHERE c.request_no LIKE %s AND d.fired_at IS NOT NULL", (prefix + "%",)) == N

        wait_for(all_fired, timeout=30, interval=0.5, what="every deadline fired")
        fired_rows, worst = one(conn,
            "SELECT count(*), max(extract(epoch FROM d.fired_at - d.due_at)) FROM deadlines d JOIN clocks c "
            "USING (clock_id) WHERE c.request_no LIKE %s AND d.kind = 'breach' AND d.fired_at IS NOT NULL",
            (prefix + "%",))
        per_clock = conn.execute(
            "SELECT n, count(*) FROM (SELECT request_no, count(*) AS n FROM timeline WHERE request_no LIKE %s "
            "AND event_type = 'ClockBreached' GROUP BY request_no) x GROUP BY n", (prefix + "%",)).fetchall()
        breached = one(conn, "SELECT count(*) FROM clocks WHERE request_no LIKE %s AND state = 'breached'",
                       (prefix + "%",))
    assert fired_rows == N
    assert dict(per_clock) == {1: N}, f"ClockBreached per clock: {per_clock}"
    assert breached == N
    # The 1 s target is measured by `make bench` (1,000,000 clocks open: max 130 ms with three instances,
    # docs/performance.md). Here, inside the whole suite on a busy 2-core machine, one run saw 2.1 s: this bound
    # only catches a design that fires on a slow sweep instead of by due time.
    print(f"three instances: {N} deadlines fired once each; worst lateness {float(worst):.3f}s")
    assert float(worst) <= 5.0, f"worst lateness {worst:.3f}s"
