"""Timers under faults (issue 10 item 3): three escalation instances share N deadlines falling due over a window;
one instance is SIGKILLed (and restarted) mid-window and Postgres is restarted once; each deadline must fire exactly
once (one fired row, one ClockBreached per clock) and none more than 5 s late (fired_at - due_at).

Clocks are bulk-loaded the way tests/integration/test_escalation_three_instances.py loads them: real domain clocks
(start_clock under a one-rung seconds policy saved as a new policy version), their breach timer rows, COPY.
"""
from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import yaml

from services.common.config import REPO_ROOT
from services.escalation.domain.policy import Policy
from tests.chaos import infra
from tests.support import bulk_insert_breach_timers


def _conn() -> psycopg.Connection[Any]:
    return psycopg.connect(infra.db_url("escalation"), autocommit=True, options="-c search_path=escalation",
                           connect_timeout=3)


def _policy(conn: psycopg.Connection[Any]) -> Policy:
    doc = yaml.safe_load((REPO_ROOT / "tests" / "e2e" / "policy_seconds.yml").read_text(encoding="utf-8"))
    # One rung: a breach tells the front desk and climbs no further, so only breaches are under test.
    doc["ladder"] = [{"rung": "front_desk", "wait": {"hours": 1}}]
    doc["conditions"] = []
    version = conn.execute("SELECT coalesce(max(version), 0) + 1 FROM policy_versions").fetchone()[0]  # type: ignore
    policy = Policy.from_dict({**doc, "version": version})
    conn.execute("INSERT INTO policy_versions (version, policy, digest, source) VALUES (%s, %s, %s, 'chaos')",
                 (version, json.dumps(policy.to_dict()), uuid.uuid4().hex))
    return policy




def _consumers() -> int:
    try:
        return infra.queues().get("escalation.events", {}).get("consumers", 0)
    except Exception:
        return 0


def run(platform: Any, n: int, window: float, *, server_faults: bool, rng: random.Random) -> dict[str, Any]:
    t_begin = time.monotonic()
    for label in ("escalation-2", "escalation-3"):
        platform.start_extra_escalation(label)
    end = time.monotonic() + 120
    while _consumers() < 3 and time.monotonic() < end:
        time.sleep(0.5)
    instances = _consumers()
    out: dict[str, Any] = {"deadlines": n, "window_s": window, "instances": instances, "faults": []}
    with _conn() as conn:
        policy = _policy(conn)
        lead = 3.0 + n / 4000  # the COPY must finish before the first deadline falls due
        first_due = datetime.now(UTC) + timedelta(seconds=lead)
        t_insert = time.monotonic()
        prefix = bulk_insert_breach_timers(conn, policy, n, first_due, window)
        out["insert_s"] = round(time.monotonic() - t_insert, 2)
    out["prefix"] = prefix
    first_epoch = first_due.timestamp()
    kill_at = first_epoch + window * rng.uniform(0.2, 0.4)
    pg_at = first_epoch + window * rng.uniform(0.55, 0.75)
    victim = rng.choice(["escalation-2", "escalation-3"])
    _sleep_until(kill_at)
    platform.kill_extra(victim)
    out["faults"].append({"kind": "kill", "target": victim, "at_s": round(time.time() - first_epoch, 2)})
    time.sleep(1.0)
    platform.start_extra_escalation(victim)
    if server_faults:
        _sleep_until(pg_at)
        t = time.time()
        infra.restart_postgres()
        out["faults"].append({"kind": "postgres", "at_s": round(t - first_epoch, 2),
                              "took_s": round(time.time() - t, 2)})
    # Wait for every deadline to fire (an observable outcome, bounded).
    deadline = first_epoch + window + 120
    left = n
    while time.time() < deadline:
        try:
            with _conn() as conn:
                left = int(conn.execute(
                    "SELECT count(*) FROM deadlines d JOIN clocks c USING (clock_id) WHERE c.request_no LIKE %s "
                    "AND d.fired_at IS NULL", (prefix + "-%",)).fetchone()[0])  # type: ignore[index]
            if left == 0:
                break
        except psycopg.Error:
            pass
        time.sleep(0.5)
    # The ClockBreached events are written to the timeline in the firing transaction; wait for the outbox to empty
    # too so "delivered" holds as well.
    with _conn() as conn:
        fired, worst, p50, p99 = conn.execute(
            "SELECT count(*), max(l), percentile_cont(0.5) WITHIN GROUP (ORDER BY l), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY l) FROM (SELECT extract(epoch FROM d.fired_at - d.due_at) l "
            "FROM deadlines d JOIN clocks c USING (clock_id) WHERE c.request_no LIKE %s AND d.fired_at IS NOT NULL) x",
            (prefix + "-%",)).fetchone()  # type: ignore[misc]
        per_clock = dict(conn.execute(
            "SELECT n, count(*) FROM (SELECT c.request_no, count(t.id) AS n FROM clocks c LEFT JOIN timeline t "
            "ON t.request_no = c.request_no AND t.event_type = 'ClockBreached' WHERE c.request_no LIKE %s "
            "GROUP BY 1) x GROUP BY n", (prefix + "-%",)).fetchall())
        breached = int(conn.execute("SELECT count(*) FROM clocks WHERE request_no LIKE %s AND state = 'breached'",
                                    (prefix + "-%",)).fetchone()[0])  # type: ignore[index]
    out.update({
        "fired_rows": int(fired), "unfired": left, "breached_clocks": breached,
        "clock_breached_events_per_clock": {str(k): int(v) for k, v in per_clock.items()},
        "exactly_once": int(fired) == n and per_clock == {1: n} and breached == n,
        "max_lateness_s": round(float(worst), 3) if worst is not None else None,
        "p50_lateness_s": round(float(p50), 3) if p50 is not None else None,
        "p99_lateness_s": round(float(p99), 3) if p99 is not None else None,
        "late_over_5s": None,
        "duration_s": round(time.monotonic() - t_begin, 1),
    })
    with _conn() as conn:
        out["late_over_5s"] = int(conn.execute(
            "SELECT count(*) FROM deadlines d JOIN clocks c USING (clock_id) WHERE c.request_no LIKE %s "
            "AND d.fired_at - d.due_at > interval '5 seconds'", (prefix + "-%",)).fetchone()[0])  # type: ignore[index]
    return out


def _sleep_until(epoch: float) -> None:
    delay = epoch - time.time()
    if delay > 0:
        time.sleep(delay)
