"""Where the chaos run lives (its own database, vhost and ports) and its superuser/management-API helpers."""
from __future__ import annotations

import services.common  # noqa: F401  (PSYCOPG_WAIT_FUNC before psycopg)

import os
import subprocess
import time
import urllib.parse
from typing import Any

import psycopg
import requests

DB = os.environ.get("CHAOS_DB", "propsvc_chaos")
VHOST = os.environ.get("CHAOS_VHOST", "propsvc_chaos")
HTTP_PORT = int(os.environ.get("CHAOS_HTTP_PORT", "18700"))
METRICS_BASE = int(os.environ.get("CHAOS_METRICS_BASE", "19700"))
SERVICES = ("gateway", "intake", "dispatch", "escalation", "feedback")
METRICS_PORTS = {name: METRICS_BASE + i for i, name in enumerate(SERVICES)}
RABBIT_API = os.environ.get("RABBIT_API", "http://guest:guest@127.0.0.1:15672/api")
ADMIN_URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"
PG_CLUSTER = os.environ.get("CHAOS_PG_CLUSTER", "15 main").split()
CONSUMED_QUEUES = ("intake.inbound", "intake.events", "dispatch.events", "escalation.events", "feedback.events")


def amqp_uri(port: int = 5672) -> str:
    return f"pyamqp://guest:guest@127.0.0.1:{port}/{VHOST}"


def db_url(role: str, port: int = 5432) -> str:
    return f"postgresql://{role}:{role}@127.0.0.1:{port}/{DB}"


def rabbit(method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{RABBIT_API}{path}", timeout=5, **kwargs)


def vh() -> str:
    return urllib.parse.quote(VHOST, safe="")


def reset_vhost() -> None:
    rabbit("DELETE", f"/vhosts/{vh()}")
    rabbit("PUT", f"/vhosts/{vh()}", json={}).raise_for_status()
    rabbit("PUT", f"/permissions/{vh()}/guest", json={"configure": ".*", "write": ".*", "read": ".*"}
           ).raise_for_status()


def queues() -> dict[str, dict[str, int]]:
    r = rabbit("GET", f"/queues/{vh()}?columns=name,messages,consumers")
    r.raise_for_status()
    return {q["name"]: {"messages": int(q.get("messages") or 0), "consumers": int(q.get("consumers") or 0)}
            for q in r.json()}


def admin() -> psycopg.Connection[Any]:
    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)


def pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0


def wait_pg(timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pg_ready():
            return
        time.sleep(0.2)
    raise RuntimeError("Postgres not ready")


def restart_postgres() -> None:
    subprocess.run(["pg_ctlcluster", *PG_CLUSTER, "restart", "-m", "fast"], check=True, capture_output=True)
    wait_pg()


def stop_rabbit() -> None:
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True)


def start_rabbit() -> None:
    subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "await_startup"], check=True, capture_output=True, timeout=120)


def rabbit_healthy() -> bool:
    return subprocess.run(["rabbitmqctl", "status"], capture_output=True).returncode == 0
