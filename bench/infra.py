"""Broker and database helpers of the harness: vhosts through the management API, superuser SQL."""
from __future__ import annotations

import services.common  # noqa: F401  (PSYCOPG_WAIT_FUNC before psycopg)

import urllib.parse
from collections.abc import Callable
from typing import Any

import psycopg
import requests

from bench import settings


def rabbit(method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{settings.RABBIT_API}{path}", timeout=15, **kwargs)


def _vh(vhost: str) -> str:
    return urllib.parse.quote(vhost, safe="")


def reset_vhost(vhost: str) -> None:
    """Delete and recreate the vhost (as tests/support.py reset_vhost does), guest with every permission."""
    rabbit("DELETE", f"/vhosts/{_vh(vhost)}")
    rabbit("PUT", f"/vhosts/{_vh(vhost)}", json={}).raise_for_status()
    rabbit("PUT", f"/permissions/{_vh(vhost)}/guest",
           json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()


def delete_vhost(vhost: str) -> None:
    rabbit("DELETE", f"/vhosts/{_vh(vhost)}")


def queue_depths(vhost: str) -> dict[str, int]:
    """Messages (ready + unacknowledged) per queue; the management API's view, refreshed every few seconds."""
    r = rabbit("GET", f"/queues/{_vh(vhost)}?columns=name,messages,messages_ready,messages_unacknowledged")
    r.raise_for_status()
    return {q["name"]: int(q.get("messages") or 0) for q in r.json()}


def admin(autocommit: bool = True, database: str | None = None) -> psycopg.Connection[Any]:
    url = settings.ADMIN_URL if database is None else settings.ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    return psycopg.connect(url, autocommit=autocommit)


def autovacuum_as_deployed() -> tuple[Callable[[], None], bool]:
    """Turn autovacuum on for the run if the server has it off; returns what puts the setting back, and
    whether it was off.

    The deployed Postgres (postgres:15 in deploy/docker-compose.yml) runs autovacuum; this machine's has it off
    (conf.d/90-ci.conf). Without it the planner's statistics of the bench's fresh tables stay those of empty
    tables and dead rows are never reclaimed, which measures a database no deployment runs."""
    with admin(database="postgres") as conn:
        if conn.execute("SHOW autovacuum").fetchone()[0] == "on":  # type: ignore[index]
            return (lambda: None), False
        conn.execute("ALTER SYSTEM SET autovacuum = on")
        conn.execute("SELECT pg_reload_conf()")

    def restore() -> None:
        with admin(database="postgres") as conn:
            conn.execute("ALTER SYSTEM RESET autovacuum")
            conn.execute("SELECT pg_reload_conf()")
    return restore, True


def scalar(sql: str, params: Any = None) -> Any:
    with admin() as conn:
        row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def table_exists(conn: psycopg.Connection[Any], qualified: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (qualified,)).fetchone()[0]  # type: ignore[index]
