"""`make chaos` (`python -m tests.chaos.run [--quick] [--seed N]`): issue 10 items 1 and 3, on the real platform.

The platform's five OS processes are started exactly as `make run` starts them (services.common.runner), against
the chaos database and vhost. While requests arrive (HTTP POST /requests with an Idempotency-Key, and the inbound
exchange, mixed), a seeded schedule SIGKILLs and restarts every service, stops and starts RabbitMQ, restarts
Postgres, and cuts one service's broker connection and another's database connection through a TCP proxy this
process runs. Then it waits for the backlog to drain and checks each hop from the services' own tables; then the
timers part (three escalation instances, deadlines due over a window, one instance killed, Postgres restarted);
then the PII grep of every log line. The JSON report goes to tests/chaos/results/<timestamp>.json; the exit code is
0 only when every check passed. See docs/resilience.md.

RabbitMQ and Postgres restarts hit the machine's shared servers: `--no-server-faults` leaves them out (and says so
in the report); both are always left running (checked at the end).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.chaos import infra

# Before runner expands deploy/processes.yml: every child's DATABASE_URL and AMQP_URI point at the chaos run's.
os.environ["PROPSVC_DB"] = infra.DB
os.environ["AMQP_URI"] = infra.amqp_uri()
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

from services.common import runner, topology  # noqa: E402
from services.common.bootstrap import bootstrap  # noqa: E402
from services.common.config import REPO_ROOT  # noqa: E402
from services.gateway.keys import create_key  # noqa: E402
from tests.chaos import timers  # noqa: E402
from tests.chaos.load import AMQP_SOURCE, HTTP_SOURCE, Item, Load, make_items  # noqa: E402
from tests.chaos.proxy import TcpProxy  # noqa: E402

RESULTS = REPO_ROOT / "tests" / "chaos" / "results"
LOG_ROOT = REPO_ROOT / "tmp" / "chaos-logs"
HOPS = ("intake", "dispatch", "escalation", "feedback")
WORKERS = ("intake", "dispatch", "escalation", "feedback")
# Differences from `make run`: small pools (the shared Postgres has 100 connections), no per-key rate limit (the
# run measures the platform, not the limiter), a long acceptance timeout (no legitimate reassignment during the run).
CHAOS_ENV = {
    "DB_POOL_SIZE": "4",
    "RATE_LIMIT_PER_SECOND": "1000000",
    "RATE_LIMIT_BURST": "1000000",
    "ASSIGNMENT_POLICY": "bench/assignment_policy.yml",
    "LOG_LEVEL": "INFO",
}


@dataclass
class Mode:
    quick: bool
    requests: int
    rate: float
    kills_per_service: int
    rabbit_restarts: int
    pg_restarts: int
    deadlines: int
    deadline_window_s: float
    drain_timeout_s: float

    @classmethod
    def of(cls, quick: bool) -> Mode:
        if quick:
            return cls(True, 1000, 20.0, 1, 1, 1, 2000, 12.0, 150.0)
        return cls(False, 10_000, 55.0, 3, 2, 2, 10_000, 30.0, 420.0)


@dataclass
class Fault:
    kind: str  # kill, rabbit, postgres, cut_broker, cut_db
    target: str
    planned_s: float
    down_s: float
    start_s: float | None = None
    end_s: float | None = None
    error: str | None = None
    recovery_s: dict[str, float | None] = field(default_factory=dict)


class Platform:
    def __init__(self, log_dir: Path, per_process: dict[str, dict[str, str]]) -> None:
        self.log_dir = log_dir
        self.per_process = per_process
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.extra: dict[str, subprocess.Popen[bytes]] = {}
        self.lock = threading.Lock()
        self.killing: set[str] = set()
        self.crashes: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        self.halt = threading.Event()

    def start(self, names: list[str] | None = None) -> None:
        started = runner.start(names=names, env=dict(CHAOS_ENV), log_dir=self.log_dir,
                               per_process_env=self.per_process)
        with self.lock:
            self.procs.update(started)
            self.killing.difference_update(started)

    def kill(self, name: str) -> None:
        with self.lock:
            self.killing.add(name)
            p = self.procs[name]
        p.send_signal(signal.SIGKILL)
        p.wait()

    def supervise(self) -> None:
        """Restart a process that exited on its own, as compose does (`restart: unless-stopped`), and record it:
        a service that exits because of a fault is a finding, even when the restart hides the damage."""
        def loop() -> None:
            while not self.halt.wait(0.5):
                with self.lock:
                    dead = [(n, p.returncode) for n, p in self.procs.items()
                            if n not in self.killing and p.poll() is not None]
                    dead += [(f"x-{n}", p.returncode) for n, p in self.extra.items()
                             if f"x-{n}" not in self.killing and p.poll() is not None]
                for name, rc in dead:
                    at = round(time.monotonic() - self.t0, 2)
                    self.crashes.append({"service": name, "exit_code": rc, "at_s": at})
                    print(f"[{at:7.1f}s] {name} exited on its own ({rc}); restarting", flush=True)
                    with self.lock:
                        # The fault injector may have killed and restarted it meanwhile: never start a second copy.
                        if name in self.killing:
                            continue
                        self.killing.add(name)
                    if name.startswith("x-"):
                        self.start_extra_escalation(name[2:])
                    else:
                        self.start([name])
        threading.Thread(target=loop, daemon=True, name="supervisor").start()

    def start_extra_escalation(self, label: str) -> None:
        # METRICS_PORT 0: no metrics endpoint (the run owns five ports); the instance is otherwise the same command.
        procs = runner.start(names=["escalation"], env=dict(CHAOS_ENV), log_dir=self.log_dir / label,
                             per_process_env={"escalation": {"METRICS_PORT": "0"}})
        with self.lock:
            self.extra[label] = procs["escalation"]
            self.killing.discard(f"x-{label}")

    def kill_extra(self, label: str) -> None:
        with self.lock:
            self.killing.add(f"x-{label}")
            p = self.extra[label]
        p.send_signal(signal.SIGKILL)
        p.wait()

    def stop(self) -> None:
        self.halt.set()
        runner.stop({**self.procs, **{f"x-{k}": v for k, v in self.extra.items()}})

    def wait_ready(self, timeout: float = 180) -> None:
        import requests
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
            if dead:
                raise RuntimeError(f"processes exited during start: {dead}; see {self.log_dir}")
            try:
                qs = infra.queues()
                consuming = all(qs.get(q, {}).get("consumers", 0) > 0 for q in infra.CONSUMED_QUEUES if q in qs)
                if consuming and requests.get(f"http://127.0.0.1:{infra.HTTP_PORT}/health/ready", timeout=5).ok:
                    return
            except Exception:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"platform not ready after {timeout}s; see {self.log_dir}")


class Monitor(threading.Thread):
    """Samples each hop's count, the outbox rows of every schema and the queue depths, twice a second."""

    COUNTS = {
        "intake": "SELECT count(*) FROM intake.requests WHERE source IN ('chaos-http', 'chaos-amqp')",
        "dispatch": "SELECT count(*) FROM dispatch.work_orders WHERE origin = 'registered'",
        "escalation": "SELECT count(DISTINCT request_no) FROM escalation.clocks WHERE request_no NOT LIKE 'T%%'",
        "feedback": "SELECT count(*) FROM feedback.requests",
    }
    OUTBOX = " UNION ALL ".join(f"SELECT '{s}', count(*) FROM {s}.outbox" for s in infra.SERVICES)

    def __init__(self, t0: float) -> None:
        super().__init__(daemon=True, name="monitor")
        self.t0 = t0
        self.samples: list[dict[str, Any]] = []
        self.max_queue: dict[str, int] = {}
        self.max_outbox: dict[str, int] = {}
        self.halt = threading.Event()
        self.conn: Any = None

    def counts(self) -> dict[str, int] | None:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = infra.admin()
            out = {hop: int(self.conn.execute(sql).fetchone()[0]) for hop, sql in self.COUNTS.items()}
            for schema, n in self.conn.execute(self.OUTBOX).fetchall():
                out[f"outbox.{schema}"] = int(n)
                self.max_outbox[schema] = max(self.max_outbox.get(schema, 0), int(n))
            return out
        except Exception:
            try:
                if self.conn is not None:
                    self.conn.close()
            except Exception:
                pass
            self.conn = None
            return None

    def run(self) -> None:
        while not self.halt.is_set():
            t = time.monotonic() - self.t0
            sample: dict[str, Any] = {"t": round(t, 2)}
            c = self.counts()
            if c is not None:
                sample.update(c)
            try:
                for name, q in infra.queues().items():
                    sample[f"q.{name}"] = q["messages"]
                    self.max_queue[name] = max(self.max_queue.get(name, 0), q["messages"])
            except Exception:
                pass
            self.samples.append(sample)
            self.halt.wait(0.5)

    def series(self, hop: str) -> list[tuple[float, int]]:
        return [(s["t"], s[hop]) for s in self.samples if hop in s]


def recovery(series: list[tuple[float, int]], end_s: float) -> float | None:
    """Seconds from the fault's end until the hop's count next increases (None: it never did; nothing was pending)."""
    before = [v for t, v in series if t <= end_s]
    if not before:
        return None
    base = before[-1]
    for t, v in series:
        if t > end_s and v > base:
            return round(t - end_s, 2)
    return None


def schedule(mode: Mode, rng: random.Random, server_faults: bool, broker_cut: str, db_cut: str,
             load_s: float) -> list[Fault]:
    kinds: list[tuple[str, str]] = [("kill", s) for s in infra.SERVICES for _ in range(mode.kills_per_service)]
    if server_faults:
        kinds += [("rabbit", "rabbitmq")] * mode.rabbit_restarts + [("postgres", "postgres")] * mode.pg_restarts
    kinds += [("cut_broker", broker_cut), ("cut_db", db_cut)]
    rng.shuffle(kinds)
    # Spread over the load, from 8% to 85% of it, so every fault meets traffic and the tail shows recovery.
    first, last = 0.08 * load_s, 0.85 * load_s
    step = (last - first) / max(1, len(kinds) - 1)
    faults = []
    for k, (kind, target) in enumerate(kinds):
        down = {"kill": rng.uniform(0.5, 3.0), "rabbit": rng.uniform(3.0, 6.0), "postgres": rng.uniform(0.0, 1.0),
                "cut_broker": rng.uniform(3.0, 8.0), "cut_db": rng.uniform(3.0, 8.0)}[kind]
        faults.append(Fault(kind, target, round(first + k * step + rng.uniform(0, step * 0.3), 2), round(down, 2)))
    return faults


def inject(faults: list[Fault], platform: Platform, proxies: dict[str, TcpProxy], t0: float,
           done: threading.Event) -> None:
    for f in faults:
        wait = t0 + f.planned_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        f.start_s = round(time.monotonic() - t0, 2)
        try:
            if f.kind == "kill":
                platform.kill(f.target)
                time.sleep(f.down_s)
                platform.start([f.target])
            elif f.kind == "rabbit":
                infra.stop_rabbit()
                time.sleep(f.down_s)
                infra.start_rabbit()
            elif f.kind == "postgres":
                infra.restart_postgres()
            else:
                proxy = proxies["broker" if f.kind == "cut_broker" else "db"]
                proxy.cut()
                time.sleep(f.down_s)
                proxy.restore()
        except Exception as exc:
            f.error = f"{type(exc).__name__}: {exc}"
            print(f"fault {f.kind} {f.target} failed: {f.error}", flush=True)
        f.end_s = round(time.monotonic() - t0, 2)
        print(f"[{f.end_s:7.1f}s] fault {f.kind:<10} {f.target:<10} {f.start_s}..{f.end_s}", flush=True)
    done.set()


# --------------------------------------------------------------------------------------------------- checks
def one(conn: Any, sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def drained(conn: Any, expected: int) -> tuple[bool, dict[str, Any]]:
    state: dict[str, Any] = {}
    for hop, sql in Monitor.COUNTS.items():
        state[hop] = int(conn.execute(sql).fetchone()[0])
    state["outbox"] = int(conn.execute(f"SELECT sum(n) FROM ({Monitor.OUTBOX}) x(s, n)").fetchone()[0])
    qs = infra.queues()
    # Work queues only: a reply queue left by a killed gateway holds answers nobody waits for (it expires), and the
    # dead-letter queues are checked separately.
    state["queued"] = sum(q["messages"] for name, q in qs.items() if name.endswith((".events", ".inbound")))
    ok = state["outbox"] == 0 and state["queued"] == 0 and all(state[h] >= expected for h in HOPS)
    return ok, state


def wait_drain(expected: int, timeout: float) -> dict[str, Any]:
    end = time.monotonic() + timeout
    t0 = time.monotonic()
    last: dict[str, Any] = {}
    stable_since: float | None = None
    previous: dict[str, Any] | None = None
    while time.monotonic() < end:
        try:
            with infra.admin() as conn:
                ok, last = drained(conn, expected)
        except Exception as exc:
            ok, last = False, {"error": str(exc)}
        if ok:
            return {"drained": True, "seconds": round(time.monotonic() - t0, 1), **last}
        # Nothing moving for 30 s with nothing queued and no outbox: whatever is missing is lost, not late.
        if last == previous and last.get("queued") == 0 and last.get("outbox") == 0:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since > 30:
                break
        else:
            stable_since = None
        previous = last
        time.sleep(1)
    return {"drained": False, "seconds": round(time.monotonic() - t0, 1), **last}


def check_hops(items: list[Item]) -> dict[str, Any]:
    accepted = [i for i in items if i.accepted]
    never = [i for i in items if not i.accepted]
    src = {"http": HTTP_SOURCE, "amqp": AMQP_SOURCE}
    out: dict[str, Any] = {}
    with infra.admin() as conn:
        rows = conn.execute("SELECT source, external_id, count(*), min(request_no) FROM intake.requests "
                            "WHERE source IN (%s, %s) GROUP BY 1, 2", (HTTP_SOURCE, AMQP_SOURCE)).fetchall()
        found = {(s, e): (int(n), rn) for s, e, n, rn in rows}
        lost_intake = [i.key for i in accepted if (src[i.via], i.key) not in found]
        dup_rows = [k for k, (n, _) in found.items() if n > 1]
        mismatch = [i.key for i in accepted if i.via == "http" and i.request_no
                    and found.get((src[i.via], i.key), (0, None))[1] != i.request_no]
        present_never = [i for i in never if (src[i.via], i.key) in found]
        conn.execute("CREATE TEMP TABLE chaos_accepted (request_no text PRIMARY KEY)")
        with conn.cursor().copy("COPY chaos_accepted (request_no) FROM STDIN") as copy:
            for i in accepted:
                hit = found.get((src[i.via], i.key))
                if hit:
                    copy.write_row((hit[1],))
        n_acc = int(one(conn, "SELECT count(*) FROM chaos_accepted"))

        def q(sql: str) -> int:
            return int(one(conn, sql))

        out["intake"] = {
            "hop": "client (HTTP + inbound exchange) -> intake.requests",
            "accepted": len(accepted), "registered": n_acc, "lost": len(lost_intake),
            "duplicated": len(dup_rows) + q(
                "SELECT count(*) FROM (SELECT request_no FROM intake.timeline t JOIN chaos_accepted USING (request_no) "
                "WHERE event_type = 'RequestRegistered' GROUP BY 1 HAVING count(*) > 1) x"),
            "http_request_no_mismatch": len(mismatch),
            "lost_keys": lost_intake[:20],
        }
        out["dispatch"] = {
            "hop": "intake RequestRegistered -> dispatch.work_orders (origin 'registered')",
            "lost": q("SELECT count(*) FROM chaos_accepted a WHERE NOT EXISTS (SELECT 1 FROM dispatch.work_orders w "
                      "WHERE w.request_no = a.request_no AND w.origin = 'registered')"),
            "duplicated": q("SELECT count(*) FROM (SELECT request_no FROM dispatch.work_orders JOIN chaos_accepted "
                            "USING (request_no) WHERE origin = 'registered' GROUP BY 1 HAVING count(*) > 1) x")
            + q("SELECT count(*) FROM (SELECT request_no FROM dispatch.timeline JOIN chaos_accepted USING (request_no) "
                "WHERE event_type = 'WorkOrderCreated' GROUP BY 1 HAVING count(*) > 1) x"),
        }
        kinds = conn.execute("SELECT kind, count(*) FROM escalation.clocks JOIN chaos_accepted USING (request_no) "
                             "GROUP BY 1 ORDER BY 1").fetchall()
        out["escalation"] = {
            "hop": "intake RequestRegistered -> escalation.clocks (one per request per kind)",
            "clocks_by_kind": {k: int(n) for k, n in kinds},
            "lost": q("SELECT count(*) FROM chaos_accepted a WHERE NOT EXISTS (SELECT 1 FROM escalation.clocks c "
                      "WHERE c.request_no = a.request_no)")
            + sum(max(0, n_acc - int(n)) for _, n in kinds),
            "duplicated": q("SELECT count(*) FROM (SELECT request_no, kind FROM escalation.clocks JOIN chaos_accepted "
                            "USING (request_no) GROUP BY 1, 2 HAVING count(*) > 1) x")
            + q("SELECT count(*) FROM (SELECT request_no, data->>'clock' FROM escalation.timeline JOIN chaos_accepted "
                "USING (request_no) WHERE event_type = 'ClockStarted' GROUP BY 1, 2 HAVING count(*) > 1) x"),
        }
        out["feedback"] = {
            "hop": "intake RequestRegistered -> feedback.requests",
            "lost": q("SELECT count(*) FROM chaos_accepted a WHERE NOT EXISTS (SELECT 1 FROM feedback.requests f "
                      "WHERE f.request_no = a.request_no)"),
            "duplicated": 0,  # request_no is feedback.requests' primary key: a second row cannot exist
        }
        outbox = {s: int(n) for s, n in conn.execute(Monitor.OUTBOX).fetchall()}
        inbox = {s: int(one(conn, f"SELECT count(*) FROM {s}.inbox")) for s in HOPS}
    dlq = {n: q["messages"] for n, q in infra.queues().items() if n.endswith(".dlq") and q["messages"]}
    explained = []
    for i in present_never:
        # Committed but the answer was lost (a timeout or 5xx after the service had committed), and the client gave
        # up before retrying it: it exists exactly once (checked above) and is listed here.
        explained.append({"key": i.key, "via": i.via, "answers": i.answers})
    return {"hops": out, "outbox_left": outbox, "inbox_rows": inbox, "dead_lettered": dlq,
            "never_accepted": len(never), "never_accepted_but_present": explained,
            "never_accepted_finals": [i.final for i in never][:20]}


_DIGITS = re.compile(r"\d{11,}")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _pii_in(line: str, names: set[str], phones: set[str], found_names: set[str], found_phones: set[str]) -> None:
    # JSON logs may escape non-ASCII (\uXXXX): search the unescaped text as well as the raw one.
    texts = [line, _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), line)] if "\\u" in line else [line]
    for text in texts:
        for m in _DIGITS.finditer(text):
            d = m.group(0)
            found_phones.update(d[k:k + 11] for k in range(len(d) - 10) if d[k:k + 11] in phones)
        for k in range(len(text) - 2):
            if text[k] >= "\u4e00" and text[k:k + 3] in names:
                found_names.add(text[k:k + 3])


def grep_pii(items: list[Item], log_dir: Path) -> dict[str, Any]:
    names = {i.name for i in items}
    phones = {i.phone for i in items}
    # Positive control: the matcher finds a planted name and number, raw and JSON-escaped, or the grep proves nothing.
    probe_n: set[str] = set()
    probe_p: set[str] = set()
    for planted in (f"x {items[0].name} +86{items[0].phone} y", json.dumps({"m": f"{items[1].name} {items[1].phone}"})):
        _pii_in(planted, names, phones, probe_n, probe_p)
    control_ok = probe_n == {items[0].name, items[1].name} and probe_p == {items[0].phone, items[1].phone}
    found_names: set[str] = set()
    found_phones: set[str] = set()
    lines = 0
    files = sorted(log_dir.rglob("*.log"))
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                lines += 1
                _pii_in(line, names, phones, found_names, found_phones)
    return {"files": len(files), "lines": lines, "names_searched": len(names), "phones_searched": len(phones),
            "control_found_planted": control_ok,
            "names_found": sorted(found_names)[:20], "phones_found": sorted(found_phones)[:20],
            "found": len(found_names) + len(found_phones)}


# --------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~1,000 requests, each fault once; CI variant (< 5 min)")
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--no-server-faults", action="store_true",
                    help="leave out the RabbitMQ and Postgres restarts (they hit every user of the shared servers)")
    ap.add_argument("--skip-timers", action="store_true", help="leave out the timers part (development only)")
    args = ap.parse_args(argv)
    mode = Mode.of(args.quick)
    rng = random.Random(args.seed)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = LOG_ROOT / stamp
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"mode": "quick" if mode.quick else "full", "seed": args.seed, "started": stamp,
                              "server_faults": not args.no_server_faults, "sizes": asdict(mode),
                              "log_dir": str(log_dir.relative_to(REPO_ROOT))}
    failures: list[str] = []
    proxies: dict[str, TcpProxy] = {}
    platform: Platform | None = None
    t_start = time.monotonic()
    try:
        broker_cut, db_cut = rng.sample(list(WORKERS), 2)
        proxies = {"broker": TcpProxy(5672), "db": TcpProxy(5432)}
        report["proxied"] = {"broker": broker_cut, "db": db_cut}
        infra.reset_vhost()
        bootstrap(infra.DB, drop=True)
        topology.declare(infra.amqp_uri())
        api_key = create_key(HTTP_SOURCE, ["submit", "read"], infra.db_url("gateway"))[1]
        per_process = {n: {"METRICS_PORT": str(p)} for n, p in infra.METRICS_PORTS.items()}
        per_process["gateway"]["HTTP_ADDRESS"] = f"127.0.0.1:{infra.HTTP_PORT}"
        per_process[broker_cut]["AMQP_URI"] = infra.amqp_uri(proxies["broker"].port)
        per_process[db_cut]["DATABASE_URL"] = infra.db_url(db_cut, proxies["db"].port)
        platform = Platform(log_dir, per_process)
        platform.start()
        platform.wait_ready()
        platform.supervise()
        report["startup_s"] = round(time.monotonic() - t_start, 1)
        print(f"platform ready in {report['startup_s']}s; logs in {log_dir}", flush=True)

        items = make_items(mode.requests, args.seed, f"c{stamp}")
        load_s = mode.requests / mode.rate
        faults = schedule(mode, rng, not args.no_server_faults, broker_cut, db_cut, load_s)
        load = Load(items, mode.rate, f"http://127.0.0.1:{infra.HTTP_PORT}", api_key, infra.amqp_uri(),
                    retry_deadline_s=120 if mode.quick else 300)
        t0 = time.monotonic()
        platform.t0 = t0
        monitor = Monitor(t0)
        monitor.start()
        load.start()
        done = threading.Event()
        injector = threading.Thread(target=inject, args=(faults, platform, proxies, t0, done), daemon=True)
        injector.start()
        injector.join()
        if not load.join(timeout=load_s + 600):
            failures.append("load generators did not finish")
        load_end = round(time.monotonic() - t0, 1)
        print(f"[{load_end:7.1f}s] load done: {sum(i.accepted for i in items)} accepted of {len(items)}", flush=True)
        drain = wait_drain(sum(i.accepted for i in items), mode.drain_timeout_s)
        drain["at_s"] = round(time.monotonic() - t0, 1)
        print(f"[{drain['at_s']:7.1f}s] drain: {drain}", flush=True)
        time.sleep(1.0)
        monitor.halt.set()
        monitor.join(5)
        for f in faults:
            if f.end_s is not None:
                f.recovery_s = {hop: recovery(monitor.series(hop), f.end_s) for hop in HOPS}
        checks = check_hops(items)
        report.update({
            "load": {"requests": len(items), "offered_rate": mode.rate, "load_s": load_end,
                     "http": sum(i.via == "http" for i in items), "amqp": sum(i.via == "amqp" for i in items),
                     "accepted": sum(i.accepted for i in items), **load.counts,
                     "accepted_after_retry": sum(1 for i in items if i.accepted and i.attempts > 1),
                     "answers": _answer_counts(items)},
            "faults": [asdict(f) for f in faults], "drain": drain, **checks,
            "samples": monitor.samples,
            "largest_backlog": {"queue_messages": monitor.max_queue, "outbox_rows": monitor.max_outbox},
        })
        for hop, h in checks["hops"].items():
            if h["lost"] or h["duplicated"]:
                failures.append(f"hop {hop}: lost {h['lost']}, duplicated {h['duplicated']}")
        if any(checks["outbox_left"].values()):
            failures.append(f"outbox rows left: {checks['outbox_left']}")
        if checks["dead_lettered"]:
            failures.append(f"dead-lettered: {checks['dead_lettered']}")
        if checks["hops"]["intake"]["http_request_no_mismatch"]:
            failures.append("an HTTP answer named another request_no than the one stored")
        if any(f.error for f in faults):
            failures.append("a fault could not be injected")

        if not args.skip_timers:
            report["timers"] = timers.run(platform, mode.deadlines, mode.deadline_window_s,
                                          server_faults=not args.no_server_faults, rng=rng)
            t = report["timers"]
            if not t.get("exactly_once") or (t.get("max_lateness_s") or 99) > 5.0:
                failures.append(f"timers: exactly_once={t.get('exactly_once')}, "
                                f"max_lateness_s={t.get('max_lateness_s')}")
        report["crashes"] = platform.crashes
        platform.stop()
        platform = None
        report["pii"] = grep_pii(items, log_dir)
        if report["pii"]["found"] or not report["pii"]["control_found_planted"]:
            failures.append(f"PII in logs: {report['pii']['found']} (control {report['pii']['control_found_planted']})")
    except Exception as exc:
        failures.append(f"run aborted: {type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        if platform is not None:
            platform.stop()
        for p in proxies.values():
            p.close()
        report["servers_after"] = _ensure_servers()
        if not all(report["servers_after"].values()):
            failures.append(f"servers not healthy after the run: {report['servers_after']}")
    report["duration_s"] = round(time.monotonic() - t_start, 1)
    report["failures"] = failures
    report["passed"] = not failures
    out = RESULTS / f"{stamp}.json"
    out.write_text(json.dumps(report, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    print(json.dumps(_summary(report), ensure_ascii=False, indent=1), flush=True)
    print(f"report: {out}", flush=True)
    return 0 if not failures else 1


def _answer_counts(items: list[Item]) -> dict[str, int]:
    c: dict[str, int] = {}
    for i in items:
        for a in i.answers:
            c[a] = c.get(a, 0) + 1
    return dict(sorted(c.items()))


def _ensure_servers() -> dict[str, bool]:
    """Both shared servers running whatever happened (a run interrupted mid-fault must not leave one down)."""
    if not infra.rabbit_healthy() or infra.rabbit("GET", "/overview").status_code != 200:
        try:
            infra.start_rabbit()
        except Exception:
            pass
    if not infra.pg_ready():
        subprocess.run(["pg_ctlcluster", *infra.PG_CLUSTER, "start"], capture_output=True)
        try:
            infra.wait_pg(30)
        except Exception:
            pass
    try:
        rabbit_ok = infra.rabbit_healthy() and infra.rabbit("GET", "/overview").status_code == 200
    except Exception:
        rabbit_ok = False
    return {"postgres": infra.pg_ready(), "rabbitmq": rabbit_ok}


def _summary(r: dict[str, Any]) -> dict[str, Any]:
    return {"passed": r.get("passed"), "failures": r.get("failures"), "mode": r.get("mode"),
            "hops": {h: {"lost": v["lost"], "duplicated": v["duplicated"]} for h, v in r.get("hops", {}).items()},
            "timers": {k: v for k, v in (r.get("timers") or {}).items() if k != "faults"},
            "crashes": r.get("crashes"), "pii_found": (r.get("pii") or {}).get("found"),
            "duration_s": r.get("duration_s")}


if __name__ == "__main__":
    sys.exit(main())
