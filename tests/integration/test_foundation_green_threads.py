"""One slow database call must not stall the other workers (issue 2, item 10).

psycopg's C wait blocks eventlet's hub; with PSYCOPG_WAIT_FUNC=wait_select it yields. The test runs a
real nameko service whose RPC runs `pg_sleep(1)` while ten quick calls run beside it.
"""
from __future__ import annotations

import time
from typing import Any

import eventlet
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy

from services.common.config import REPO_ROOT
from services.common.nameko_ext import Store
from tests.support import amqp_uri


class SlowService:
    name = "gateway"  # borrows the gateway's role and schema: only plumbing tables are touched
    uow = Store(REPO_ROOT / "services" / "gateway" / "migrations")

    @rpc
    def slow(self) -> float:
        with self.uow() as uow:
            started = time.monotonic()
            uow.execute("SELECT pg_sleep(1)")
            return time.monotonic() - started

    @rpc
    def quick(self) -> float:
        with self.uow() as uow:
            uow.execute("SELECT 1")
        return time.monotonic()


def test_a_slow_query_does_not_stall_other_workers(run_service: Any) -> None:
    run_service(SlowService, max_workers=12)
    with ServiceRpcProxy("gateway", {"AMQP_URI": amqp_uri()}) as proxy:
        proxy.quick()  # warm the pool
        started = time.monotonic()
        slow = proxy.slow.call_async()
        eventlet.sleep(0.1)
        quick_done = [proxy.quick.call_async() for _ in range(10)]
        finished = [r.result() - started for r in quick_done]
        slow_elapsed = slow.result()
    assert slow_elapsed >= 0.99
    # Every quick call finished while the slow query was still sleeping.
    assert max(finished) < 0.8, finished
