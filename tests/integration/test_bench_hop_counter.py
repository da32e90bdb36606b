"""The bench's sampler counts each hop without rescanning the timeline (bench.measure.HopCounter): its running
count must equal a full count, including a row whose transaction commits after later rows were counted."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from bench import infra as bench_infra
from bench import measure
from tests.conftest import TEST_DB

SCHEMA = "bench_hop_counter"


@pytest.fixture
def timeline(infra: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[psycopg.Connection[Any]]:
    monkeypatch.setattr(measure, "HOPS", {"registered": (SCHEMA, "RequestRegistered", "")})
    with bench_infra.admin(database=TEST_DB) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(f"CREATE TABLE {SCHEMA}.timeline (id bigserial PRIMARY KEY, event_type text NOT NULL)")
        yield conn
        conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


def _add(conn: psycopg.Connection[Any], n: int, event_type: str = "RequestRegistered") -> None:
    conn.execute(f"INSERT INTO {SCHEMA}.timeline (event_type) SELECT %s FROM generate_series(1, %s)", (event_type, n))


def test_running_count_matches_a_full_count_as_rows_arrive(timeline: psycopg.Connection[Any]) -> None:
    counter = measure.HopCounter()
    for batch in (0, 7, 30, 1, 12):
        _add(timeline, batch)
        _add(timeline, 3, "RequestClassified")  # other types in the same table are not counted
        assert counter.totals(timeline) == {"registered": measure.hop_total(timeline, "registered")}


def test_a_row_committed_after_later_rows_were_counted_is_still_counted(timeline: psycopg.Connection[Any]) -> None:
    counter = measure.HopCounter()
    with bench_infra.admin(autocommit=False, database=TEST_DB) as slow:
        _add(slow, 1)  # takes an id now, commits later
        _add(timeline, 20)
        assert counter.totals(timeline) == {"registered": 20}
        _add(timeline, 20)
        assert counter.totals(timeline) == {"registered": 40}
        slow.commit()
    assert counter.totals(timeline) == {"registered": 41}
