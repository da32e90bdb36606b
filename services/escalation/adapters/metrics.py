"""SLA metrics read from escalation's own tables on each scrape (restart-proof; every replica exports the same).

Verdicts, the elapsed-time histogram, escalations and calendar fallbacks come from counter tables kept in the
same transaction as each verdict (a few hundred rows whatever the number of clocks); open clocks are grouped over
the open clocks only (partial indexes), never the closed history.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from services.escalation.domain.policy import CLOCKS
from services.escalation.service_layer.handlers import ELAPSED_BUCKETS

log = logging.getLogger(__name__)

TIMER_LATENESS = Histogram("escalation_timer_lateness_seconds", "How late a due timer fired (fired_at - due_at)",
                           buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))

LABELS = ["clock", "class", "priority", "channel", "property"]
HISTOGRAM_LABELS = LABELS[:3]

OPEN_SQL = """
SELECT kind, category, priority, channel, property_id,
       CASE WHEN state = 'breached' OR (state = 'running' AND deadline <= %(now)s) THEN 'overdue'
            WHEN warned OR (state = 'running' AND warn_at <= %(now)s) THEN 'warning'
            ELSE 'ok' END AS risk,
       count(*) AS n
FROM clocks WHERE state IN ('running', 'paused', 'breached')
GROUP BY 1, 2, 3, 4, 5, 6
"""


class SlaCollector:
    def __init__(self) -> None:
        self.pool: Any = None
        self.objective = 0.95
        self.failures = 0

    def collect(self) -> Iterable[Metric]:
        started = time.perf_counter()
        errors = CounterMetricFamily("escalation_collector_errors", "Scrapes whose table reads failed")
        duration = GaugeMetricFamily("escalation_collector_duration_seconds", "Time the last scrape's reads took")
        if self.pool is None:
            return []
        try:
            families = self._read()
        except Exception:  # a scrape must not fail because the database is restarting
            log.warning("SLA collector could not read the tables")
            self.failures += 1
            families = []
        errors.add_metric([], float(self.failures))
        duration.add_metric([], time.perf_counter() - started)
        return [*families, errors, duration]

    def _read(self) -> list[Metric]:
        with self.pool.connection(timeout=2) as conn:
            now = conn.execute("SELECT now()").fetchone()[0]
            verdict_rows = conn.execute(
                "SELECT clock, outcome, category, priority, channel, property_id, sum(n)::float8 "
                "FROM verdict_counts GROUP BY 1, 2, 3, 4, 5, 6").fetchall()
            # The histogram by clock, class and priority only: a bucket series per channel and property as well
            # made escalation's /metrics grow fourfold as a day's channels and properties first met a clock, and
            # the dashboards read it by clock. Verdict counts and open clocks keep every label.
            bucket_rows = conn.execute(
                "SELECT clock, category, priority, bucket, sum(n)::float8, sum(total_seconds)::float8 "
                "FROM elapsed_buckets GROUP BY 1, 2, 3, 4").fetchall()
            open_rows = conn.execute(OPEN_SQL, {"now": now}).fetchall()
            esc_rows = conn.execute(
                "SELECT rung, reason, sum(n)::float8 FROM escalation_counts GROUP BY 1, 2").fetchall()
            fb_rows = conn.execute("SELECT clock, sum(n)::float8 FROM fallback_counts GROUP BY 1").fetchall()
            due = conn.execute("SELECT count(*) FROM deadlines WHERE fired_at IS NULL AND due_at <= %s",
                               (now,)).fetchone()[0]

        verdicts = CounterMetricFamily("sla_clock_verdicts", "Clocks with a verdict: met before the deadline, or "
                                       "breached (counted when the deadline passed)", labels=["outcome", *LABELS])
        for clock, outcome, cat, pri, ch, prop, n in verdict_rows:
            verdicts.add_metric([outcome, clock, cat, pri, ch, prop], float(n))

        hist = HistogramMetricFamily("sla_clock_elapsed_seconds", "Running time (pauses excluded) of met clocks",
                                     labels=HISTOGRAM_LABELS)
        per: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0] * (len(ELAPSED_BUCKETS) + 2))
        for clock, cat, pri, bucket, n, total in bucket_rows:
            acc = per[(clock, cat, pri)]
            acc[int(bucket)] += n
            acc[-1] += total
        for key, acc in per.items():
            cumulative, buckets = 0.0, []
            for i, bound in enumerate(ELAPSED_BUCKETS):
                cumulative += acc[i]
                buckets.append((str(float(bound)), cumulative))
            cumulative += acc[len(ELAPSED_BUCKETS)]
            buckets.append(("+Inf", cumulative))
            hist.add_metric(list(key), buckets, acc[-1])

        open_g = GaugeMetricFamily("sla_clocks_open", "Clocks running now, by risk: ok, warning (past the warning "
                                   "point) or overdue (past the deadline)", labels=[*LABELS, "state"])
        for kind, cat, pri, ch, prop, risk, n in open_rows:
            open_g.add_metric([kind, cat, pri, ch, prop, risk], float(n))

        objective = GaugeMetricFamily("sla_clock_objective_ratio", "Objective: share of clocks to be met",
                                      labels=["clock"])
        for clock in CLOCKS:
            objective.add_metric([clock], self.objective)

        esc = CounterMetricFamily("escalations", "Escalations told to a rung, by reason (the condition rule, "
                                  "or <clock>_breached)", labels=["rung", "reason"])
        for rung, reason, n in esc_rows:
            esc.add_metric([rung, reason], float(n))

        fb = CounterMetricFamily("calendar_fallback_clocks", "Clocks whose working-day deadline used the fallback "
                                 "calendar rule (a year's official data missing)", labels=["clock"])
        seen = {c: float(n) for c, n in fb_rows}
        for clock in CLOCKS:
            fb.add_metric([clock], seen.get(clock, 0.0))

        due_g = GaugeMetricFamily("escalation_timers_due", "Timers due and not yet fired")
        due_g.add_metric([], float(due))
        return [verdicts, hist, open_g, objective, esc, fb, due_g]


COLLECTOR = SlaCollector()


def install(pool: Any, objective: float) -> None:
    """One collector per process, reading through the latest started container's pool (tests start several)."""
    COLLECTOR.pool = pool
    COLLECTOR.objective = objective
    try:
        REGISTRY.register(COLLECTOR)  # type: ignore[arg-type]
    except ValueError:
        pass
