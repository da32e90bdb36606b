"""The four baseline hops (intake, dispatch, escalation, feedback), each a single-threaded kombu consumer.

Same durability as the platform: quorum queues, persistent messages, publisher confirms (kombu's confirm_publish
waits for each confirm), synchronous commit, an inbox row per consumed event and an outbox row per published
event in the same transaction as the state. What it lacks is everything else the platform does per message:
schema validation, classification, routing tables, rosters, policies, metrics, JSON logs, RPC, green threads.
"""
from __future__ import annotations

import services.common  # noqa: F401  (PSYCOPG_WAIT_FUNC before psycopg)

import json
import multiprocessing as mp
import uuid
import zlib
from datetime import datetime, timedelta, UTC
from typing import Any

import psycopg
from kombu import Connection, Exchange, Queue, binding

from bench import settings

SCHEMA_SQL = """
DROP SCHEMA IF EXISTS baseline CASCADE;
CREATE SCHEMA baseline;
CREATE TABLE baseline.requests (
    request_no text PRIMARY KEY, source text NOT NULL, external_id text NOT NULL, property_id text NOT NULL,
    channel text NOT NULL, category text, subcategory text, area text, description text NOT NULL,
    reported_at timestamptz, registered_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (source, external_id));
CREATE SEQUENCE baseline.request_seq;
CREATE TABLE baseline.work_orders (
    id uuid PRIMARY KEY, request_no text NOT NULL UNIQUE, department text NOT NULL, technician_id text NOT NULL,
    assigned_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE baseline.clocks (
    request_no text NOT NULL, kind text NOT NULL, deadline timestamptz NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (request_no, kind));
CREATE TABLE baseline.feedback (
    request_no text NOT NULL, event_type text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (request_no, event_type));
CREATE TABLE baseline.inbox (event_id text NOT NULL, queue text NOT NULL, PRIMARY KEY (event_id, queue));
CREATE TABLE baseline.outbox (id bigserial PRIMARY KEY, exchange text NOT NULL, routing_key text NOT NULL,
    body jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
"""

QUORUM = {"x-queue-type": "quorum"}
INBOUND = Exchange("property.inbound", type="topic", durable=True)
EXCHANGES = {s: Exchange(f"{s}.events", type="topic", durable=True) for s in ("intake", "dispatch", "escalation")}
QUEUES = {
    "intake": Queue("baseline.intake", bindings=[binding(INBOUND, routing_key="request.#")], durable=True,
                    queue_arguments=QUORUM),
    "dispatch": Queue("baseline.dispatch", bindings=[binding(EXCHANGES["intake"], routing_key="RequestRegistered")],
                      durable=True, queue_arguments=QUORUM),
    "escalation": Queue("baseline.escalation", bindings=[
        binding(EXCHANGES["intake"], routing_key="RequestRegistered"),
        binding(EXCHANGES["dispatch"], routing_key="WorkOrderAssigned")], durable=True, queue_arguments=QUORUM),
    "feedback": Queue("baseline.feedback", bindings=[
        binding(EXCHANGES["intake"], routing_key="RequestRegistered"),
        binding(EXCHANGES["dispatch"], routing_key="WorkOrderAssigned")], durable=True, queue_arguments=QUORUM),
}
TECHNICIANS = [f"eng-{i}" for i in range(8)]
TARGETS = {"first_response": 1800, "on_site": 7200}
# hop -> (table, time column, filter): what the harness counts per hop
HOP_ROWS = {
    "registered": ("baseline.requests", "registered_at", ""),
    "assigned": ("baseline.work_orders", "assigned_at", ""),
    "first_clock_started": ("baseline.clocks", "started_at", "WHERE kind = 'first_response'"),
    "clocks_started": ("baseline.clocks", "started_at", "WHERE kind = 'on_site'"),
}


def amqp_uri() -> str:
    return settings.amqp_uri(settings.BASELINE_VHOST)


def setup() -> None:
    with psycopg.connect(settings.ADMIN_URL, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
    with Connection(amqp_uri()) as conn:
        ch = conn.channel()
        for ex in [INBOUND, *EXCHANGES.values()]:
            ex(ch).declare()
        for q in QUEUES.values():
            q(ch).declare()


def _event(event_type: str, request_no: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": event_type, "request_no": request_no,
            "occurred_at": datetime.now(UTC).isoformat(), "data": data}


class Hop:
    def __init__(self, name: str) -> None:
        self.name = name
        self.db = psycopg.connect(settings.ADMIN_URL, autocommit=True)
        self.queue = QUEUES[name]

    # One transaction: the state row, the inbox row, the outbox rows. Returns the outbox ids to publish.
    def handle(self, body: dict[str, Any], routing_key: str) -> list[tuple[int, str, str, dict[str, Any]]]:
        raise NotImplementedError

    def outbox(self, exchange: str, event: dict[str, Any]) -> tuple[int, str, str, dict[str, Any]]:
        row = self.db.execute("INSERT INTO baseline.outbox (exchange, routing_key, body) VALUES (%s, %s, %s) "
                              "RETURNING id", (exchange, event["event_type"], json.dumps(event))).fetchone()
        assert row is not None
        return int(row[0]), exchange, event["event_type"], event

    def claim(self, event_id: str) -> bool:
        return self.db.execute("INSERT INTO baseline.inbox (event_id, queue) VALUES (%s, %s) ON CONFLICT DO NOTHING "
                               "RETURNING 1", (event_id, self.queue.name)).fetchone() is not None

    def run(self) -> None:
        # Publishing on its own connection: a confirm awaited on the consuming channel would dispatch deliveries
        # re-entrantly into on_message (measured: the hop stalled waiting for a confirm an inner call consumed).
        with Connection(amqp_uri()) as conn, \
                Connection(amqp_uri(), transport_options={"confirm_publish": True}) as pub_conn:
            producer = pub_conn.Producer(serializer="json")

            def on_message(body: Any, message: Any) -> None:
                data = json.loads(body) if isinstance(body, (bytes, str)) else body
                try:
                    with self.db.transaction():
                        to_publish = self.handle(data, message.delivery_info.get("routing_key", ""))
                except (KeyError, ValueError, TypeError):
                    message.ack()  # a bad message; the platform would dead-letter it
                    return
                for _row_id, exchange, routing_key, event in to_publish:
                    producer.publish(event, exchange=EXCHANGES[exchange], routing_key=routing_key,
                                     delivery_mode=2, message_id=event["event_id"])
                if to_publish:
                    self.db.execute("DELETE FROM baseline.outbox WHERE id = ANY(%s)", ([r[0] for r in to_publish],))
                message.ack()

            with conn.Consumer(self.queue, callbacks=[on_message], accept=["json", "application/json"],
                               prefetch_count=64, auto_declare=False):
                while True:
                    conn.drain_events()


class IntakeHop(Hop):
    def handle(self, body: dict[str, Any], routing_key: str) -> list[tuple[int, str, str, dict[str, Any]]]:
        for f in ("source", "external_id", "channel", "property_id", "description"):
            if not body.get(f):
                raise ValueError(f)
        seq = self.db.execute("SELECT nextval('baseline.request_seq')").fetchone()[0]  # type: ignore[index]
        request_no = f"{body['property_id']}-B{seq:08d}"
        row = self.db.execute(
            "INSERT INTO baseline.requests (request_no, source, external_id, property_id, channel, category, "
            "subcategory, area, description, reported_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (source, external_id) DO NOTHING RETURNING request_no",
            (request_no, body["source"], body["external_id"], body["property_id"], body["channel"],
             body.get("category"), body.get("subcategory"), body.get("area"), body["description"],
             body.get("reported_at"))).fetchone()
        if row is None:
            return []
        return [self.outbox("intake", _event("RequestRegistered", request_no, {
            "request_no": request_no, "property_id": body["property_id"], "channel": body["channel"],
            "category": body.get("category"), "subcategory": body.get("subcategory")}))]


class DispatchHop(Hop):
    def handle(self, body: dict[str, Any], routing_key: str) -> list[tuple[int, str, str, dict[str, Any]]]:
        if not self.claim(body["event_id"]):
            return []
        request_no = body["request_no"]
        technician = TECHNICIANS[zlib.crc32(request_no.encode()) % len(TECHNICIANS)]
        wo_id = uuid.uuid4()
        self.db.execute("INSERT INTO baseline.work_orders (id, request_no, department, technician_id) "
                        "VALUES (%s, %s, 'engineering', %s)", (wo_id, request_no, technician))
        return [self.outbox("dispatch", _event("WorkOrderAssigned", request_no, {
            "work_order_id": str(wo_id), "request_no": request_no, "technician_id": technician}))]


class EscalationHop(Hop):
    def handle(self, body: dict[str, Any], routing_key: str) -> list[tuple[int, str, str, dict[str, Any]]]:
        if not self.claim(body["event_id"]):
            return []
        kind = "first_response" if body["event_type"] == "RequestRegistered" else "on_site"
        request_no = body["request_no"]
        deadline = datetime.now(UTC) + timedelta(seconds=TARGETS[kind])
        self.db.execute("INSERT INTO baseline.clocks (request_no, kind, deadline) VALUES (%s, %s, %s) "
                        "ON CONFLICT DO NOTHING", (request_no, kind, deadline))
        return [self.outbox("escalation", _event("ClockStarted", request_no, {
            "request_no": request_no, "clock": kind, "deadline": deadline.isoformat()}))]


class FeedbackHop(Hop):
    def handle(self, body: dict[str, Any], routing_key: str) -> list[tuple[int, str, str, dict[str, Any]]]:
        if not self.claim(body["event_id"]):
            return []
        self.db.execute("INSERT INTO baseline.feedback (request_no, event_type) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        (body["request_no"], body["event_type"]))
        return []


HOPS = {"intake": IntakeHop, "dispatch": DispatchHop, "escalation": EscalationHop, "feedback": FeedbackHop}


def _run(name: str) -> None:
    HOPS[name](name).run()


def start() -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    procs = {name: ctx.Process(target=_run, args=(name,), daemon=True, name=f"baseline-{name}") for name in HOPS}
    for p in procs.values():
        p.start()
    return procs


def stop(procs: dict[str, Any]) -> None:
    for p in procs.values():
        if p.is_alive():
            p.terminate()
    for p in procs.values():
        p.join(timeout=10)


def hop_total(conn: psycopg.Connection[Any], hop: str) -> int | None:
    table, _, where = HOP_ROWS[hop]
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table} {where}").fetchone()[0])  # type: ignore[index]
    except psycopg.Error:
        return None


def totals(conn: psycopg.Connection[Any]) -> dict[str, int | None]:
    return {hop: hop_total(conn, hop) for hop in HOP_ROWS}


def hop_rates(t0: float, t1: float) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    with psycopg.connect(settings.ADMIN_URL, autocommit=True) as conn:
        for hop, (table, col, where) in HOP_ROWS.items():
            cond = f"{col} >= to_timestamp(%s) AND {col} < to_timestamp(%s)"
            sql = f"SELECT count(*) FROM {table} " + (f"{where} AND {cond}" if where else f"WHERE {cond}")
            n = conn.execute(sql, (t0, t1)).fetchone()[0]  # type: ignore[index]
            out[hop] = round(n / (t1 - t0), 1)
    return out


def exactly_once(external_ids: list[str]) -> dict[str, Any]:
    """Every confirmed publish registered once (unique key), assigned once, both clocks started once (primary keys);
    here a duplicate cannot be stored, so the check counts what is missing."""
    with psycopg.connect(settings.ADMIN_URL, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE bench_pub (external_id text PRIMARY KEY)")
        with conn.cursor().copy("COPY bench_pub (external_id) FROM STDIN") as cp:
            cp.write("\n".join(external_ids) + ("\n" if external_ids else ""))
        conn.execute("CREATE TEMP TABLE bench_reg AS SELECT p.external_id, r.request_no FROM bench_pub p "
                     "LEFT JOIN baseline.requests r ON r.source = %s AND r.external_id = p.external_id",
                     (settings.SOURCE,))

        def count(sql: str) -> int:
            return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]

        hops = {
            "registered": {"lost": count("SELECT count(*) FROM bench_reg WHERE request_no IS NULL")},
            "assigned": {"lost": count("SELECT count(*) FROM bench_reg r WHERE r.request_no IS NOT NULL AND NOT EXISTS "
                                       "(SELECT 1 FROM baseline.work_orders w WHERE w.request_no = r.request_no)")},
        }
        for kind in ("first_response", "on_site"):
            hops[f"clock_{kind}"] = {"lost": count(
                "SELECT count(*) FROM bench_reg r WHERE r.request_no IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
                f"baseline.clocks c WHERE c.request_no = r.request_no AND c.kind = '{kind}')")}
    return {"published": len(external_ids), "hops": hops, "ok": not any(h["lost"] for h in hops.values())}
