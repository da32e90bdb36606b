"""A service gives its schema's new tables their first statistics (services.common.db.analyse_new_tables): a table
never analysed, once it holds enough rows, is analysed; a small one and one analysed already are left to
autovacuum. Real Postgres, the gateway's schema and role."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from services.common.config import REPO_ROOT
from services.common.db import analyse_new_tables, migrate
from tests.support import db, db_url


@pytest.fixture
def tables(infra: None) -> Iterator[tuple[str, str, str]]:
    migrate(db_url("gateway"), REPO_ROOT / "services" / "gateway" / "migrations", "gateway")
    tag = uuid.uuid4().hex[:8]
    names = (f"t_big_{tag}", f"t_small_{tag}", f"t_done_{tag}")
    with db("gateway") as conn:
        for name, rows in zip(names, (1500, 10, 1500), strict=True):
            conn.execute(f"CREATE TABLE {name} (x int)")
            conn.execute(f"INSERT INTO {name} SELECT generate_series(1, %s)", (rows,))
        conn.execute(f"ANALYZE {names[2]}")
        conn.execute("SELECT pg_stat_force_next_flush()")  # the inserts' counts, now rather than within a second
        conn.execute("SELECT 1")
    try:
        yield names
    finally:
        with db("gateway") as conn:
            for name in names:
                conn.execute(f"DROP TABLE {name}")


def analysed(name: str) -> bool:
    with db("gateway") as conn:
        row = conn.execute("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = %s",
                           (name,)).fetchone()
    return bool(row and row[0])


def test_a_new_table_with_enough_rows_gets_its_first_analyse_and_the_others_are_left(
        tables: tuple[str, str, str]) -> None:
    big, small, done = tables
    with psycopg.connect(db_url("gateway"), options="-c search_path=gateway") as conn:
        names = analyse_new_tables(conn, 1000)
    assert big in names and small not in names and done not in names
    assert analysed(big) and not analysed(small)
    with psycopg.connect(db_url("gateway"), options="-c search_path=gateway") as conn:
        assert big not in analyse_new_tables(conn, 1000)  # once
