"""What the services recorded: hop rates in a window, backlog over time, exactly-once per hop, latencies.

Everything is read from the services' own tables with the Postgres superuser: intake.requests and timelines
(`at` is the service's own time of the event, written in the same transaction as the state).
"""
from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

import psycopg

from bench import infra, settings

# hop -> (schema, event_type, extra filter on the timeline row)
HOPS: dict[str, tuple[str, str, str]] = {
    "registered": ("intake", "RequestRegistered", ""),
    "routed": ("dispatch", "WorkOrderCreated", ""),
    "assigned": ("dispatch", "WorkOrderAssigned", ""),
    "first_clock_started": ("escalation", "ClockStarted", "AND data->>'clock' = 'first_response'"),
    # on_site starts on the assignment: the last clock the intake -> dispatch -> escalation flow starts.
    "clocks_started": ("escalation", "ClockStarted", "AND data->>'clock' = 'on_site'"),
}


def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    v = sorted(values)

    def p(q: float) -> float:
        return round(v[min(len(v) - 1, max(0, int(round(q * len(v) + 0.5)) - 1))] * 1000, 1)

    return {"n": len(v), "p50_ms": p(0.50), "p95_ms": p(0.95), "p99_ms": p(0.99), "max_ms": round(v[-1] * 1000, 1)}


def hop_total(conn: psycopg.Connection[Any], hop: str) -> int | None:
    schema, event_type, extra = HOPS[hop]
    try:
        row = conn.execute(f"SELECT count(*) FROM {schema}.timeline WHERE event_type = %s {extra}",
                           (event_type,)).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else 0


def hop_rates(t0: float, t1: float) -> dict[str, float | None]:
    """Events per second each hop recorded with its own timestamp inside [t0, t1) (epoch seconds)."""
    out: dict[str, float | None] = {}
    with infra.admin() as conn:
        for hop, (schema, event_type, extra) in HOPS.items():
            try:
                n = conn.execute(f"SELECT count(*) FROM {schema}.timeline WHERE event_type = %s {extra} "
                                 "AND at >= to_timestamp(%s) AND at < to_timestamp(%s)",
                                 (event_type, t0, t1)).fetchone()[0]  # type: ignore[index]
                out[hop] = round(n / (t1 - t0), 1)
            except psycopg.Error:
                out[hop] = None
    return out


class HopCounter:
    """Each hop's running count, read every sample without scanning the timeline: a full `count(*)` every 2 s
    of each hop was a sequential scan of tables that reach 600,000 rows late in a full run (11 % of the
    database's statement time in a 200/s step, taken from the platform it measures). Rows up to a watermark
    are counted once; each sample reads only the primary-key range above it. The watermark is the highest id
    seen LAG samples ago (4 s at the usual interval), so a row whose id was taken before a later row's but whose
    transaction committed after that row was counted is still found: a service takes its timeline ids in its
    batch's last statement before the commit."""

    LAG = 2  # samples

    def __init__(self) -> None:
        self._below: dict[str, int] = {}  # hop -> rows with id <= watermark
        self._mark: dict[str, int] = {}  # hop -> watermark
        self._tops: dict[str, list[int]] = {}  # hop -> highest id seen at each sample, newest last

    def totals(self, conn: psycopg.Connection[Any]) -> dict[str, int | None]:
        return {hop: self._total(conn, hop) for hop in HOPS}

    def _total(self, conn: psycopg.Connection[Any], hop: str) -> int | None:
        schema, event_type, extra = HOPS[hop]
        tops = self._tops.setdefault(hop, [])
        mark = self._mark.get(hop, 0)
        new_mark = max(mark, tops[-self.LAG]) if len(tops) >= self.LAG else mark
        try:
            row = conn.execute(
                f"SELECT count(*) FILTER (WHERE id <= %s), count(*), max(id) FROM {schema}.timeline "
                f"WHERE id > %s AND event_type = %s {extra}", (new_mark, mark, event_type),
                prepare=False).fetchone()  # a prepared statement's generic plan scans the table: id > $2 is a guess
        except psycopg.Error:
            return None
        assert row is not None
        settled, above, top = int(row[0]), int(row[1]), row[2]
        total = self._below.get(hop, 0) + above
        self._below[hop] = self._below.get(hop, 0) + settled
        self._mark[hop] = new_mark
        prev = tops[-1] if tops else 0
        tops.append(max(prev, int(top)) if top is not None else prev)
        del tops[:-self.LAG]
        return total


@dataclass
class Sampler:
    """Every `interval` s: published so far, queue depths, and each hop's count (the backlog over time)."""

    vhost: str
    published: Callable[[], int]
    interval: float = 2.0
    counts: Callable[[psycopg.Connection[Any]], dict[str, int | None]] | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _hops: HopCounter = field(default_factory=HopCounter)

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        with infra.admin() as conn:
            base = self._counts(conn)
            while not self._stop.is_set():
                t = time.time()
                sample: dict[str, Any] = {"t": round(t, 2), "published": self.published()}
                try:
                    sample["queues"] = infra.queue_depths(self.vhost)
                except Exception:  # the management API refreshes lazily; a missed sample is not an error
                    sample["queues"] = {}
                now = self._counts(conn)
                sample["pg_active"] = pg_activity(conn)
                sample.update({k: (v - (base.get(k) or 0)) if v is not None else None for k, v in now.items()})
                self.samples.append(sample)
                self._stop.wait(max(0.0, self.interval - (time.time() - t)))

    def _counts(self, conn: psycopg.Connection[Any]) -> dict[str, int | None]:
        if self.counts is not None:
            return self.counts(conn)
        return self._hops.totals(conn)

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        return self.samples


def pg_activity(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Active backends of the benchmark database by application and what they wait on (None: on CPU)."""
    try:
        rows = conn.execute(
            "SELECT application_name, coalesce(wait_event_type || ':' || wait_event, 'cpu'), count(*) "
            "FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
            "AND pid <> pg_backend_pid() GROUP BY 1, 2").fetchall()
    except psycopg.Error:
        return {}
    return {f"{r[0] or '?'}/{r[1]}": int(r[2]) for r in rows}


def waits_summary(samples: list[dict[str, Any]], t0: float, t1: float) -> dict[str, float]:
    """Mean number of active backends per (application, wait) over the window: where the database time goes."""
    win = [s for s in samples if t0 <= s["t"] <= t1 and "pg_active" in s]
    total: dict[str, float] = {}
    for s in win:
        for k, v in s["pg_active"].items():
            total[k] = total.get(k, 0.0) + v
    return {k: round(v / len(win), 2) for k, v in sorted(total.items(), key=lambda kv: -kv[1])} if win else {}


def slope(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    if den == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in points) / den


def backlog_trend(samples: list[dict[str, Any]], t0: float, t1: float, last_hop: str) -> dict[str, Any]:
    """Slope (messages/s) of published minus registered, published minus the last hop, and of queued messages,
    over the steady window; positive and proportional to the rate means the platform falls behind."""
    win = [s for s in samples if t0 <= s["t"] <= t1]
    out: dict[str, Any] = {"samples": len(win)}
    for name, fn in {
        "published_minus_registered": lambda s: s["published"] - (s.get("registered") or 0),
        f"published_minus_{last_hop}": lambda s: s["published"] - (s.get(last_hop) or 0),
        "queued_messages": lambda s: sum(s.get("queues", {}).values()),
    }.items():
        pts = [(s["t"], float(fn(s))) for s in win]
        k = slope(pts)
        out[name] = {"slope_per_s": None if k is None else round(k, 2),
                     "start": pts[0][1] if pts else None, "end": pts[-1][1] if pts else None}
    return out


# ----------------------------------------------------------------------------------------------- exactness
def load_published(conn: psycopg.Connection[Any], external_ids: list[str], source: str = settings.SOURCE) -> None:
    conn.execute("DROP TABLE IF EXISTS bench_pub")
    conn.execute("CREATE TEMP TABLE bench_pub (external_id text PRIMARY KEY)")
    with conn.cursor().copy("COPY bench_pub (external_id) FROM STDIN") as cp:
        cp.write("\n".join(external_ids) + ("\n" if external_ids else ""))
    conn.execute("ANALYZE bench_pub")
    conn.execute("DROP TABLE IF EXISTS bench_reg")
    conn.execute("CREATE TEMP TABLE bench_reg AS SELECT p.external_id, r.request_no, r.reported_at "
                 "FROM bench_pub p LEFT JOIN intake.requests r ON r.source = %s AND r.external_id = p.external_id",
                 (source,))
    conn.execute("CREATE INDEX ON bench_reg (request_no)")
    conn.execute("ANALYZE bench_reg")


def _per_request(conn: psycopg.Connection[Any], schema: str, event_type: str, extra: str = "") -> dict[str, int]:
    row = conn.execute(
        f"""SELECT count(*) FILTER (WHERE coalesce(t.n, 0) = 0), count(*) FILTER (WHERE t.n > 1),
                   coalesce(sum(t.n - 1) FILTER (WHERE t.n > 1), 0)
            FROM bench_reg r LEFT JOIN (SELECT request_no, count(*) AS n FROM {schema}.timeline
                                        WHERE event_type = %s {extra} GROUP BY request_no) t USING (request_no)
            WHERE r.request_no IS NOT NULL""", (event_type,)).fetchone()
    assert row is not None
    return {"lost": int(row[0]), "duplicated_requests": int(row[1]), "extra_events": int(row[2])}


def exactly_once(external_ids: list[str], source: str = settings.SOURCE) -> dict[str, Any]:
    """For every confirmed publish: registered once (intake.requests by external_id, one RequestRegistered), routed
    and assigned once (dispatch), each clock started once (escalation), lost / duplicated per hop."""
    out: dict[str, Any] = {"published": len(external_ids)}
    with infra.admin() as conn:
        load_published(conn, external_ids, source)
        lost = conn.execute("SELECT count(*) FROM bench_reg WHERE request_no IS NULL").fetchone()[0]  # type: ignore
        extra = conn.execute("SELECT count(*) FROM intake.requests r WHERE r.source = %s AND NOT EXISTS "
                             "(SELECT 1 FROM bench_pub p WHERE p.external_id = r.external_id)",
                             (source,)).fetchone()[0]  # type: ignore[index]
        hops: dict[str, Any] = {"registered": {"lost": int(lost), "unpublished_rows": int(extra)}}
        checks = {
            "registered": ("intake", "RequestRegistered", ""),
            "routed": ("dispatch", "WorkOrderCreated", ""),
            "assigned": ("dispatch", "WorkOrderAssigned", ""),
            "clock_first_response": ("escalation", "ClockStarted", "AND data->>'clock' = 'first_response'"),
            "clock_on_site": ("escalation", "ClockStarted", "AND data->>'clock' = 'on_site'"),
        }
        for hop, (schema, event_type, flt) in checks.items():
            try:
                with conn.transaction():
                    hops.setdefault(hop, {}).update({"timeline": _per_request(conn, schema, event_type, flt)})
            except psycopg.Error as exc:
                hops.setdefault(hop, {})["error"] = str(exc).splitlines()[0]
        # The services' own state tables (unique keys there make a duplicate impossible; a missing row is a loss).
        state_checks = {
            "routed": "SELECT count(*) FROM bench_reg r WHERE r.request_no IS NOT NULL AND NOT EXISTS "
                      "(SELECT 1 FROM dispatch.work_orders w WHERE w.request_no = r.request_no)",
            "assigned": "SELECT count(*) FROM bench_reg r WHERE r.request_no IS NOT NULL AND NOT EXISTS "
                        "(SELECT 1 FROM dispatch.work_orders w WHERE w.request_no = r.request_no "
                        "AND w.technician_id IS NOT NULL)",
            "clock_first_response": "SELECT count(*) FROM bench_reg r WHERE r.request_no IS NOT NULL AND NOT EXISTS "
                                    "(SELECT 1 FROM escalation.clocks c WHERE c.request_no = r.request_no "
                                    "AND c.kind = 'first_response')",
        }
        for hop, sql in state_checks.items():
            try:
                with conn.transaction():
                    hops[hop]["state_table_missing"] = int(conn.execute(sql).fetchone()[0])  # type: ignore[index]
            except psycopg.Error as exc:
                hops[hop]["state_table_error"] = str(exc).splitlines()[0]
        try:
            with conn.transaction():
                dup_clocks = conn.execute(
                    "SELECT count(*) FROM (SELECT t.request_no, t.data->>'clock' FROM escalation.timeline t "
                    "JOIN bench_reg r USING (request_no) WHERE t.event_type = 'ClockStarted' "
                    "GROUP BY 1, 2 HAVING count(*) > 1) d").fetchone()[0]  # type: ignore[index]
            hops["clocks_any"] = {"duplicated_clock_starts": int(dup_clocks)}
        except psycopg.Error as exc:
            hops["clocks_any"] = {"error": str(exc).splitlines()[0]}
    out["hops"] = hops
    out["ok"] = _all_exact(hops)
    return out


def _all_exact(hops: dict[str, Any]) -> bool:
    for h in hops.values():
        if "error" in h or "state_table_error" in h:
            return False
        if any(h.get(k) for k in ("lost", "unpublished_rows", "state_table_missing", "duplicated_clock_starts")):
            return False
        t = h.get("timeline")
        if t and (t["lost"] or t["duplicated_requests"]):
            return False
    return True


def drained(external_count_sql_ok: Callable[[], bool], timeout: float, poll: float = 1.0) -> tuple[bool, float]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if external_count_sql_ok():
            return True, round(time.monotonic() - t0, 1)
        time.sleep(poll)
    return False, round(time.monotonic() - t0, 1)


def platform_caught_up(expected: int, since_counts: dict[str, int | None], vhost: str = settings.VHOST) -> bool:
    """Every hop has recorded `expected` more events than at `since_counts`, and no queue holds messages."""
    with infra.admin() as conn:
        for hop in HOPS:
            n = hop_total(conn, hop)
            if n is None or n - (since_counts.get(hop) or 0) < expected:
                return False
    try:
        depths = infra.queue_depths(vhost)
    except Exception:
        return False
    return not any(v for k, v in depths.items() if not k.endswith(".dlq"))


def totals() -> dict[str, int | None]:
    with infra.admin() as conn:
        return {hop: hop_total(conn, hop) for hop in HOPS}


# ----------------------------------------------------------------------------------------------- latency
def latencies(external_ids: list[str], source: str = settings.SOURCE) -> dict[str, Any]:
    """publish (`reported_at`, written by the publisher at publish time) -> each hop's own timestamp."""
    out: dict[str, Any] = {}
    with infra.admin() as conn:
        load_published(conn, external_ids, source)
        queries = {
            "registered": "SELECT min(t.at) FROM intake.timeline t WHERE t.request_no = r.request_no "
                          "AND t.event_type = 'RequestRegistered'",
            "assigned": "SELECT min(t.at) FROM dispatch.timeline t WHERE t.request_no = r.request_no "
                        "AND t.event_type = 'WorkOrderAssigned'",
            "clock_first_response_started": "SELECT min(t.at) FROM escalation.timeline t WHERE t.request_no = "
                                            "r.request_no AND t.event_type = 'ClockStarted' "
                                            "AND t.data->>'clock' = 'first_response'",
            "all_clocks_started": "SELECT max(t.at) FROM escalation.timeline t WHERE t.request_no = r.request_no "
                                  "AND t.event_type = 'ClockStarted' AND t.data->>'clock' IN "
                                  "('first_response', 'on_site')",
        }
        for name, sub in queries.items():
            try:
                with conn.transaction():
                    rows = conn.execute(f"SELECT extract(epoch FROM (({sub}) - r.reported_at)) FROM bench_reg r "
                                        "WHERE r.request_no IS NOT NULL").fetchall()
                vals = [float(x[0]) for x in rows if x[0] is not None]
                out[name] = percentiles(vals) | {"missing": len(rows) - len(vals)}
            except psycopg.Error as exc:
                out[name] = {"error": str(exc).splitlines()[0]}
    return out


def ids_text(ids: list[str]) -> io.StringIO:
    return io.StringIO("\n".join(ids))
