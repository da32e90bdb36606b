"""Helpers shared by integration and end-to-end tests: real Postgres, real RabbitMQ, no fakes."""
from __future__ import annotations

import json
import os
import socket
import time
import urllib.parse
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from collections.abc import Callable, Iterator

import psycopg
import requests
from kombu import Connection

from services.common import topology
from services.common.db import BatchUnitOfWork, UnitOfWork

SERVICES = ("gateway", "intake", "dispatch", "escalation", "feedback")


def amqp_uri() -> str:
    return os.environ["AMQP_URI"]


def db_url(role: str) -> str:
    return f"postgresql://{role}:{role}@127.0.0.1:5432/{os.environ['PROPSVC_DB']}"


def admin_conn(autocommit: bool = True) -> psycopg.Connection[Any]:
    return psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{os.environ['PROPSVC_DB']}", autocommit=autocommit)


def rabbit_api(method: str, path: str, **kwargs: Any) -> requests.Response:
    base = os.environ["RABBIT_API"]
    return requests.request(method, f"{base}{path}", timeout=10, **kwargs)


def vhost() -> str:
    return urllib.parse.quote(os.environ["PROPSVC_TEST_VHOST"], safe="")


def reset_vhost() -> None:
    rabbit_api("DELETE", f"/vhosts/{vhost()}")
    r = rabbit_api("PUT", f"/vhosts/{vhost()}", json={})
    r.raise_for_status()
    everything = {"configure": ".*", "write": ".*", "read": ".*"}
    rabbit_api("PUT", f"/permissions/{vhost()}/guest", json=everything).raise_for_status()


def queue_info(name: str) -> dict[str, Any]:
    r = rabbit_api("GET", f"/queues/{vhost()}/{urllib.parse.quote(name, safe='')}")
    r.raise_for_status()
    return r.json()


def get_messages(queue: str, count: int = 50) -> list[dict[str, Any]]:
    """Read messages off a queue (consuming them) through the management API."""
    r = rabbit_api("POST", f"/queues/{vhost()}/{urllib.parse.quote(queue, safe='')}/get",
                   json={"count": count, "ackmode": "ack_requeue_false", "encoding": "auto"})
    r.raise_for_status()
    return r.json()


def events_in(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The event envelopes in messages read by `get_messages`: a message is one envelope or a pack of several
    (a JSON array, in order; nameko_ext.pack_runs)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        body = json.loads(m["payload"]) if isinstance(m["payload"], str) else m["payload"]
        out.extend(body if isinstance(body, list) else [body])
    return out


def publish_inbound(body: Any, *, routing_key: str = "request.phone", content_type: str = "application/json",
                    raw: bytes | None = None, headers: dict[str, Any] | None = None) -> None:
    """Publish as another system would: plain AMQP, persistent, with confirms; not through nameko."""
    with Connection(amqp_uri(), transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer()
        payload = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
        producer.publish(payload, exchange=topology.exchange(topology.INBOUND_EXCHANGE), routing_key=routing_key,
                         content_type=content_type, content_encoding="utf-8" if raw is None else "binary",
                         delivery_mode=2, mandatory=True, headers=headers or {})


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll an observable outcome (a row, a message), never a fixed sleep standing in for one."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # e.g. the service's table not migrated yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: last={last!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def db(role: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url(role), autocommit=True, options=f"-c search_path={role}") as conn:
        yield conn


def scalar(role: str, sql: str, params: Any = None) -> Any:
    with db(role) as conn:
        row = conn.execute(sql, params).fetchone()
        return row[0] if row else None


def bulk_insert_breach_timers(conn: psycopg.Connection[Any], policy: Any, n: int, first_due: datetime,
                              window: float) -> str:
    """COPY n running first-response clocks into escalation's tables whose breach timers fall due evenly over
    `window` seconds from `first_due`, with the tokens the service computes; returns their request_no prefix."""
    import json
    import uuid
    from datetime import timedelta

    from services.escalation.adapters import repository as repo
    from services.escalation.domain.calendar import WorkingCalendar
    from services.escalation.domain.clock import start_clock
    from services.escalation.domain.policy import ClockFacts

    prefix = f"T{uuid.uuid4().hex[:6].upper()}"
    facts = ClockFacts(category="repair", priority="normal", channel="phone", property_id="LY")
    target = policy.resolve("first_response", facts, first_due, WorkingCalendar())
    assert target is not None
    clock_rows, timer_rows = [], []
    for i in range(n):
        due = first_due + timedelta(seconds=window * i / n)
        clock = start_clock(clock_id=uuid.uuid4(), request_no=f"{prefix}-{i:05d}", kind="first_response",
                            policy=policy, facts=facts, started_at=due - timedelta(seconds=target.target_seconds),
                            calendar=WorkingCalendar())
        assert clock is not None
        clock.warned_at = clock.started_at  # only the breach timer is stored: it is the one under test
        row = repo.clock_row(clock, None)
        row["data"] = json.dumps(clock.to_dict())
        clock_rows.append(tuple(row[c] for c in repo.CLOCK_COLUMNS))
        breach = next(t for t in clock.timers() if t.kind == "breach")
        timer_rows.append((clock.clock_id, breach.kind, breach.due_at, breach.token))
    with conn.cursor() as cur:
        with cur.copy(f"COPY clocks ({', '.join(repo.CLOCK_COLUMNS)}) FROM STDIN") as copy:
            for r in clock_rows:
                copy.write_row(r)
        with cur.copy("COPY deadlines (clock_id, kind, due_at, token) FROM STDIN") as copy:
            for r in timer_rows:
                copy.write_row(r)
    return prefix


class PoolStore:
    """What a service's `Store` gives its handlers (units of work over its pool), for tests that run batches
    (`nameko_ext.run_batch`) without a container."""

    def __init__(self, pool: Any, service: str) -> None:
        self.pool, self.service = pool, service

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.pool, self.service)

    def batch_uow(self) -> BatchUnitOfWork:
        return BatchUnitOfWork(self.pool, self.service)


class _CountingConnection:
    """A batch's connection that records the first `words` words of each statement sent on it."""

    def __init__(self, conn: Any, sent: list[str], words: int) -> None:
        self._conn, self._sent, self._words = conn, sent, words

    def execute(self, sql: Any, params: Any = None, **options: Any) -> Any:
        self._sent.append(" ".join(str(sql).split()[:self._words]).upper())
        return self._conn.execute(sql, params, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def count_batch_statements(store: Any, words: int = 1) -> list[str]:
    """From now on, the statements each batch unit of work of `store` sends on its own connection (not the pool's
    other connections), by their first `words` words: the list fills as batches run."""
    sent: list[str] = []
    plain = store.batch_uow

    def batch_uow() -> Any:
        b = plain()
        checkout, give_back = b._checkout, b._give_back
        b._checkout = lambda: _CountingConnection(checkout(), sent, words)
        b._give_back = lambda conn: give_back(conn._conn)
        return b

    store.batch_uow = batch_uow
    return sent
