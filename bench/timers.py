"""Timers at scale: open clocks bulk-loaded into escalation's schema (services/escalation/migrations/0002), some of
them due within a minute; lateness of each firing with one and with several escalation instances; the cost and plan
of one due-timer pass (the query of services/escalation/adapters/repository.py due_timers) as the open count grows.

Clocks are copies of a real running clock the platform started during the run (same policy version, rule and facts),
each with its own id, request number and start, and their timers rows (`warning@<iso>` / `breach@<iso>` tokens as
Clock.timers() computes them), so the service fires them through its real code path.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import psycopg

from bench import infra

ISO = """to_char({t} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00'"""
# The due query, as services/escalation/adapters/repository.py due_timers runs it (TIMER_BATCH rows).
DUE_SQL = ("SELECT id, clock_id, kind, token, due_at FROM escalation.deadlines WHERE fired_at IS NULL AND due_at <= %s "
           "ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED")


def template(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    """A running clock with a plain (not working-day) target, started by the platform during the run."""
    row = conn.execute(
        "SELECT clock_id FROM escalation.clocks WHERE state = 'running' AND kind = 'resolution' "
        "AND NOT calendar_fallback AND rule = 'ordinary' AND jsonb_array_length(data->'pauses') = 0 LIMIT 1").fetchone()
    if row is None:
        return None
    share = conn.execute("SELECT (policy->>'warning_share')::float FROM escalation.policy_versions v "
                         "JOIN escalation.clocks c ON c.policy_version = v.version WHERE c.clock_id = %s",
                         (row[0],)).fetchone()
    target = conn.execute("SELECT target_seconds FROM escalation.clocks WHERE clock_id = %s", (row[0],)).fetchone()
    assert target is not None
    return {"clock_id": row[0], "warning_share": float(share[0]) if share and share[0] else 0.8,
            "target_seconds": int(target[0])}


def _insert(conn: psycopg.Connection[Any], tpl: dict[str, Any], prefix: str, n: int, start_expr: str,
            due_kind: str | None = None) -> None:
    """n clocks named <prefix>-<g>, started at start_expr(g), with their warning and breach timers."""
    warn = tpl["target_seconds"] * tpl["warning_share"]
    conn.execute("SET TIME ZONE 'UTC'")
    conn.execute(f"""
        CREATE TEMP TABLE IF NOT EXISTS bench_new_clocks (clock_id uuid, g integer, st timestamptz);
        TRUNCATE bench_new_clocks;
        INSERT INTO bench_new_clocks SELECT gen_random_uuid(), g, {start_expr} FROM generate_series(1, {n}) g;
    """)
    conn.execute(f"""
        INSERT INTO escalation.clocks (clock_id, request_no, kind, state, policy_version, rule, target_seconds,
            started_at, deadline, warn_at, warned, calendar_fallback, category, priority, channel, property_id, data)
        SELECT s.clock_id, '{prefix}-' || s.g, t.kind, 'running', t.policy_version, t.rule, t.target_seconds,
            s.st, s.st + make_interval(secs => t.target_seconds), s.st + make_interval(secs => {warn}), false, false,
            t.category, t.priority, t.channel, t.property_id,
            t.data || jsonb_build_object('clock_id', s.clock_id::text, 'request_no', '{prefix}-' || s.g,
                                         'started_at', {ISO.format(t='s.st')}, 'fired', '[]'::jsonb,
                                         'state', 'running', 'warned_at', NULL)
        FROM bench_new_clocks s, escalation.clocks t WHERE t.clock_id = %s""", (tpl["clock_id"],))
    conn.execute(f"""
        INSERT INTO escalation.deadlines (clock_id, kind, due_at, token)
        SELECT s.clock_id, k.kind, k.due, k.kind || '@' || {ISO.format(t='k.due')}
        FROM bench_new_clocks s,
             LATERAL (VALUES ('warning', s.st + make_interval(secs => {warn})),
                             ('breach', s.st + make_interval(secs => {tpl["target_seconds"]}))) AS k(kind, due)""")


def open_count(conn: psycopg.Connection[Any]) -> int:
    return int(conn.execute("SELECT count(*) FROM escalation.clocks WHERE state IN ('running', 'paused', 'breached')"
                            ).fetchone()[0])  # type: ignore[index]


def load_open(conn: psycopg.Connection[Any], tpl: dict[str, Any], n: int, prefix: str = "TMR") -> float:
    """n open clocks whose timers are hours ahead (they never fire during the run)."""
    t0 = time.monotonic()
    # Starts spread over the last hour: warnings ~18 h and breaches ~23 h ahead with a 24 h target.
    _insert(conn, tpl, prefix, n, "date_trunc('second', now()) - interval '1 hour' "
                                  f"+ g * interval '{3600.0 / max(n, 1):.6f} seconds' + interval '1 microsecond'")
    conn.execute("ANALYZE escalation.clocks")
    conn.execute("ANALYZE escalation.deadlines")
    return round(time.monotonic() - t0, 1)


def load_due(conn: psycopg.Connection[Any], tpl: dict[str, Any], n: int, window_s: float, lead_s: float,
             prefix: str) -> tuple[float, float]:
    """n clocks whose warning falls due between now+lead and now+lead+window; returns that interval (epoch)."""
    warn = tpl["target_seconds"] * tpl["warning_share"]
    t_first = time.time() + lead_s
    step = window_s / max(n, 1)
    _insert(conn, tpl, prefix, n, f"to_timestamp({t_first}) + g * interval '{step:.6f} seconds' "
                                  f"+ interval '1 microsecond' - make_interval(secs => {warn})")
    conn.execute(f"CREATE TEMP TABLE bench_due_{prefix.lower()} AS SELECT clock_id FROM bench_new_clocks")
    return t_first, t_first + window_s


def lateness(conn: psycopg.Connection[Any], prefix: str) -> dict[str, Any]:
    rows = conn.execute(
        f"SELECT extract(epoch FROM (d.fired_at - d.due_at)) FROM escalation.deadlines d "
        f"JOIN bench_due_{prefix.lower()} USING (clock_id) WHERE d.kind = 'warning'").fetchall()
    fired = [float(r[0]) for r in rows if r[0] is not None]
    unfired = len(rows) - len(fired)
    v = sorted(fired)
    if not v:
        return {"fired": 0, "unfired_due": unfired}

    def p(q: float) -> float:
        return round(v[min(len(v) - 1, int(q * len(v)))] * 1000, 1)

    return {"fired": len(v), "unfired_due": unfired, "p50_ms": p(0.5), "p99_ms": p(0.99),
            "max_ms": round(v[-1] * 1000, 1), "min_ms": round(v[0] * 1000, 1)}


def wait_fired(conn: psycopg.Connection[Any], prefix: str, until: float, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if time.time() > until:
            left = conn.execute(
                f"SELECT count(*) FROM escalation.deadlines d JOIN bench_due_{prefix.lower()} USING (clock_id) "
                "WHERE d.kind = 'warning' AND d.fired_at IS NULL").fetchone()[0]  # type: ignore[index]
            if left == 0:
                return True
        time.sleep(1)
    return False


def due_pass_cost(conn: psycopg.Connection[Any], batch: int, runs: int = 5) -> dict[str, Any]:
    """EXPLAIN ANALYZE of one pass of the due query with a full batch due (rolled back: the locks are released)."""
    row = conn.execute("SELECT due_at FROM escalation.deadlines WHERE fired_at IS NULL ORDER BY due_at "
                       "OFFSET %s LIMIT 1", (batch - 1,)).fetchone()
    if row is None:
        return {"error": "fewer unfired timers than one batch"}
    now = row[0]
    times: list[float] = []
    plan_text: list[str] = []
    for _ in range(runs):
        with conn.transaction(force_rollback=True):
            plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + DUE_SQL, (now, batch)).fetchone()[0]  # type: ignore
            times.append(float(plan[0]["Execution Time"]))
    with conn.transaction(force_rollback=True):
        plan_text = [r[0] for r in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + DUE_SQL, (now, batch)).fetchall()]
    unfired = conn.execute("SELECT count(*) FROM escalation.deadlines WHERE fired_at IS NULL").fetchone()[0]  # type: ignore
    return {"open_clocks": open_count(conn), "unfired_timers": int(unfired), "batch": batch,
            "execution_ms_median": round(statistics.median(times), 3), "execution_ms_all": [round(t, 3) for t in times],
            "plan": plan_text}


def escalation_tables_exist() -> bool:
    with infra.admin() as conn:
        return all(infra.table_exists(conn, t) for t in ("escalation.clocks", "escalation.deadlines"))
