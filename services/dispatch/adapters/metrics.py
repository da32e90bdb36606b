"""Dispatch's gauges, read from its tables on scrape so that every replica reports the same numbers.

Grouped counts over indexed columns only (open work orders by the partial index, handovers not acknowledged by
theirs), cached for a few seconds so that several scrapers do not multiply the work. Labels come from fixed sets
(departments, states): never a technician, request or resident.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from psycopg.rows import tuple_row
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from services.dispatch.domain.model import OPEN_STATES, STATES
from services.dispatch.domain.routing import DEPARTMENTS

log = logging.getLogger(__name__)

OPEN = [s for s in STATES if s in OPEN_STATES]


class DispatchCollector:
    def __init__(self, cache_seconds: float = 5.0) -> None:
        self.pool: Any = None
        self.on_duty: Callable[[Any, datetime], dict[str, int]] | None = None
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, list[GaugeMetricFamily]] | None = None

    def bind(self, pool: Any, on_duty: Callable[[Any, datetime], dict[str, int]],
             clock: Callable[[], datetime]) -> None:
        self.pool, self.on_duty, self.clock, self._cached = pool, on_duty, clock, None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        if self._cached and time.monotonic() - self._cached[0] < self.cache_seconds:
            return self._cached[1]
        families = self._read()
        if families:
            self._cached = (time.monotonic(), families)
        return families

    def _read(self) -> list[GaugeMetricFamily]:
        backlog = GaugeMetricFamily("dispatch_backlog", "Open work orders by department and state",
                                    labels=["department", "state"])
        duty = GaugeMetricFamily("dispatch_technicians_on_duty", "Technicians on duty now (not absent)",
                                 labels=["department"])
        load = GaugeMetricFamily("dispatch_technician_load", "Work orders held by the department's technicians",
                                 labels=["department"])
        unack = GaugeMetricFamily("dispatch_handovers_unacknowledged", "Shift handovers not yet acknowledged",
                                  labels=["department"])
        check_open = GaugeMetricFamily("dispatch_daily_check_open", "Open work orders in the latest daily check",
                                       labels=["department"])
        check_overdue = GaugeMetricFamily("dispatch_daily_check_overdue",
                                          "Overdue work orders in the latest daily check", labels=["department"])
        if self.pool is None:
            return []
        try:
            with self.pool.connection(timeout=2) as pooled:
                # Pooled connections may carry the dict row factory a unit of work set; read plain tuples here.
                conn = pooled.cursor(row_factory=tuple_row)
                counts = {(r[0], r[1]): r[2] for r in conn.execute(
                    "SELECT department, state, count(*) FROM work_orders WHERE state NOT IN ('closed', 'cancelled') "
                    "GROUP BY 1, 2").fetchall()}
                loads = dict(conn.execute("SELECT department, sum(load) FROM technicians GROUP BY 1").fetchall())
                unacked = dict(conn.execute("SELECT department, count(*) FROM handovers "
                                            "WHERE acknowledged_at IS NULL GROUP BY 1").fetchall())
                checks = {r[0]: (r[1], r[2]) for r in conn.execute(
                    "SELECT department, sum(open), sum(overdue) FROM daily_check_lines "
                    "WHERE day = (SELECT max(day) FROM daily_checks) GROUP BY 1").fetchall()}
                on_duty = self.on_duty(pooled, self.clock()) if self.on_duty else {}
        except Exception:  # a scrape must not fail because the database is restarting
            log.warning("dispatch collector could not read its tables")
            return []
        for dept in DEPARTMENTS:
            for state in OPEN:
                backlog.add_metric([dept, state], float(counts.get((dept, state), 0)))
            duty.add_metric([dept], float(on_duty.get(dept, 0)))
            load.add_metric([dept], float(loads.get(dept) or 0))
            unack.add_metric([dept], float(unacked.get(dept, 0)))
            check_open.add_metric([dept], float((checks.get(dept) or (0, 0))[0] or 0))
            check_overdue.add_metric([dept], float((checks.get(dept) or (0, 0))[1] or 0))
        return [backlog, duty, load, unack, check_open, check_overdue]


COLLECTOR = DispatchCollector()
_registered = False


def register() -> DispatchCollector:
    """One collector per process (in-process test containers share it; the latest started binds its pool)."""
    global _registered
    if not _registered:
        REGISTRY.register(COLLECTOR)
        _registered = True
    return COLLECTOR
