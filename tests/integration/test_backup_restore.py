"""Backup while traffic flows, restore into a fresh database, run the platform on it (issue 10, item 7).

The whole platform runs as OS processes (services.common.runner, as `make run` starts it) on its own database
and vhost, with tests/e2e/policy_seconds.yml so that deadlines are seconds away. Requests arrive over HTTP from a
background thread while `python -m services.common.backup dump` runs; the platform is stopped, the dump restored
with `... restore` into another database, and the platform started on it with an empty vhost (the broker's state
is not in a backup). Every request accepted before the backup started must be there with its work order and
clocks, and each clock whose deadline passed while the platform was down must breach exactly once.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from services.common import runner, topology
from services.common.bootstrap import admin_url, bootstrap
from services.common.config import REPO_ROOT
from services.gateway.keys import create_key
from tests.support import rabbit_api, wait_for

SRC = os.environ.get("BACKUP_TEST_SRC_DB", "propsvc_backup_src")
DST = os.environ.get("BACKUP_TEST_DST_DB", "propsvc_backup_dst")
HTTP_PORT = int(os.environ.get("BACKUP_TEST_HTTP_PORT", "18800"))
METRICS_BASE = int(os.environ.get("BACKUP_TEST_METRICS_BASE", "19800"))
PROCESSES = ("gateway", "intake", "dispatch", "escalation", "feedback")
BASE_URL = f"http://127.0.0.1:{HTTP_PORT}"
ENV = {
    "ESCALATION_POLICY": str(REPO_ROOT / "tests" / "e2e" / "policy_seconds.yml"),
    "TIMER_INTERVAL": "0.2",
    "LOG_LEVEL": "INFO",
    # Five processes share the test Postgres (max_connections 100) with other suites.
    "DB_POOL_SIZE": "4",
}
LOG_ROOT = REPO_ROOT / "tmp" / "backup-logs"


def _amqp(vhost: str) -> str:
    return f"pyamqp://guest:guest@127.0.0.1:5672/{urllib.parse.quote(vhost, safe='')}"


def _fresh_vhost(vhost: str) -> None:
    v = urllib.parse.quote(vhost, safe="")
    rabbit_api("DELETE", f"/vhosts/{v}")
    rabbit_api("PUT", f"/vhosts/{v}", json={}).raise_for_status()
    rabbit_api("PUT", f"/permissions/{v}/guest",
               json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()


def _rows(database: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(admin_url(database), autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def _start_platform(database: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, subprocess.Popen[bytes]]:
    # processes.yml expands PROPSVC_DB and AMQP_URI from the environment of whoever starts the processes.
    monkeypatch.setenv("PROPSVC_DB", database)
    monkeypatch.setenv("AMQP_URI", _amqp(database))
    topology.declare(_amqp(database))
    per_process = {name: {"METRICS_PORT": str(METRICS_BASE + i)} for i, name in enumerate(PROCESSES)}
    per_process["gateway"]["HTTP_ADDRESS"] = f"127.0.0.1:{HTTP_PORT}"
    log_dir = LOG_ROOT / database
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    procs = runner.start(env=ENV, log_dir=log_dir, per_process_env=per_process)

    deadline = time.monotonic() + 90
    try:
        while True:
            dead = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
            if dead:
                raise RuntimeError(f"processes exited during start: {dead}; see {log_dir}")
            try:
                if requests.get(f"{BASE_URL}/health/ready", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"platform on {database} not ready after 90 s; see {log_dir}")
            time.sleep(0.2)
    except BaseException:
        runner.stop(procs)
        raise
    return procs


@dataclass
class Traffic:
    """A client that keeps submitting requests; remembers when each was accepted."""
    key: str
    units: list[tuple[str, str, str]]  # (property_id, building, unit) known to intake
    accepted: list[tuple[str, float]] = field(default_factory=list)  # (request_no, wall time of the 201)
    refused: list[tuple[int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    n: int = 0

    def submit_one(self, session: requests.Session) -> None:
        property_id, building, unit = self.units[self.n % len(self.units)]
        self.n += 1
        # A different unit each time: no request is registered as a duplicate of another.
        body = {"channel": "phone", "property_id": property_id, "building": building, "unit": unit,
                "agent_id": "agent-007", "reporter": {"kind": "resident"},
                "description": "卫生间门锁坏了，有空时来修一下"}
        headers = {"X-API-Key": self.key, "Idempotency-Key": f"backup-{uuid.uuid4()}"}
        for attempt in range(5):
            try:
                r = session.post(f"{BASE_URL}/requests", timeout=30, headers=headers, json=body)
                break
            except requests.ConnectionError:
                # The answer was lost, not necessarily the request: ask again under the same idempotency key.
                if attempt == 4:
                    raise
        if r.status_code == 201:
            self.accepted.append((r.json()["request_no"], time.time()))
        else:
            self.refused.append((r.status_code, r.text[:200]))

    def run(self) -> None:
        with requests.Session() as session:
            while not self.stop.is_set():
                self.submit_one(session)


@pytest.fixture
def drill(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    running: dict[str, dict[str, subprocess.Popen[bytes]]] = {}
    state: dict[str, Any] = {"running": running, "monkeypatch": monkeypatch, "dir": tmp_path}
    try:
        yield state
    finally:
        for procs in running.values():
            runner.stop(procs)


def _cli(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "services.common.backup", *args], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_backup_under_traffic_restores_every_accepted_request_and_fires_overdue_clocks_once(
        drill: dict[str, Any]) -> None:
    monkeypatch, running = drill["monkeypatch"], drill["running"]
    _fresh_vhost(SRC)
    bootstrap(SRC, drop=True)
    key = create_key("backup-drill", ["submit", "read", "staff", "pii", "admin"],
                     f"postgresql://gateway:gateway@127.0.0.1:5432/{SRC}")[1]
    running[SRC] = _start_platform(SRC, monkeypatch)

    units = _rows(SRC, "SELECT property_id, building, unit FROM intake.units ORDER BY unit, property_id")
    traffic = Traffic(key, [(p, b, u) for p, b, u in units])
    with requests.Session() as session:
        for _ in range(20):
            traffic.submit_one(session)
    background = threading.Thread(target=traffic.run, daemon=True)
    background.start()
    wait_for(lambda: len(traffic.accepted) >= 120 or traffic.refused, timeout=30, what="traffic before the backup")
    assert not traffic.refused, traffic.refused[:3]

    dump_file = drill["dir"] / "platform.dump"
    backup_started = time.time()
    before = {no for no, at in traffic.accepted if at < backup_started}
    dumped = _cli("dump", "--database", SRC, "--out", str(dump_file))
    backup_finished = time.time()
    # Traffic goes on after the backup: those requests are after the recovery point, not in the restore.
    wait_for(lambda: any(at > backup_finished for _, at in traffic.accepted), timeout=10, what="traffic after")
    traffic.stop.set()
    background.join(timeout=30)
    runner.stop(running.pop(SRC))
    assert not traffic.refused, traffic.refused[:3]
    accepted = {no for no, _ in traffic.accepted}
    print(f"\nbackup: {len(accepted)} requests accepted, {len(before)} before the backup; dump {dumped['size_bytes']} "
          f"bytes, {dumped['rows']} rows in {dumped['seconds']} s (wall {backup_finished - backup_started:.2f} s)")

    restored = _cli("restore", "--file", str(dump_file), "--database", DST, "--drop")
    assert restored["checked_against_manifest"] and restored["rows"] == dumped["rows"]
    print(f"restore: {restored['restore_seconds']} s pg_restore + verify, {restored['seconds']} s in all; "
          f"republished {restored['republished']}")

    # The database alone: every request accepted before the backup is there, none the API did not accept.
    in_dst = {r[0] for r in _rows(DST, "SELECT request_no FROM intake.requests")}
    assert before <= in_dst, sorted(before - in_dst)[:5]
    assert in_dst <= accepted, sorted(in_dst - accepted)[:5]
    orders_at_restore = {r[0] for r in _rows(DST, "SELECT request_no FROM dispatch.work_orders")}
    clocked_at_restore = {r[0] for r in _rows(DST, "SELECT request_no FROM escalation.clocks")}
    # Those whose events were still in an outbox or a queue at the backup; restore's republish covers the latter.
    print(f"at restore: of the requests accepted before the backup, {len(before - orders_at_restore)} had no work "
          f"order and {len(before - clocked_at_restore)} no clock yet")

    # The outage: the platform stays down until some breach timers are overdue (observable in the restored rows).
    overdue = ("SELECT d.id, d.clock_id FROM escalation.deadlines d WHERE d.kind = %s AND d.fired_at IS NULL "
               "AND d.due_at <= now()")
    # Some of these clocks are met instead after the restart (their stopping fact was still in a queue at the
    # backup; the longer a consumer's batch lingers, the more): wait for enough that at least three breach.
    wait_for(lambda: len(_rows(DST, overdue, ("breach",))) >= 10, timeout=40, what="breach timers due in the outage")
    restart_at = _rows(DST, "SELECT now()")[0][0]
    due_in_outage = {r[1]: r[0] for r in _rows(DST, overdue, ("breach",))}
    warn_in_outage = {r[1]: r[0] for r in _rows(DST, overdue, ("warning",))}

    _fresh_vhost(DST)
    restart_started = time.monotonic()
    running[DST] = _start_platform(DST, monkeypatch)
    print(f"restart: platform ready on {DST} in {time.monotonic() - restart_started:.1f} s; "
          f"{len(due_in_outage)} breach and {len(warn_in_outage)} warning timers came due in the outage")

    # Every request accepted before the backup, with its work order and its clocks.
    def complete() -> set[str]:
        orders = {r[0] for r in _rows(DST, "SELECT request_no FROM dispatch.work_orders WHERE origin = 'registered' "
                                           "AND request_no = ANY(%s)", (list(before),))}
        clocks: dict[str, set[str]] = {}
        for no, kind in _rows(DST, "SELECT request_no, kind FROM escalation.clocks WHERE request_no = ANY(%s)",
                              (list(before),)):
            clocks.setdefault(no, set()).add(kind)
        done = {no for no in before if no in orders and {"first_response", "resolution"} <= clocks.get(no, set())}
        return before - done

    try:
        wait_for(lambda: not complete(), timeout=45, what="work orders and clocks of every request before the backup")
    except AssertionError as exc:
        # The usual cause is an outbox relay stuck on a lost publisher confirm (10 s per attempt): say so.
        stuck = {p.stem: p.read_text(errors="replace").count("ConfirmTimeout")
                 for p in (LOG_ROOT / DST).glob("*.log")}
        raise AssertionError(f"{exc}; missing {sorted(complete())[:5]}; relay ConfirmTimeouts {stuck}") from None

    # The timers due in the outage fired after the restart, each once.
    fired = "SELECT count(*) FROM escalation.deadlines WHERE id = ANY(%s) AND fired_at IS NULL"
    ids = list(due_in_outage.values()) + list(warn_in_outage.values())
    wait_for(lambda: _rows(DST, fired, (ids,))[0][0] == 0, timeout=20, what="overdue timers fired")
    # Quiet enough to count: everything upstream of escalation published and its queue consumed, at one look.
    upstream = ("SELECT (SELECT count(*) FROM intake.outbox) + (SELECT count(*) FROM dispatch.outbox) "
                "+ (SELECT count(*) FROM feedback.outbox)")
    queue = f"/queues/{urllib.parse.quote(DST, safe='')}/escalation.events"
    wait_for(lambda: _rows(DST, upstream)[0][0] == 0 and rabbit_api("GET", queue).json()["messages"] == 0,
             timeout=20, what="events for escalation all consumed")

    # A clock is met instead when the fact that stops it happened before its deadline and reached escalation only
    # after the restart (an assignment still in a queue at the backup). Whether its timer fired first (a breach,
    # then the late fact) is a race between the timer pass and the backlog: at most once either way.
    met_in_time = {r[0] for r in _rows(DST, "SELECT clock_id FROM escalation.clocks WHERE clock_id = ANY(%s) "
                                            "AND state = 'met' AND met_at <= deadline",
                                            ([*due_in_outage, *warn_in_outage],))}
    clocks = [c for c in due_in_outage if c not in met_in_time]
    assert len(clocks) >= 3, (len(due_in_outage), len(met_in_time))
    breaches = dict(_rows(DST, "SELECT (data->>'clock_id')::uuid, count(*) FROM escalation.timeline "
                               "WHERE event_type = 'ClockBreached' GROUP BY 1"))
    assert all(breaches.get(c) == 1 for c in clocks), {str(c): breaches.get(c) for c in clocks if breaches.get(c) != 1}
    assert max(breaches.values()) == 1, "a clock breached twice"
    fired_rows = dict(_rows(DST, "SELECT clock_id, count(*) FROM escalation.deadlines WHERE kind = 'breach' "
                                 "AND fired_at IS NOT NULL AND clock_id = ANY(%s) GROUP BY 1", (list(due_in_outage),)))
    assert all(fired_rows.get(c) == 1 for c in clocks), fired_rows
    assert max(fired_rows.values()) == 1
    raced = [c for c in met_in_time if c in breaches]
    print(f"after restart: {len(clocks)} clocks breached once; {len(met_in_time)} met by a fact from before their "
          f"deadline that arrived after the restart ({len(raced)} of them after their breach had fired)")
    late = _rows(DST, "SELECT count(*) FROM escalation.deadlines WHERE id = ANY(%s) AND fired_at < %s",
                 (list(due_in_outage.values()), restart_at))[0][0]
    assert late == 0, "a timer of the outage fired before the restart"
    warnings = dict(_rows(DST, "SELECT (data->>'clock_id')::uuid, count(*) FROM escalation.timeline "
                               "WHERE event_type = 'ClockWarned' GROUP BY 1"))
    assert max(warnings.values()) == 1
    assert all(warnings.get(c) == 1 for c in warn_in_outage if c not in met_in_time)
