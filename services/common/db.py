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
import re
import uuid
from datetime import date, datetime, UTC
from pathlib import Path
from contextlib import contextmanager
from typing import Any, TypeVar
from collections.abc import Callable, Iterable, Iterator, Sequence
from urllib.parse import urlparse

import orjson
import psycopg
from psycopg.sql import SQL, Identifier
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from services.common import logs
from services.common.contract.registry import dump_data, spec_for
from services.common.domain import Event

log = logging.getLogger(__name__)
T = TypeVar("T")


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
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


def dumps(value: Any, default: Callable[[Any], Any] = _json_default) -> str:
    """JSON text for a statement's parameter (UTF-8, not escaped to ASCII). orjson writes it several times
    faster than `json.dumps`, which was a tenth of intake's and escalation's CPU under load (clock rows, outbox
    bodies); it writes datetimes, dates and UUIDs itself, as their `isoformat()` / `str()`. What it refuses
    (an integer beyond 64 bits, which a message may carry) is written by `json.dumps`, as before."""
    try:
        return orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value, default=default, ensure_ascii=False)


def jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=dumps)


_INSERT_HEAD = re.compile(r"^\s*INSERT INTO (\w+) \(([^)]*)\)\s*$")


def _json_param(value: Any) -> Any:
    if isinstance(value, Jsonb):
        return value.obj
    return _json_default(value)


def json_rows(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Rows as one JSON array of objects, for `json_populate_recordset` (see `insert_many`)."""
    return dumps([dict(zip(columns, r, strict=True)) for r in rows], _json_param)


def rows_of(table: str, columns: str) -> str:
    """`SELECT <columns> FROM` the rows of a JSON parameter, typed as `table`'s columns."""
    return f"SELECT {columns} FROM json_populate_recordset(NULL::{table}, %s::json) WHERE true"


def any_of_json(cast: str = "") -> str:
    """`ANY(...)` of one JSON array parameter, each element `cast`: for a list of keys in a per-batch statement.
    psycopg adapts a list parameter element by element in Python (100 UUIDs: 531 us of client CPU per statement,
    against 110 us as one JSON text); the planner still takes the index (an InitPlan feeding the index condition)."""
    return f"ANY(ARRAY(SELECT json_array_elements_text(%s::json){cast}))"


def insert_many(uow: UnitOfWork, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
    """All rows in one statement whose text does not depend on how many there are: the rows travel as one JSON
    parameter, typed by the table (`json_populate_recordset`). A multi-row VALUES list was a new statement for
    each row count, which psycopg parsed afresh every time (its cache stops at 50 parameters) and Postgres could
    never prepare: a third of a batch's writing time. `head` is `INSERT INTO <table> (<columns>)`."""
    if rows:
        uow.execute(*_insert_rows(head, rows, tail))


def insert_row(uow: UnitOfWork, head: str, row: Sequence[Any], tail: str = "") -> None:
    """One row of `insert_many`'s statement: in a consumer's fast batch kept for the batch's one statement of that
    text (`defer_insert`: only for a row expected to go in, or to update its conflict), else written now."""
    if not uow.defer_insert(head, row, tail):
        insert_many(uow, head, [row], tail)


def _insert_rows(head: str, rows: Sequence[Sequence[Any]], tail: str) -> tuple[str, tuple[str]]:
    """The statement and parameter of `insert_many`."""
    m = _INSERT_HEAD.match(head)
    if m is None:
        raise ValueError(f"needs 'INSERT INTO <table> (<columns>)', not {head!r}")
    table, columns = m.group(1), m.group(2)
    names = [c.strip() for c in columns.split(",")]
    # `WHERE true`: an ON CONFLICT right after a FROM would otherwise be read as part of it.
    return f"{head} {rows_of(table, columns)} {tail}", (json_rows(names, rows),)


_OUTBOX = "event_id, exchange, routing_key, body"
_TIMELINE = "request_no, at, event_type, event_id, data"


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

    def defer_insert(self, head: str, row: Sequence[Any], tail: str = "") -> bool:
        """Keep a single-row insert for one statement per batch: only a fast batch can (`BatchUnitOfWork`); here
        False, and the caller runs its own insert."""
        return False

    def read_past_deferred(self, sql: str, params: Any = None) -> psycopg.Cursor[dict[str, Any]]:
        """A read that need not find deferred rows written (its caller adds them itself): here, any read."""
        return self.execute(sql, params)

    def coming(self) -> list[dict[str, Any]]:
        """In a consumer's batch, its messages (as loaded) from the one being handled on; here none."""
        return []

    def publish(self, events: Event | Iterable[Event], *, correlation_id: str | None = None) -> list[dict[str, Any]]:
        envelopes = self._envelopes(events, correlation_id)
        self._write_outbox(envelopes)
        self._published += len(envelopes)
        return envelopes

    def _envelopes(self, events: Event | Iterable[Event], correlation_id: str | None) -> list[dict[str, Any]]:
        batch = [events] if isinstance(events, Event) else list(events)
        return [envelope(e, self.service, now=self.now(), correlation_id=correlation_id) for e in batch]

    def _write_outbox(self, envelopes: list[dict[str, Any]]) -> None:
        if not envelopes:
            return
        outbox = [(e["event_id"], f"{self.service}.events", e["event_type"], e) for e in envelopes]
        # Both tables in one statement, one round trip, the same text whatever the number of events. The
        # timeline (the service's part of a request's history, assembled by the gateway across services) is
        # taken from the outbox rows as inserted: sending each event's data a second time cost a JSON encoding
        # here and a parse in Postgres per event.
        self.execute(f"WITH o AS (INSERT INTO outbox ({_OUTBOX}) {rows_of('outbox', _OUTBOX)} "
                     "RETURNING event_id, routing_key, body) "
                     f"INSERT INTO timeline ({_TIMELINE}) SELECT body->>'request_no', "
                     "(body->>'occurred_at')::timestamptz, routing_key, event_id, body->'data' FROM o "
                     "WHERE coalesce(body->>'request_no', '') <> ''",
                     (json_rows(_OUTBOX.split(", "), outbox),))

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


class RedoCarefully(Exception):
    """A batch in fast mode met something it cannot undo for one message alone; the batch is rolled back and
    run again with a savepoint per message (services.common.nameko_ext.run_batch)."""


def pack_order(envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A batch's events in an order that puts events of one type next to each other, so that the relay sends
    them as packs (nameko_ext.pack_runs), while each request's events keep the order they were published in.

    The n-th event of a request (events with no request number count as one request) sorts with every other
    request's n-th event, by type: a request's events have rising n, so none overtakes another of the same
    request. Events of different requests have no order a consumer relies on (lanes split them apart)."""
    seen: dict[Any, int] = {}
    keyed = []
    for position, env in enumerate(envelopes):
        n = seen.get(env["request_no"], 0)
        seen[env["request_no"]] = n + 1
        keyed.append((n, env["event_type"], position, env))
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed]


class BatchUnitOfWork(UnitOfWork):
    """One transaction for a batch of consumed messages.

    Per-message transactions cost a BEGIN and a COMMIT (a WAL flush) per message, ~12 commits per request across
    the services; a batch pays one. The batch commits once at the end (`finish`), and only then are its messages
    acknowledged, so a crash before it redelivers the whole batch (the inboxes make that harmless). What a
    handler sees does not change: its work is kept only when it commits, and a message whose handler raises
    leaves nothing behind and does not undo the others. Two ways to keep that promise:

    - careful: each message runs inside the savepoint `item`; a handler that raises or ends without `commit()`
      is rolled back to it. The savepoint is taken when the message first uses the connection, in the same round
      trip as releasing the previous one (and, for the batch's first, as its advisory lock): a message its handler
      ignores costs nothing.
    - fast (tried first): no savepoints; inbox claims are read for the whole batch in one statement and written
      in one at the end, and published events are kept in memory and written to the outbox in one statement at
      the end; a service may keep more of its writes for the end (`on_finish`, escalation's batch cache). A
      message that cannot be undone alone (its handler raised, rolled back, or used the connection in a block
      it did not commit) raises `RedoCarefully`: the batch is rolled back and run again carefully. Per message
      that saves the savepoint, the claim and the outbox round trips (three of a handler's ~6-15).
    """

    def __init__(self, pool: Any, service: str, on_commit: Callable[[], None] | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(pool, service, on_commit, clock)
        self.fast = False
        self._lock_sql = ""
        self._savepoint_sql: str | None = None  # due before the message's first statement
        self._has_savepoint = False
        self._advance = False  # a block of this message committed: move the savepoint before the next block
        self._batch_published = 0
        # fast mode: the batch's event ids, those already in the inbox (read at the first claim), and what the
        # committed blocks (kept) and the current one (pending) claimed and published
        self._candidates: set[str] = set()
        self._seen: set[str] | None = None
        self._used = False  # the current block used the connection
        self._claims: list[tuple[str, str]] = []  # (event id, queue)
        self._pending_claims: list[tuple[str, str]] = []
        self._outbox: list[dict[str, Any]] = []
        self._pending_outbox: list[dict[str, Any]] = []
        self._finishers: list[Callable[[BatchUnitOfWork], None]] = []
        # fast mode: rows of single-row inserts kept for one statement per table (`defer_insert`), by (head, tail)
        self._deferred: dict[tuple[str, str], list[Sequence[Any]]] = {}
        self._pending_deferred: list[tuple[tuple[str, str], Sequence[Any]]] = []
        self.cache: dict[str, Any] = {}  # a service's per-batch state (fast mode only)
        self.items: list[dict[str, Any]] = []  # the batch's messages, as loaded
        self.position = -1  # which of them is being handled

    @property  # type: ignore[override]
    def conn(self) -> psycopg.Connection[dict[str, Any]]:  # type: ignore[override]
        if self.fast:
            self._used = True
            return self._raw()
        if self._savepoint_sql is not None:
            sql, self._savepoint_sql = self._savepoint_sql, None
            self._conn.execute(sql)  # type: ignore[arg-type]
            self._lock_sql = ""
            self._has_savepoint = True
        return self._conn

    def _raw(self, flush: bool = True) -> psycopg.Connection[dict[str, Any]]:
        """The connection, after the batch's advisory lock (taken before its first statement) and the deferred
        inserts (any statement may read their rows)."""
        if self._lock_sql:
            sql, self._lock_sql = self._lock_sql, ""
            self._conn.execute(sql)  # type: ignore[arg-type]
        if flush and (self._pending_deferred or self._deferred):
            self._flush_deferred()
        return self._conn

    def read_past_deferred(self, sql: str, params: Any = None) -> psycopg.Cursor[dict[str, Any]]:
        if not self.fast:
            return self.execute(sql, params)
        self._used = True
        return self._raw(flush=False).execute(sql, params)  # type: ignore[arg-type]

    def defer_insert(self, head: str, row: Sequence[Any], tail: str = "") -> bool:
        """Fast mode: keep `row` of `head` (`INSERT INTO <table> (<columns>)`, as `insert_many`) and write the
        batch's rows of that statement in one, before the next statement that could read them, or at `finish`.
        Returns False outside fast mode (the caller then runs its own insert). A row the database does not take
        (a conflict `tail` skipped, a constraint) redoes the batch carefully, where the caller's own insert
        tells it what happened, message by message: so a deferred insert may only be one whose every row is
        expected to be inserted."""
        if not self.fast:
            return False
        self._pending_deferred.append(((head, tail), row))
        return True

    def _flush_deferred(self) -> None:
        self._keep_deferred()
        groups, self._deferred = self._deferred, {}
        for (head, tail), rows in groups.items():
            cur = self._conn.execute(*_insert_rows(head, rows, tail))  # type: ignore[arg-type]
            if cur.rowcount != len(rows):
                raise RedoCarefully(f"{len(rows) - cur.rowcount} deferred rows not inserted by {head.split('(')[0]}")

    def _keep_deferred(self) -> None:
        if self._pending_deferred and self.position >= 0:
            # The current message's rows are about to be written: if it then fails, it cannot be undone alone.
            self._used = True
        for key, row in self._pending_deferred:
            self._deferred.setdefault(key, []).append(row)
        self._pending_deferred = []

    # -- the batch's life, driven by the consumer (services.common.nameko_ext.run_batch)
    def open(self, lock_key: int | None = None, *, fast: bool = False,
             items: Sequence[dict[str, Any]] = ()) -> None:
        self._conn = self._checkout()
        self.fast = fast
        self.items = list(items)
        self._candidates = {str(i["event_id"]) for i in self.items if i.get("event_id")}
        self._lock_sql = "" if lock_key is None else f"SELECT pg_advisory_xact_lock({int(lock_key)}); "
        if fast and not self._lock_sql:
            # A transaction must be open before a handler's `conn.transaction()`, or psycopg would commit
            # that block on its own instead of taking a savepoint.
            self._lock_sql = "SELECT 1"

    def coming(self) -> list[dict[str, Any]]:
        return self.items[max(self.position, 0):]

    def on_finish(self, fn: Callable[[BatchUnitOfWork], None]) -> None:
        """Run `fn(self)` before the batch's own writes at `finish` (fast mode: a service's kept writes)."""
        self._finishers.append(fn)

    def begin_item(self) -> None:
        self.position += 1
        self._advance = False
        self.committed = False
        self._published = 0
        if self.fast:
            self._used = False
            self._drop_pending()
            return
        release = "RELEASE SAVEPOINT item; " if self._has_savepoint else ""
        self._savepoint_sql = f"{self._lock_sql}{release}SAVEPOINT item"

    def undo_item(self) -> None:
        if self.fast:
            if self._used:
                raise RedoCarefully("a message's uncommitted statements cannot be undone alone")
            self._drop_pending()
        elif self._savepoint_sql is None:  # the message used the connection: undo back to its savepoint
            self._conn.execute("ROLLBACK TO SAVEPOINT item")
        self._published = 0

    def _drop_pending(self) -> None:
        """Forget what the current message's block claimed, published and deferred (fast mode)."""
        self._pending_claims, self._pending_outbox, self._pending_deferred = [], [], []

    def _keep_block(self) -> None:
        self._batch_published += self._published
        self._published = 0
        if self.fast:
            self._claims += self._pending_claims
            self._outbox += self._pending_outbox
            self._pending_claims, self._pending_outbox = [], []
            self._keep_deferred()
            self._used = False

    def end_item(self, failed: bool) -> None:
        if failed or not self.committed:
            self.undo_item()
        else:
            self._keep_block()
        self._savepoint_sql = None  # if still due, the message never used the connection: nothing to release

    def finish(self) -> None:
        if self.fast:
            for fn in self._finishers:
                fn(self)
            self._raw()  # the deferred inserts, if no finisher wrote anything
            if self._outbox:
                self._write_outbox(pack_order(self._outbox))
            if self._claims:
                # The advisory lock keeps other instances' batches of this queue out until commit, so every
                # claim read as new is still new; anything else is a surprise worth the careful run.
                cur = self._raw().execute(
                    "INSERT INTO inbox (event_id, queue) SELECT * FROM json_to_recordset(%s::json) "
                    "AS c(event_id text, queue text) ON CONFLICT DO NOTHING",
                    (dumps([{"event_id": e, "queue": q} for e, q in self._claims]),))
                if cur.rowcount != len(self._claims):
                    raise RedoCarefully("an inbox claim was taken by someone else during the batch")
        self._conn.commit()
        if self._batch_published and self._on_commit:
            self._on_commit()

    def close(self) -> None:
        self._give_back(self._conn)

    # -- what a handler sees: the usual unit of work, inside its message's savepoint
    def __enter__(self) -> UnitOfWork:
        if self._advance:  # a second block after a committed one: keep the first block's work
            if not self.fast:
                self.conn.execute("RELEASE SAVEPOINT item; SAVEPOINT item")
            self._keep_block()
            self._advance = False
        self.committed = False
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None and not self.committed:
            self.undo_item()

    def publish(self, events: Event | Iterable[Event], *, correlation_id: str | None = None) -> list[dict[str, Any]]:
        if not self.fast:
            return super().publish(events, correlation_id=correlation_id)
        envelopes = self._envelopes(events, correlation_id)
        self._pending_outbox += envelopes
        self._published += len(envelopes)
        return envelopes

    def claim(self, event_id: str, queue: str) -> bool:
        if not self.fast or event_id not in self._candidates:
            return super().claim(event_id, queue)
        if self._seen is None:
            rows = self._raw().execute(f"SELECT event_id FROM inbox WHERE event_id = {any_of_json()}",
                                       (dumps(sorted(self._candidates)),)).fetchall()
            self._seen = {r["event_id"] for r in rows}
        if event_id in self._seen or any(c[0] == event_id for c in (*self._claims, *self._pending_claims)):
            return False  # processed already, or earlier in this batch (a redelivery that caught up)
        self._pending_claims.append((event_id, queue))
        return True

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


def batch_state(uow: Any, name: str, make: Callable[[BatchUnitOfWork], T]) -> T | None:
    """A service's state for the fast batch `uow` runs (None outside one): made by `make` the first time the batch
    asks, which registers the state's writes with `uow.on_finish` if it keeps any."""
    if not getattr(uow, "fast", False):
        return None
    if name not in uow.cache:
        uow.cache[name] = make(uow)
    return uow.cache[name]  # type: ignore[no-any-return]


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


def analyse_new_tables(conn: psycopg.Connection[Any], min_rows: int) -> list[str]:
    """ANALYZE the tables of the connection's schema that were never analysed and hold `min_rows` rows or more;
    returns their names.

    Until a table's first ANALYZE the planner has no statistics for it and ties between indexes go to the
    smaller one: intake's cluster read then ranged over every report of a class in the last two hours instead of
    one place's (0.6 of a core at 250 requests/s in a fresh database). Autovacuum analyses a new table within
    its nap time (a minute by default); this does it as soon as the table is worth it. An ANALYZE also replans
    the statements the services prepared while the table was empty."""
    rows = conn.execute(
        "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() AND last_analyze IS NULL "
        "AND last_autoanalyze IS NULL AND n_live_tup >= %s ORDER BY relname", (min_rows,)).fetchall()
    names = [r[0] for r in rows]
    for name in names:
        conn.execute(SQL("ANALYZE {}").format(Identifier(name)))
    conn.commit()
    return names


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
