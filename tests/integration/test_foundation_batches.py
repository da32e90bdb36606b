"""A consumer's batch: many messages in one transaction, each in a savepoint (services.common.nameko_ext.run_batch).

What a handler sees must not change with batching: its work is kept only when it commits, a handler that raises
leaves nothing behind and does not undo the other messages, and a batch that cannot commit keeps nothing at all.
Real Postgres, as the intake role, on a scratch table in its schema (dropped afterwards).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from services.common.db import BatchUnitOfWork, UnitOfWork, make_pool, migrate
from services.common.domain import DomainError
from services.common.nameko_ext import UowFactory, batch_lock_key, run_batch
from tests.support import count_batch_statements, db_url


class _Store:
    service = "intake"

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.pool, self.service, on_commit=self.wake)

    def batch_uow(self) -> BatchUnitOfWork:
        return BatchUnitOfWork(self.pool, self.service, on_commit=self.wake)


class _Service:
    def __init__(self, store: _Store) -> None:
        self.uow = UowFactory(store)  # type: ignore[arg-type]


@pytest.fixture
def service(infra: None) -> Iterator[_Service]:
    migrate(db_url("intake"), Path("services/intake/migrations"), "intake")  # the inbox, as intake has it
    pool = make_pool(db_url("intake"), "intake", 1, "test-batches")
    with pool.connection() as conn:
        conn.execute("DROP TABLE IF EXISTS batch_rows")
        conn.execute("CREATE TABLE batch_rows (n int PRIMARY KEY, note text)")
    try:
        yield _Service(_Store(pool))
    finally:
        with pool.connection() as conn:
            conn.execute("DROP TABLE IF EXISTS batch_rows")
        pool.close()


def rows(svc: _Service) -> dict[int, str]:
    with svc.uow.store.pool.connection() as conn:
        return dict(conn.execute("SELECT n, note FROM batch_rows ORDER BY n").fetchall())  # type: ignore[arg-type]


def handler(svc: _Service, msg: dict[str, Any]) -> str:
    uow = svc.uow()
    if msg.get("first_block_uncommitted"):  # a block left without commit is undone even if a later one commits
        with uow:
            uow.execute("INSERT INTO batch_rows (n, note) VALUES (%s, 'uncommitted')", (msg["n"] + 2000,))
    with uow:
        uow.execute("INSERT INTO batch_rows (n, note) VALUES (%s, %s)", (msg["n"], msg.get("note", "")))
        if msg.get("refuse"):
            raise DomainError("refused", field="n")
        if msg.get("no_commit"):
            return "read only"
        uow.commit()
    if msg.get("second_block"):  # read, then a block that does not commit: the first block's work stays
        with uow:
            uow.execute("INSERT INTO batch_rows (n, note) VALUES (%s, 'second')", (msg["n"] + 1000,))
    return "ok"


def test_a_refused_message_is_undone_alone_and_the_rest_of_its_batch_is_kept(service: _Service) -> None:
    items = [{"n": i} for i in range(10)]
    items[4] = {"n": 4, "refuse": True}
    outcomes = run_batch(service, handler, items, batch_lock_key("test.batches"))
    assert [o[0] for o in outcomes] == ["ok"] * 4 + [None] + ["ok"] * 5
    assert outcomes[4][1][0] is DomainError  # the consumer dead-letters it with this reason
    assert sorted(rows(service)) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert service.uow.batch is None  # the worker is back to ordinary units of work


def test_work_a_handler_did_not_commit_is_rolled_back_inside_the_batch(service: _Service) -> None:
    outcomes = run_batch(service, handler, [{"n": 1}, {"n": 2, "no_commit": True}, {"n": 3, "second_block": True},
                                            {"n": 4, "first_block_uncommitted": True}])
    assert [o[0] for o in outcomes] == ["ok", "read only", "ok", "ok"]
    # 2 never committed; 3's second block and 4's first block never committed
    assert rows(service) == {1: "", 3: "", 4: ""}


def test_a_failing_statement_does_not_poison_the_next_message(service: _Service) -> None:
    outcomes = run_batch(service, handler, [{"n": 1}, {"n": 1}, {"n": 2}])  # the second breaks the primary key
    assert outcomes[1][1][0] is psycopg.errors.UniqueViolation
    assert rows(service) == {1: "", 2: ""}


def test_a_batch_that_cannot_commit_keeps_nothing(service: _Service) -> None:
    def breaks_the_connection(svc: _Service, msg: dict[str, Any]) -> str:
        if msg["n"] == 3:
            svc.uow().conn.close()  # the database went away mid-batch
        return handler(svc, msg)

    with pytest.raises(psycopg.OperationalError):
        run_batch(service, breaks_the_connection, [{"n": 1}, {"n": 2}, {"n": 3}])
    assert rows(service) == {}  # the consumer retries every message of the batch
    assert service.uow.batch is None


def test_the_relay_is_woken_once_per_batch_that_published(service: _Service) -> None:
    def publishes(svc: _Service, msg: dict[str, Any]) -> str:
        uow = svc.uow()
        with uow:
            uow._published += 1  # as UnitOfWork.publish counts an event written to the outbox
            if msg.get("refuse"):
                raise DomainError("refused", field="n")
            uow.commit()
        return "ok"

    run_batch(service, publishes, [{"n": 1}, {"n": 2}])
    assert service.uow.store.woken == 1
    run_batch(service, publishes, [{"n": 3, "refuse": True}])
    assert service.uow.store.woken == 1  # nothing of that batch was kept: nothing to relay


def test_messages_a_handler_ignores_cost_no_statement_and_do_not_upset_the_savepoints(service: _Service) -> None:
    def some(svc: _Service, msg: dict[str, Any]) -> str | None:
        if msg["n"] % 2:
            return None  # not this service's business: no transaction, no savepoint
        return handler(svc, msg)

    seen: list[Any] = []

    def watching(svc: _Service, msg: dict[str, Any]) -> str | None:
        result = some(svc, msg)
        seen.append(svc.uow()._conn.info.transaction_status)  # type: ignore[attr-defined]
        return result

    assert [o[0] for o in run_batch(service, watching, [{"n": 1}, {"n": 3}])] == [None, None]
    assert seen == [psycopg.pq.TransactionStatus.IDLE] * 2  # the batch never began a transaction
    outcomes = run_batch(service, some, [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4, "refuse": True}, {"n": 5},
                                         {"n": 6}], batch_lock_key("test.batches"))
    assert [o[0] for o in outcomes] == [None, "ok", None, None, None, "ok"]
    assert rows(service) == {2: "", 6: ""}


# -- fast mode: no savepoints, claims and events written once per batch; redone carefully when it must be ----------

def counting(service: _Service) -> list[str]:
    return count_batch_statements(service.uow.store)


def claiming(svc: _Service, msg: dict[str, Any]) -> str:
    uow = svc.uow()
    with uow:
        if not uow.claim(msg["event_id"], "test.batches"):
            return "duplicate"
        if msg.get("skip"):
            return "nothing to do"  # claimed, then left without commit: the claim is not kept either
        uow.execute("INSERT INTO batch_rows (n, note) VALUES (%s, %s)", (msg["n"], msg["event_id"]))
        if msg.get("refuse"):
            raise DomainError("refused", field="n")
        uow.commit()
    return "ok"


def inbox(svc: _Service, ids: list[str]) -> list[str]:
    with svc.uow.store.pool.connection() as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM inbox WHERE event_id = ANY(%s) ORDER BY 1",
                                           (ids,)).fetchall()]


def redone(svc: _Service) -> float:
    from services.common import metrics
    return metrics.BATCHES_REDONE.labels(svc.uow.store.service)._value.get()


def test_a_clean_batch_reads_and_writes_its_claims_once_and_takes_no_savepoint(service: _Service) -> None:
    sent = counting(service)
    before = redone(service)
    ids = [f"fast-{i}" for i in range(20)]
    outcomes = run_batch(service, claiming, [{"n": i, "event_id": e} for i, e in enumerate(ids)],
                         batch_lock_key("test.batches"))
    assert [o[0] for o in outcomes] == ["ok"] * 20
    assert redone(service) == before
    # the lock, one read of the inbox, 20 handler statements, one write of the inbox; no SAVEPOINT
    assert sent == ["SELECT", "SELECT"] + ["INSERT"] * 20 + ["INSERT"]
    assert inbox(service, ids) == sorted(ids)
    assert len(rows(service)) == 20


def test_a_redelivery_inside_one_batch_is_a_duplicate_and_claimed_once(service: _Service) -> None:
    outcomes = run_batch(service, claiming, [{"n": 1, "event_id": "twice"}, {"n": 2, "event_id": "twice"}])
    assert [o[0] for o in outcomes] == ["ok", "duplicate"]
    assert inbox(service, ["twice"]) == ["twice"]
    again = run_batch(service, claiming, [{"n": 3, "event_id": "twice"}])  # and in a later batch
    assert [o[0] for o in again] == ["duplicate"]
    assert rows(service) == {1: "twice"}


def test_a_claim_whose_message_did_not_commit_is_not_kept(service: _Service) -> None:
    before = redone(service)
    outcomes = run_batch(service, claiming, [{"n": 1, "event_id": "kept"}, {"n": 2, "event_id": "dropped",
                                                                            "skip": True}])
    assert [o[0] for o in outcomes] == ["ok", "nothing to do"]
    assert redone(service) == before  # it used no statement: nothing to undo, the fast batch stands
    assert inbox(service, ["dropped", "kept"]) == ["kept"]


def test_a_refused_message_in_a_fast_batch_redoes_the_batch_with_savepoints(service: _Service) -> None:
    before = redone(service)
    items: list[dict[str, Any]] = [{"n": i, "event_id": f"redo-{i}"} for i in range(5)]
    items[2]["refuse"] = True
    outcomes = run_batch(service, claiming, items, batch_lock_key("test.batches"))
    assert redone(service) == before + 1
    assert [o[0] for o in outcomes] == ["ok", "ok", None, "ok", "ok"]
    assert outcomes[2][1][0] is DomainError
    assert sorted(rows(service)) == [0, 1, 3, 4]
    assert inbox(service, [i["event_id"] for i in items]) == ["redo-0", "redo-1", "redo-3", "redo-4"]


# -- deferred inserts: a fast batch's single-row inserts of one statement written as one ---------------------------

def deferring(svc: _Service, msg: dict[str, Any]) -> str:
    """A handler whose insert is deferred in a fast batch and run at once otherwise, as dispatch's work orders."""
    uow = svc.uow()
    with uow:
        if not uow.claim(msg["event_id"], "test.batches"):
            return "duplicate"
        head = "INSERT INTO batch_rows (n, note)"
        if not (isinstance(uow, BatchUnitOfWork)
                and uow.defer_insert(head, [msg["n"], msg["event_id"]], "ON CONFLICT (n) DO NOTHING")):
            if uow.execute(f"{head} VALUES (%s, %s) ON CONFLICT (n) DO NOTHING RETURNING 1",
                           (msg["n"], msg["event_id"])).fetchone() is None:
                return "taken"
        if msg.get("read"):  # a later read in the batch sees the rows deferred before it
            found = uow.execute("SELECT count(*) AS n FROM batch_rows").fetchone()
            assert found is not None
            msg["seen"] = found["n"]
        if msg.get("refuse"):
            raise DomainError("refused", field="n")
        uow.commit()
    return "ok"


def test_a_fast_batch_writes_its_deferred_rows_in_one_statement(service: _Service) -> None:
    sent = counting(service)
    before = redone(service)
    ids = [f"defer-{i}" for i in range(20)]
    outcomes = run_batch(service, deferring, [{"n": i, "event_id": e} for i, e in enumerate(ids)],
                         batch_lock_key("test.batches"))
    assert [o[0] for o in outcomes] == ["ok"] * 20 and redone(service) == before
    # the lock, one read of the inbox, the 20 rows in one statement, one write of the inbox
    assert sent == ["SELECT", "SELECT", "INSERT", "INSERT"]
    assert rows(service) == {i: e for i, e in enumerate(ids)}


def test_a_statement_after_deferred_rows_finds_them_written(service: _Service) -> None:
    items: list[dict[str, Any]] = [{"n": i, "event_id": f"read-{i}"} for i in range(4)]
    items[2]["read"] = True
    assert [o[0] for o in run_batch(service, deferring, items)] == ["ok"] * 4
    assert items[2]["seen"] == 3  # its own row and the two before it
    assert sorted(rows(service)) == [0, 1, 2, 3]


def test_a_deferred_row_the_database_refuses_redoes_the_batch_where_its_insert_answers(service: _Service) -> None:
    run_batch(service, deferring, [{"n": 7, "event_id": "first-7"}])
    before = redone(service)
    outcomes = run_batch(service, deferring, [{"n": 6, "event_id": "six"}, {"n": 7, "event_id": "again-7"},
                                              {"n": 8, "event_id": "eight"}])
    assert redone(service) == before + 1
    assert [o[0] for o in outcomes] == ["ok", "taken", "ok"]
    assert rows(service) == {6: "six", 7: "first-7", 8: "eight"}


def test_a_message_that_fails_after_deferring_leaves_no_row(service: _Service) -> None:
    items: list[dict[str, Any]] = [{"n": i, "event_id": f"fail-{i}"} for i in range(3)]
    items[1]["refuse"] = True
    outcomes = run_batch(service, deferring, items)
    assert [o[0] for o in outcomes] == ["ok", None, "ok"]
    assert rows(service) == {0: "fail-0", 2: "fail-2"}
    assert inbox(service, [i["event_id"] for i in items]) == ["fail-0", "fail-2"]
