"""Unit of work over psycopg 3, as a nameko DependencyProvider, with a transactional outbox.

A worker asks for `self.uow()` and uses it as a context manager: it rolls back unless the handler
calls `commit()`. Events are written to the service's `outbox` table in the same transaction as the
state they describe, and the relay (outbox.py) publishes them after commit, with confirms. Consumers
record each event id in `inbox` in the same transaction as its effect, which makes redelivery harmless.
"""
from __future__ import annotations

import services.common  # noqa: F401  (sets PSYCOPG_WAIT_FUNC before psycopg is imported)

import json
import logging
import uuid
from datetime import datetime, UTC
from pathlib import Path
from contextlib import contextmanager
from typing import Any
from collections.abc import Callable, Iterable, Iterator, Sequence
from urllib.parse import urlparse

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from services.common import logs
from services.common.contract.registry import dump_data, spec_for
from services.common.domain import Event

log = logging.getLogger(__name__)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def envelope(event: Event, producer: str, *, now: datetime, correlation_id: str | None = None) -> dict[str, Any]:
    """The bus message for a domain event, validated against the contract before it is stored."""
    spec = spec_for(event.event_type, event.version)
    if spec.producer != producer:
        raise RuntimeError(f"{producer} may not publish {event.event_type} (owned by {spec.producer})")
    data = dump_data(event.event_type, event.to_dict(), event.version)
    ctx = logs.current()
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event.event_type,
        "version": event.version,
        "producer": producer,
        "occurred_at": now.astimezone(UTC).isoformat(),
        "correlation_id": correlation_id or ctx.get("correlation_id") or str(uuid.uuid4()),
        "request_no": data.get("request_no") or getattr(event, "request_no", None),
        "data": data,
    }


def jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=lambda o: json.dumps(o, default=_json_default, ensure_ascii=False))


def insert_many(uow: UnitOfWork, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
    """One multi-row INSERT per chunk: psycopg's executemany waits once per row under eventlet."""
    if not rows:
        return
    width = len(rows[0])
    per = max(1, 30000 // width)  # below Postgres's 65535 bind parameters
    one = "(" + ", ".join(["%s"] * width) + ")"
    for i in range(0, len(rows), per):
        chunk = rows[i:i + per]
        uow.execute(f"{head} VALUES {', '.join([one] * len(chunk))} {tail}", [v for r in chunk for v in r])


class UnitOfWork:
    """One transaction. Rolls back unless committed; `publish` writes to the outbox in the same transaction."""

    def __init__(self, pool: ConnectionPool, service: str, on_commit: Callable[[], None] | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.pool = pool
        self.service = service
        self._on_commit = on_commit
        self._clock = clock or (lambda: datetime.now(UTC))
        self.conn: psycopg.Connection[dict[str, Any]]
        # The consumer lane whose batch this is (None outside a batch): rows a lane owns, e.g. counter shards.
        self.lane: int | None = None
        self._published = 0
        self.committed = False

    def now(self) -> datetime:
        return self._clock()

    def __enter__(self) -> UnitOfWork:
        # A unit of work may be entered again (read, then write): each block starts uncommitted.
        self.committed = False
        self._published = 0
        self.conn = self._checkout()
        return self

    def __exit__(self, *exc: object) -> None:
        # Rollback by default: anything not committed when the block ends is undone (also statements run after
        # a commit, which opened a new transaction).
        self._give_back(self.conn)

    def _checkout(self) -> Any:
        conn: Any = self.pool.getconn()
        conn.row_factory = dict_row
        return conn

    def _give_back(self, conn: Any) -> None:
        """Roll back what is uncommitted and return the connection to the pool."""
        try:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                conn.rollback()
        finally:
            # Other users of the pool (relay, collectors) read tuples: hand the connection back as found.
            conn.row_factory = tuple_row
            self.pool.putconn(conn)

    def execute(self, sql: str, params: Any = None) -> psycopg.Cursor[dict[str, Any]]:
        return self.conn.execute(sql, params)  # type: ignore[arg-type]

    def publish(self, events: Event | Iterable[Event], *, correlation_id: str | None = None) -> list[dict[str, Any]]:
        batch = [events] if isinstance(events, Event) else list(events)
        envelopes = [envelope(e, self.service, now=self.now(), correlation_id=correlation_id) for e in batch]
        if envelopes:
            outbox = [(e["event_id"], f"{self.service}.events", e["event_type"], jsonb(e)) for e in envelopes]
            # The service's part of the request's timeline, assembled by the gateway across services.
            timeline = [(e["request_no"], e["occurred_at"], e["event_type"], e["event_id"], jsonb(e["data"]))
                        for e in envelopes if e["request_no"]]
            if timeline and len(outbox) <= 1000:
                # Both tables in one statement, one round trip (the usual case: a handful of events).
                self.execute(f"WITH o AS (INSERT INTO outbox (event_id, exchange, routing_key, body) VALUES "
                             f"{', '.join(['(%s, %s, %s, %s)'] * len(outbox))}) "
                             f"INSERT INTO timeline (request_no, at, event_type, event_id, data) VALUES "
                             f"{', '.join(['(%s, %s, %s, %s, %s)'] * len(timeline))}",
                             [v for r in outbox for v in r] + [v for r in timeline for v in r])
            else:
                insert_many(self, "INSERT INTO outbox (event_id, exchange, routing_key, body)", outbox)
                insert_many(self, "INSERT INTO timeline (request_no, at, event_type, event_id, data)", timeline)
            self._published += len(envelopes)
        return envelopes

    def claim(self, event_id: str, queue: str) -> bool:
        """Record a consumed message id; False when it was already processed (a redelivery)."""
        row = self.conn.execute(
            "INSERT INTO inbox (event_id, queue) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (event_id, queue),
        ).fetchone()
        return row is not None

    def commit(self) -> None:
        self.conn.commit()
        self.committed = True
        if self._published and self._on_commit:
            self._on_commit()

    def rollback(self) -> None:
        """Undo this unit's uncommitted work and go on in a fresh transaction."""
        self.conn.rollback()

    @contextmanager
    def short_transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A transaction of its own, committed when the block ends, for a row lock that must not last as long
        as the unit (a day's request counter). Here it is the unit's own connection, so the caller must not have
        written anything yet: a second pooled connection per worker starved the pool under many workers."""
        yield self.conn
        self.conn.commit()


class BatchUnitOfWork(UnitOfWork):
    """One transaction for a batch of consumed messages, one savepoint per message.

    Per-message transactions cost a BEGIN and a COMMIT (a WAL flush) per message, ~12 commits per request across
    the services; a batch pays one. Each message runs inside the savepoint `item`: a handler that raises or ends
    without `commit()` is rolled back to it, and the other messages of the batch are unaffected. `commit()` marks
    the message's work as kept; the batch commits once at the end (`finish`), and only then are the messages
    acknowledged, so a crash before it redelivers the whole batch (the inboxes make that harmless).

    The savepoint is taken when the message first uses the connection, in the same round trip as releasing the
    previous one (and, for the batch's first, as its advisory lock): a message its handler ignores costs nothing.
    """

    def __init__(self, pool: Any, service: str, on_commit: Callable[[], None] | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(pool, service, on_commit, clock)
        self._lock_sql = ""
        self._savepoint_sql: str | None = None  # due before the message's first statement
        self._has_savepoint = False
        self._advance = False  # a block of this message committed: move the savepoint before the next block
        self._batch_published = 0

    @property  # type: ignore[override]
    def conn(self) -> psycopg.Connection[dict[str, Any]]:  # type: ignore[override]
        if self._savepoint_sql is not None:
            sql, self._savepoint_sql = self._savepoint_sql, None
            self._conn.execute(sql)  # type: ignore[arg-type]
            self._lock_sql = ""
            self._has_savepoint = True
        return self._conn

    # -- the batch's life, driven by the consumer (services.common.nameko_ext.run_batch)
    def open(self, lock_key: int | None = None) -> None:
        self._conn = self._checkout()
        self._lock_sql = "" if lock_key is None else f"SELECT pg_advisory_xact_lock({int(lock_key)}); "

    def begin_item(self) -> None:
        release = "RELEASE SAVEPOINT item; " if self._has_savepoint else ""
        self._savepoint_sql = f"{self._lock_sql}{release}SAVEPOINT item"
        self._advance = False
        self.committed = False
        self._published = 0

    def undo_item(self) -> None:
        if self._savepoint_sql is None:  # the message used the connection: undo back to its savepoint
            self._conn.execute("ROLLBACK TO SAVEPOINT item")
        self._published = 0

    def end_item(self, failed: bool) -> None:
        if failed or not self.committed:
            self.undo_item()
        else:
            self._batch_published += self._published
        self._savepoint_sql = None  # if still due, the message never used the connection: nothing to release

    def finish(self) -> None:
        self._conn.commit()
        if self._batch_published and self._on_commit:
            self._on_commit()

    def close(self) -> None:
        self._give_back(self._conn)

    # -- what a handler sees: the usual unit of work, inside its message's savepoint
    def __enter__(self) -> UnitOfWork:
        if self._advance:  # a second block after a committed one: keep the first block's work
            self.conn.execute("RELEASE SAVEPOINT item; SAVEPOINT item")
            self._batch_published += self._published
            self._published = 0
            self._advance = False
        self.committed = False
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None and not self.committed:
            self.undo_item()

    def commit(self) -> None:
        self.committed = True
        self._advance = True

    def rollback(self) -> None:
        self.undo_item()

    @contextmanager
    def short_transaction(self) -> Iterator[psycopg.Connection[Any]]:
        # The batch's own transaction holds other messages' work: this one gets a pooled connection of its own.
        with self.pool.connection() as conn:
            yield conn


def dsn_for_psycopg(url: str) -> str:
    # yoyo wants a driver suffix; psycopg does not. Both accept the same URL otherwise.
    return url.replace("postgresql+psycopg://", "postgresql://")


def role_of(url: str) -> str:
    user = urlparse(dsn_for_psycopg(url)).username
    if not user:
        raise ValueError("DATABASE_URL must name the service's own login role")
    return user


def migrate(database_url: str, migrations_dir: Path, schema: str) -> list[str]:
    """Apply the service's versioned migrations to its own schema, as its own role (yoyo; locked, idempotent)."""
    from yoyo import get_backend, read_migrations

    url = dsn_for_psycopg(database_url).replace("postgresql://", "postgresql+psycopg://", 1)
    sep = "&" if "?" in url else "?"
    backend = get_backend(f"{url}{sep}schema={schema}")
    migrations = read_migrations(str(migrations_dir))
    applied: list[str] = []
    with backend.lock():
        pending = backend.to_apply(migrations)
        applied = [m.id for m in pending]
        backend.apply_migrations(pending)
    backend.connection.close()
    return applied


def make_pool(database_url: str, schema: str, size: int, name: str) -> ConnectionPool:
    return ConnectionPool(
        dsn_for_psycopg(database_url),
        min_size=min(2, size),
        max_size=size,
        kwargs={"autocommit": False, "options": f"-c search_path={schema}", "application_name": name},
        name=name,
        open=True,
        timeout=30,
    )
