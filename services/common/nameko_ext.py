"""nameko extensions every service uses: the unit-of-work store with its outbox relay, observability,
and the event / inbound consumers that dead-letter bad messages with a reason instead of losing them.
"""
from __future__ import annotations

import services.common  # noqa: F401  (sets PSYCOPG_WAIT_FUNC before psycopg is imported)

import functools
import json
import logging
import re
import sys
import time
import uuid
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterable

import eventlet
import psycopg
import psycopg_pool
from eventlet.queue import Empty, LightQueue
from eventlet.semaphore import Semaphore
from kombu import Connection
from kombu.messaging import Consumer as KombuConsumer
from marshmallow import ValidationError
from nameko.amqp.publish import Publisher
from nameko.exceptions import ContainerBeingKilled
from nameko.extensions import DependencyProvider, SharedExtension
from nameko.messaging import Consumer, QueueConsumer
from nameko.rpc import Rpc
from prometheus_client import REGISTRY, disable_created_metrics, start_http_server
from prometheus_client.core import GaugeMetricFamily

from services.common import logs, metrics, topology
from services.common.db import (
    BatchUnitOfWork,
    RedoCarefully,
    UnitOfWork,
    analyse_new_tables,
    any_of_json,
    dumps,
    make_pool,
    migrate,
)
from services.common.publisher import ConfirmingPublisher, Outgoing
from services.common.domain import DomainError
from services.common.rpc import domain_errors

log = logging.getLogger(__name__)

RETRYABLE = (psycopg.OperationalError, psycopg_pool.PoolTimeout, psycopg.errors.SerializationFailure,
             psycopg.errors.DeadlockDetected)


REQUEST_NO = re.compile(r"^[A-Z][A-Z0-9]{1,9}-\d{8}-\d{6}$")


DEAD_LETTER_REASONS = ("invalid", "undecodable", "handler_error", "not_ready", "domain_error", "invalid_request")


class NotReady(Exception):
    """A prerequisite has not arrived yet (events from two producers can overtake each other); retry later."""


# --------------------------------------------------------------------------------------------------- store
# Events of one type that sit next to each other in the outbox travel as one message, a pack: a JSON array of
# envelopes. Per request a queue sees its events in the same order as one message each; the broker and each
# consumer handle one delivery (publish, confirm, route, store, deliver, ack) instead of one per event, which
# was most of RabbitMQ's share of the machine at load. Under light load a run is one event: a plain message.
PACK_MAX = 50


def pack_runs(rows: list[tuple[Any, ...]], limit: int = PACK_MAX) -> list[tuple[int, int]]:
    """[first, end) of each run of consecutive rows with the same exchange and routing key, at most `limit` long."""
    runs: list[tuple[int, int]] = []
    first = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or i - first >= limit or rows[i][1:3] != rows[first][1:3]:
            runs.append((first, i))
            first = i
    return runs


class _OutboxCollector:
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterable[GaugeMetricFamily]:
        pending = GaugeMetricFamily("outbox_pending_events", "Outbox rows not yet published", labels=["service"])
        oldest = GaugeMetricFamily("outbox_oldest_event_timestamp_seconds",
                                   "Creation time of the oldest unpublished outbox row (0 when empty)",
                                   labels=["service"])
        try:
            with self.store.pool.connection(timeout=2) as conn:
                row = conn.execute("SELECT count(*), extract(epoch FROM min(created_at)) FROM outbox").fetchone()
        except Exception:  # a scrape must not fail because the database is restarting
            log.warning("outbox collector could not read the outbox")
            return []
        assert row is not None
        pending.add_metric([self.store.service], float(row[0]))
        oldest.add_metric([self.store.service], float(row[1] or 0))
        return [pending, oldest]


class UowFactory:
    """What a worker's `self.uow` is: `self.uow()` gives a new unit of work, or, while the worker runs a
    consumer's batch, the batch's (one transaction; each message undone alone if it fails: `run_batch`)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.batch: BatchUnitOfWork | None = None

    def __call__(self) -> UnitOfWork:
        return self.batch if self.batch is not None else self.store.uow()


class Store(DependencyProvider):
    """Connection pool, migrations at start, `uow()` per worker, and the outbox relay thread."""

    def __init__(self, migrations: str | Path, batch_size: int = 500) -> None:
        self.migrations = Path(migrations)
        self.batch_size = batch_size
        self._wake: LightQueue = LightQueue(maxsize=1)
        self._running = False

    def setup(self) -> None:
        cfg = self.container.config
        self.service = self.container.service_name
        self.database_url = cfg["DATABASE_URL"]
        self.amqp_uri = cfg["AMQP_URI"]
        for attempt in range(60):
            try:
                applied = migrate(self.database_url, self.migrations, self.service)
                break
            except psycopg.OperationalError:
                if attempt == 59:
                    raise
                log.warning("database not reachable for migrations, retrying")
                time.sleep(1)
        if applied:
            log.info("applied migrations %s", ", ".join(applied))
        self.pool = make_pool(self.database_url, self.service, int(cfg.get("DB_POOL_SIZE", 12)), self.service)
        self.pack_max = max(1, int(cfg.get("RELAY_PACK_MAX", PACK_MAX)))
        self.analyse_every = float(cfg.get("ANALYSE_NEW_TABLES_SECONDS", 10))
        self.analyse_rows = int(cfg.get("ANALYSE_NEW_TABLES_ROWS", 1000))
        topology.declare(self.amqp_uri)
        metrics.OUTBOX_PUBLISHED.labels(self.service)
        metrics.OUTBOX_MESSAGES.labels(self.service)
        for kind in ("unroutable", "nacked", "ConfirmTimeout", "OperationalError"):
            metrics.OUTBOX_PUBLISH_ERRORS.labels(self.service, kind)
        try:
            REGISTRY.register(_OutboxCollector(self))
        except ValueError:  # already registered by an earlier container in this process (tests)
            pass

    def start(self) -> None:
        self._running = True
        self.container.spawn_managed_thread(self._relay_forever, identifier="outbox-relay")
        if self.analyse_every > 0:
            self.container.spawn_managed_thread(self._analyse_new_tables_forever, identifier="analyse-new-tables")

    def stop(self) -> None:
        self._running = False
        self.wake()
        self.pool.close()

    def kill(self) -> None:
        self._running = False
        self.pool.close()

    def wake(self) -> None:
        try:
            self._wake.put_nowait(1)
        except eventlet.queue.Full:
            pass

    # The time units of work read (`uow.now()`); a service may shift it (dispatch's CLOCK_OFFSET_SECONDS).
    clock: Callable[[], datetime] | None = None

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.pool, self.service, on_commit=self.wake, clock=self.clock)

    def batch_uow(self) -> BatchUnitOfWork:
        return BatchUnitOfWork(self.pool, self.service, on_commit=self.wake, clock=self.clock)

    def get_dependency(self, worker_ctx: Any) -> UowFactory:
        return UowFactory(self)

    def _analyse_new_tables_forever(self) -> None:
        """Give the schema's new tables their first statistics as soon as they are worth it
        (`db.analyse_new_tables`); a look at pg_stat_user_tables every `analyse_every` seconds."""
        while self._running:
            eventlet.sleep(self.analyse_every)
            try:
                with self.pool.connection() as conn:
                    done = analyse_new_tables(conn, self.analyse_rows)
            except psycopg.Error as exc:  # the database away: the relay says so; try again later
                log.debug("first analyse of new tables failed: %s", type(exc).__name__)
                continue
            if done:
                log.info("analysed new tables %s (never analysed, %d rows or more)", ", ".join(done),
                         self.analyse_rows)

    # Relay: publish committed outbox rows with confirms, then delete them. A crash between the two
    # publishes a row again on restart; consumers' inboxes make that harmless.
    def _relay_forever(self) -> None:
        publisher = ConfirmingPublisher(self.amqp_uri)
        backoff = 0.1
        while self._running:
            try:
                sent = self.relay_once(publisher)
                backoff = 0.1
                if sent >= self.batch_size:
                    continue
            except Exception as exc:  # broker or database away: keep the rows, try again
                kind = type(exc).__name__
                metrics.OUTBOX_PUBLISH_ERRORS.labels(self.service, kind).inc()
                log.warning("outbox relay failed (%s); retrying in %.1fs", kind, backoff)
                eventlet.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            try:
                self._wake.get(timeout=0.5)
            except Empty:
                pass

    def _outgoing(self, rows: list[tuple[Any, ...]]) -> Outgoing:
        """One message: a row's event alone, or a pack (a JSON array) of the run's events, in outbox order."""
        _, exchange_name, routing_key, first, event_id, correlation_id = rows[0]
        body = first if len(rows) == 1 else "[" + ",".join(row[3] for row in rows) + "]"
        return Outgoing(exchange=exchange_name, routing_key=routing_key, body=body.encode("utf-8"),
                        message_id=event_id, mandatory=topology.subscribed(self.service, routing_key),
                        correlation_id=correlation_id if len(rows) == 1 else None,
                        headers={"event_type": routing_key, "producer": self.service, "events": len(rows)})

    def relay_once(self, publisher: ConfirmingPublisher) -> int:
        """Publish one batch of committed outbox rows; delete those the broker confirmed and routed."""
        with self.pool.connection() as conn:
            # The body as the JSON text Postgres stores, sent as it is: parsing it here only to serialise it again
            # cost two JSON passes per event in every service.
            rows = conn.execute(
                "SELECT id, exchange, routing_key, body::text, event_id::text, body->>'correlation_id' FROM outbox "
                "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (self.batch_size,),
            ).fetchall()
            if not rows:
                return 0
            packs = pack_runs(rows, self.pack_max)
            outcome = publisher.publish_batch([self._outgoing(rows[first:end]) for first, end in packs])
            done = [row[0] for i in outcome.confirmed for row in rows[packs[i][0]:packs[i][1]]]
            if done:
                conn.execute(f"DELETE FROM outbox WHERE id = {any_of_json('::bigint')}", (dumps(done),))
        metrics.OUTBOX_MESSAGES.labels(self.service).inc(len(outcome.confirmed))
        metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(done))
        if outcome.unroutable:
            # A consumer's queue is missing (a fresh broker): declare it again; the rows stay for the next pass.
            metrics.OUTBOX_PUBLISH_ERRORS.labels(self.service, "unroutable").inc(len(outcome.unroutable))
            log.warning("%d messages unroutable; redeclaring the topology", len(outcome.unroutable))
            topology.declare(self.amqp_uri)
        if outcome.nacked:
            metrics.OUTBOX_PUBLISH_ERRORS.labels(self.service, "nacked").inc(len(outcome.nacked))
        if outcome.unroutable or outcome.nacked:
            raise RuntimeError("some events were not accepted by the broker; kept for the next pass")
        return len(done)


# ----------------------------------------------------------------------------------------- observability
class Observability(DependencyProvider):
    """JSON logs, the metrics endpoint, and the request number / correlation id bound for each worker."""

    def setup(self) -> None:
        cfg = self.container.config
        logs.setup_logging(self.container.service_name, str(cfg.get("LOG_LEVEL", "INFO")))
        # `_created` series double every counter and histogram and no rule or dashboard reads them.
        disable_created_metrics()
        port = int(cfg.get("METRICS_PORT", 0) or 0)
        if port:
            start_http_server(port, addr=str(cfg.get("METRICS_ADDRESS", "0.0.0.0")))

    def worker_setup(self, worker_ctx: Any) -> None:
        envelope = worker_ctx.args[0] if worker_ctx.args and isinstance(worker_ctx.args[0], dict) else {}
        data = worker_ctx.data or {}
        worker_ctx._log_token = logs.bind(
            correlation_id=envelope.get("correlation_id") or data.get("correlation_id") or str(uuid.uuid4()),
            request_no=envelope.get("request_no"),
            event_type=envelope.get("event_type"),
        )

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        if not isinstance(worker_ctx.entrypoint, Rpc):
            return
        # One line per RPC call, with the request it concerned when there is one.
        args = worker_ctx.args or ()
        data = result.get("data") if isinstance(result, dict) else None
        request_no = (data.get("request_no") if isinstance(data, dict) else None) or next(
            (a for a in args if isinstance(a, str) and REQUEST_NO.match(a)), None)
        status = result.get("status") if isinstance(result, dict) else None
        log.info("rpc %s answered %s", worker_ctx.entrypoint.method_name, status if exc_info is None else "error",
                 extra={"request_no": request_no})

    def worker_teardown(self, worker_ctx: Any) -> None:
        token = getattr(worker_ctx, "_log_token", None)
        if token is not None:
            logs.unbind(token)


# --------------------------------------------------------------------------------------------- consumers
class SafeQueueConsumer(QueueConsumer):
    """nameko's QueueConsumer, but a message that cannot be decoded is dead-lettered, not looped on, and the
    prefetch is sized for batches (nameko's default, max_workers, would cap a batch at ten messages)."""

    @property
    def prefetch_count(self) -> int:
        return prefetch_count(self.container.config)

    def get_consumers(self, consumer_cls: type[KombuConsumer], channel: Any) -> Any:
        consumers = super().get_consumers(consumer_cls, channel)
        for provider, consumer in self._consumers.items():
            consumer.on_decode_error = provider.on_decode_error
            consumer.on_message = functools.partial(self._on_delivery, provider)
        return consumers

    def _on_delivery(self, provider: Any, message: Any) -> None:
        """kombu's receive step (decode, then hand over), with the body read by `decode_body`: kombu's JSON
        decoder was ~3 % of intake's and escalation's CPU."""
        try:
            body = decode_body(message)
        except Exception as exc:
            provider.on_decode_error(message, exc)
            return
        self.handle_message(provider, body, message)

    # -- settling, with the channel's delivery tags kept so that a batch can be acknowledged in one frame.
    # Why: the inbound queue's deliveries are single requests, and one basic.ack frame (a socket write) per request
    # was a tenth of intake's CPU. `multiple=True` acknowledges every unsettled delivery of the channel up to a
    # tag, the consumer's other queues' included, so it is sent only when each tag up to the batch's highest is
    # the batch's own or settled already; any other batch is acknowledged message by message, as before.
    _tags: _ChannelTags | None = None

    def _tags_of(self, channel: Any) -> _ChannelTags:
        if self._tags is None or self._tags.channel is not channel:
            self._tags = _ChannelTags(channel)  # a new channel (a reconnection) numbers its deliveries from 1
        return self._tags

    def ack_message(self, message: Any) -> None:
        super().ack_message(message)
        self._tags_of(message.channel).settled([message.delivery_tag])

    def requeue_message(self, message: Any) -> None:
        super().requeue_message(message)
        self._tags_of(message.channel).settled([message.delivery_tag])

    def ack_messages(self, messages: list[Any]) -> None:
        """Acknowledge these deliveries: in one frame when the channel's tags allow it, else one by one."""
        channel = messages[0].channel if messages else None
        together = (len(messages) > 1 and channel is not None and channel.connection
                    and all(m.channel is channel for m in messages)
                    and self._tags_of(channel).covers([m.delivery_tag for m in messages]))
        if not together:
            for message in messages:
                self.ack_message(message)
            return
        try:
            max(messages, key=lambda m: m.delivery_tag).ack(multiple=True)
        except ConnectionError:
            return  # the channel is gone: the broker has taken every unacknowledged delivery back
        self._tags_of(channel).settled([m.delivery_tag for m in messages])


class _ChannelTags:
    """Which delivery tags of one channel are settled: all up to `low`, and those in `above`. AMQP numbers a
    channel's deliveries 1, 2, 3, ... whatever the queue, so a tag not known settled is still out (or unseen)."""

    __slots__ = ("channel", "low", "above")

    def __init__(self, channel: Any) -> None:
        self.channel, self.low, self.above = channel, 0, set[int]()

    def covers(self, batch: list[int]) -> bool:
        """Whether every tag up to the batch's highest is in the batch or settled (the batch's tags unsettled)."""
        top, unique = max(batch), set(batch)
        if min(unique) <= self.low or unique & self.above:
            return False  # settled already: never acknowledged twice
        gap = top - self.low - len(unique)
        if gap == 0:
            return True
        # Only the settled tags below the top can fill the gap; a quick bound first (`above` grows while an
        # old delivery waits for a retry).
        return gap <= len(self.above) and gap == sum(1 for t in self.above if t < top)

    def settled(self, done: list[int]) -> None:
        self.above.update(t for t in done if t > self.low)
        while self.low + 1 in self.above:
            self.low += 1
            self.above.discard(self.low)


def decode_body(message: Any) -> Any:
    """`message.decode()`, the same value for every body, cheaper: kombu's JSON decoder calls a Python object hook
    for every JSON object (to revive its typed values, `{"__type__": ..., "__value__": ...}`), a third of its
    time. A UTF-8 JSON body without such a value is read by `json.loads` alone; anything else, and any body it
    refuses, is left to kombu, which accepts, refuses and answers as before."""
    body = message.body  # py-amqp hands a UTF-8 body over as text already
    if message.content_type == "application/json" and (message.content_encoding or "utf-8").lower() == "utf-8":
        try:
            text = body if isinstance(body, str) else body.decode("utf-8") if isinstance(body, bytes) else None
            if text is not None and "__type__" not in text:
                return json.loads(text)
        except Exception:  # not UTF-8, not JSON, nested too deep: kombu's own answer, as before
            pass
    return message.decode()


def batch_settings(cfg: Any) -> tuple[int, int]:
    """(messages per batch at most, lanes: batches of the queue that may run at once)."""
    return max(1, int(cfg.get("CONSUMER_BATCH_SIZE", 50))), max(1, int(cfg.get("CONSUMER_LANES", 1)))


def prefetch_count(cfg: Any) -> int:
    """Deliveries in flight to a consumer: CONSUMER_PREFETCH, else twice a batch per lane."""
    size, lanes = batch_settings(cfg)
    return int(cfg.get("CONSUMER_PREFETCH", 0) or 2 * size * lanes)


def batch_linger(cfg: Any) -> float:
    """Seconds a batch waits, from its first message's arrival, for more to join it (0: none)."""
    return max(0.0, float(cfg.get("CONSUMER_LINGER_MS", 0))) / 1000.0


def batch_lock_key(queue: str, lane: int = 0, lanes: int = 1) -> int:
    """The advisory lock a batch of `queue`'s `lane` holds for its transaction, in every instance.

    A batch holds its row locks (a technician's load, a counter row, a request's facts) until it commits, and
    two batches taking the same rows in different orders deadlocked (two dispatch instances, batches in
    parallel: 1,041 deadlocks for 550 messages, each a one-second wait). So the batches of one lane run one at
    a time, across instances. A lane holds the messages of some requests (`lane_of`): a service whose messages
    share rows across requests (dispatch's technicians, intake's incidents) has one lane; escalation, whose rows
    are per request (and its counter rows per lane), has more. Instances share lanes for availability; lanes,
    not instances, give parallel throughput. Every instance of a service must run the same number of lanes."""
    name = queue if lanes == 1 else f"{queue}#{lane}/{lanes}"
    return zlib.crc32(f"propsvc-batch:{name}".encode()) & 0x7FFFFFFF


def lane_of(loaded: dict[str, Any], lanes: int) -> int:
    """The lane of a message: by request, so that one request's events are handled in order by one lane."""
    if lanes == 1:
        return 0
    key = loaded.get("request_no") or loaded.get("event_id") or ""
    return zlib.crc32(str(key).encode()) % lanes


PACK_LIMIT = 1000  # events in one delivered pack at most; more is refused whole as invalid


class _Pack:
    """What the events of one delivered pack still owe: the delivery is settled once, after its last event."""

    __slots__ = ("open", "requeue")

    def __init__(self, size: int) -> None:
        self.open = size
        self.requeue = False


class _Part:
    """One event of a delivery, to settle: the whole message, or its `index`-th event (`item`) of a pack."""

    __slots__ = ("message", "pack", "index", "item", "packed")

    def __init__(self, message: Any, pack: _Pack | None = None, index: int = 0, item: Any = None) -> None:
        self.message, self.index, self.item = message, index, item
        self.packed = pack is not None
        self.pack = pack if pack is not None else _Pack(1)

    def settled(self) -> bool:
        """This event is done; True when the delivery has nothing left open (a single event: at once)."""
        self.pack.open -= 1
        return self.pack.open == 0

    def want_requeue(self) -> None:
        # A pack goes back whole when one of its events is to be tried again; the others are in the inbox by
        # then, so the next delivery finds them handled.
        self.pack.requeue = True


class ReliableConsumer(Consumer):
    """Consumes one quorum queue; `loader` validates each body before a worker is spawned.

    Deliveries are handled in batches: a worker takes up to CONSUMER_BATCH_SIZE loaded messages of one lane and
    runs the method once per message inside one transaction (fast, or a savepoint each: `run_batch`); each of the
    CONSUMER_LANES lanes runs one batch at a time (`batch_lock_key`). A batch takes what arrives within
    CONSUMER_LINGER_MS of its first message (under light load, often that message alone); under load the
    deliveries that arrive while a lane's batch runs form its next one. Each message is then settled on its own,
    as below.

    Outcomes: success -> ack. Invalid body or a refused domain command -> dead-letter with the reason,
    ack. Database unavailable or a prerequisite not yet arrived -> retried here with backoff (the
    broker's delivery count is not spent on an outage). Anything else -> requeued; on the last allowed
    delivery it is dead-lettered with the error, and the broker's delivery limit is the backstop.
    """

    queue_consumer = SafeQueueConsumer()
    max_not_ready = 40

    def __init__(self, queue: Any, loader: Callable[[Any], dict[str, Any] | None], **kwargs: Any) -> None:
        self.loader = loader
        self._attempts: dict[Any, int] = {}
        # Outcomes this entrypoint handles itself (retry, dead-letter): nameko logs them as "(expected)",
        # which logs.setup_logging keeps to one DEBUG line instead of an ERROR with a traceback per retry.
        kwargs.setdefault("expected_exceptions", (NotReady, DomainError, ValidationError, *RETRYABLE))
        super().__init__(queue, requeue_on_error=False, **kwargs)

    def setup(self) -> None:
        self.service = self.container.service_name
        self.dlq_publisher = Publisher(self.container.config["AMQP_URI"], use_confirms=True, serializer="json")
        self.batch_size, self.lanes = batch_settings(self.container.config)
        self.linger = batch_linger(self.container.config)
        self._buffers: list[LightQueue] = [LightQueue() for _ in range(self.lanes)]  # bounded by the prefetch
        self._lane_free = [Semaphore(1) for _ in range(self.lanes)]
        self._precreate_series()
        super().setup()

    def start(self) -> None:
        for lane in range(self.lanes):
            self.container.spawn_managed_thread(functools.partial(self._batch_forever, lane),
                                                identifier=f"batches:{self.queue.name}#{lane}")
        super().start()

    def _precreate_series(self) -> None:
        """Every series this queue can produce exists from the start at 0, so "no failures" reads as 0
        rather than as no data, and the first failure shows up as an increase."""
        subs = topology.SUBSCRIPTIONS.get(self.service, {}) if self.queue.name.endswith(".events") else {}
        types = sorted({t for ts in subs.values() for t in ts}) or ["inbound"]
        if self.queue.name == topology.INBOUND_QUEUE:
            types = ["inbound"]
        for event_type in types:
            metrics.EVENTS_HANDLED.labels(self.service, self.queue.name, event_type)
            metrics.EVENTS_FAILED.labels(self.service, self.queue.name, event_type)
        for reason in DEAD_LETTER_REASONS:
            metrics.EVENTS_DEAD_LETTERED.labels(self.service, self.queue.name, reason)
        metrics.INBOX_DUPLICATES.labels(self.service, self.queue.name)
        metrics.BATCHES_REDONE.labels(self.service)
        self._handler_seconds = metrics.HANDLER_SECONDS.labels(self.service, self.queue.name)
        self._duplicates = metrics.INBOX_DUPLICATES.labels(self.service, self.queue.name)
        self._handled_series: dict[str, Any] = {}

    def _handled(self, event_type: str) -> Any:
        # The labelled child is looked up once per event type: `labels()` per message was a few percent of CPU.
        child = self._handled_series.get(event_type)
        if child is None:
            child = self._handled_series[event_type] = metrics.EVENTS_HANDLED.labels(
                self.service, self.queue.name, event_type)
        return child

    # -- settling: a delivery is one event, or a pack of several (`_Part`); the broker hears once per delivery
    def _ack(self, part: _Part, acks: list[Any] | None = None) -> None:
        """`acks`: a batch's list of deliveries to acknowledge together once it is settled (see ack_messages)."""
        if part.settled():
            if acks is not None and not part.pack.requeue:
                acks.append(part.message)
            else:
                self._settle_delivery(part)

    def _requeue(self, part: _Part) -> None:
        part.want_requeue()
        self._ack(part)

    def _settle_delivery(self, part: _Part) -> None:
        if part.pack.requeue:
            self.queue_consumer.requeue_message(part.message)
        else:
            self.queue_consumer.ack_message(part.message)

    # -- dead letters
    def dead_letter(self, part: _Part, reason: str, detail: Any) -> None:
        """Park the event in `<queue>.dlq` with the reason in its headers: a whole delivery byte for byte as it
        came, or one event of a pack on its own (the others are handled), so a replay brings back only it."""
        message = part.message
        headers = {
            "x-reason": reason,
            "x-error": json.dumps(detail, ensure_ascii=False, default=str)[:4000],
            "x-original-routing-key": message.delivery_info.get("routing_key", ""),
            "x-original-exchange": message.delivery_info.get("exchange", ""),
        }
        if not part.packed:
            raw = message.body if isinstance(message.body, bytes) else str(message.body).encode("utf-8")
            content_type, encoding = message.content_type or "application/octet-stream", \
                message.content_encoding or "binary"
            message_id = message.properties.get("message_id")
        else:
            raw = json.dumps(part.item, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            content_type, encoding = "application/json", "utf-8"
            message_id = part.item.get("event_id") if isinstance(part.item, dict) else None
            headers["x-pack-index"] = part.index
        self.dlq_publisher.publish(raw, exchange=topology.exchange(topology.DLX), routing_key=self.queue.name,
                                   headers=headers, mandatory=True, serializer=None, content_type=content_type,
                                   content_encoding=encoding, message_id=message_id)
        metrics.EVENTS_DEAD_LETTERED.labels(self.service, self.queue.name, reason).inc()
        log.warning("dead-lettered a message from %s: %s %s", self.queue.name, reason,
                    json.dumps(detail, ensure_ascii=False, default=str)[:500])
        self._ack(part)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        try:
            self.dead_letter(_Part(message), "undecodable", {"_body": [f"{type(exc).__name__}: {exc}"[:500]]})
        except Exception as err:
            log.warning("could not dead-letter an undecodable message (%s); it will be redelivered",
                        type(err).__name__)

    # -- handling
    accepts_packs = False  # event queues take packs from the relays; the inbound queue takes single requests

    def handle_message(self, body: Any, message: Any) -> None:
        try:
            if self.accepts_packs and isinstance(body, list):
                self._take_pack(body, message)
                return
            part = _Part(message)
            try:
                loaded = self.loader(body)
            except ValidationError as exc:
                self.dead_letter(part, "invalid", exc.messages)
                return
            if loaded is None:
                self._skip(body, part)
                return
            self._spawn(loaded, part)
        except ContainerBeingKilled:
            pass  # not acked: the broker gives the message to the next consumer
        except Exception as exc:  # the broker connection broke under us: it will redeliver
            log.warning("could not take a message from %s (%s); the broker will redeliver it",
                        self.queue.name, type(exc).__name__)

    def _take_pack(self, body: list[Any], message: Any) -> None:
        if not 1 <= len(body) <= PACK_LIMIT:
            self.dead_letter(_Part(message), "invalid", {"_body": [f"a pack holds 1 to {PACK_LIMIT} events"]})
            return
        routing_key = message.delivery_info.get("routing_key", "")
        pack = _Pack(len(body))
        loaded_parts = []
        for index, item in enumerate(body):
            part = _Part(message, pack, index, item)
            try:
                if isinstance(item, dict) and item.get("event_type") != routing_key:
                    # Queues are bound by type: an event of another type would reach queues that never asked for it.
                    raise ValidationError({"event_type": [f"a pack sent as {routing_key!r} holds only that type"]})
                loaded = self.loader(item)
            except ValidationError as exc:
                self.dead_letter(part, "invalid", exc.messages)
                continue
            if loaded is None:
                self._skip(item, part)
                continue
            loaded_parts.append((loaded, part))
        for loaded, part in loaded_parts:
            self._spawn(loaded, part)

    def _skip(self, body: Any, part: _Part) -> None:
        """The loader found nothing in this event for the service: settled at once, counted as handled."""
        self._handled(str(body.get("event_type"))).inc()
        self._ack(part)

    def _spawn(self, loaded: dict[str, Any], part: _Part) -> None:
        self._buffers[lane_of(loaded, self.lanes)].put((loaded, part))

    def _batch_forever(self, lane: int) -> None:
        buffer, free = self._buffers[lane], self._lane_free[lane]
        while True:
            items = [buffer.get()]
            # Why linger: a batch costs a transaction, a commit (a WAL flush), a relay pass and a confirm round
            # trip whatever its size; under moderate load batches were 2-3 messages, so those per-batch costs
            # were most of a request's cost. Counted from the first message's arrival, so time spent waiting
            # for the lane (under heavy load) is not added to it.
            until = time.monotonic() + self.linger
            free.acquire()
            eventlet.sleep(0)  # deliveries already read from the socket join this batch
            while len(items) < self.batch_size:
                try:
                    items.append(buffer.get_nowait())
                    continue
                except Empty:
                    pass
                left = until - time.monotonic()
                if left <= 0:
                    break
                try:
                    items.append(buffer.get(timeout=left))
                except Empty:
                    break
            try:
                self._spawn_batch(items, lane)
            except ContainerBeingKilled:
                free.release()
                return  # stopping: the unacked messages go back to the broker
            except Exception as exc:
                free.release()
                log.warning("could not start a batch from %s (%s); the broker will redeliver it",
                            self.queue.name, type(exc).__name__)

    def _spawn_batch(self, items: list[tuple[dict[str, Any], _Part]], lane: int = 0) -> None:
        started = time.perf_counter()

        def handle_result(worker_ctx: Any, result: Any = None, exc_info: Any = None) -> Any:
            handled = duplicates = 0
            acks: list[Any] = []
            try:
                for i, (loaded, part) in enumerate(items):
                    if exc_info is None:
                        value, error, seconds = result[i]
                    else:  # the batch as a whole failed (its commit, the connection): every message is retried
                        value, error, seconds = None, exc_info, time.perf_counter() - started
                    self._on_result(part, loaded, time.perf_counter() - seconds, value, error, acks)
                    handled += error is None
                    duplicates += error is None and value == "duplicate"
                if acks:
                    self._ack_together(acks)
            finally:
                self._lane_free[lane].release()
            # One line per batch, not per event: at load a line per event was a tenth of a service's CPU, and
            # each request's path through the services is in its timeline (GET /requests/{no}/timeline).
            # Failures are logged per event with their request number; per-event lines at DEBUG.
            if handled:
                log.info("handled %d of %d messages from %s in %.1f ms (%d duplicates)", handled, len(items),
                         self.queue.name, (time.perf_counter() - started) * 1000, duplicates)
            return result, exc_info

        context_data = self.unpack_message_headers(items[0][1].message) if len(items) == 1 else {}
        args = ([loaded for loaded, _ in items], batch_lock_key(self.queue.name, lane, self.lanes), lane)
        self.container.spawn_worker(self, args, {}, context_data=context_data, handle_result=handle_result)

    def _on_result(self, part: _Part, loaded: dict[str, Any], started: float, result: Any, exc_info: Any,
                   acks: list[Any] | None = None) -> Any:
        # An exception here would kill the container (nameko treats it as the entrypoint failing). Settling a
        # message on a connection the broker just dropped (restart, network cut) raises: the broker redelivers
        # the unacked message to the next connection and the inbox makes the second run harmless.
        try:
            return self._settle_result(part, loaded, started, result, exc_info, acks)
        except Exception as exc:
            log.warning("could not settle a message from %s (%s); the broker will redeliver it",
                        self.queue.name, type(exc).__name__)
            return result, exc_info

    def _ack_together(self, messages: list[Any]) -> None:
        try:
            self.queue_consumer.ack_messages(messages)
        except Exception as exc:  # as in _on_result: a dropped connection's deliveries come back
            log.warning("could not acknowledge %d messages from %s (%s); the broker will redeliver them",
                        len(messages), self.queue.name, type(exc).__name__)

    def _settle_result(self, part: _Part, loaded: dict[str, Any], started: float, result: Any,
                       exc_info: Any, acks: list[Any] | None = None) -> Any:
        # Inbound requests are one kind of message: their channel would be an unbounded label in practice.
        event_type = str(loaded.get("event_type") or "inbound")
        self._handler_seconds.observe(time.perf_counter() - started)
        tag = (part.message.delivery_tag, part.index)
        if exc_info is None:
            if self._attempts:
                self._attempts.pop(tag, None)
            self._handled(event_type).inc()
            if log.isEnabledFor(logging.DEBUG):
                request_no = loaded.get("request_no") or (
                    result.get("request_no") if isinstance(result, dict) else None)
                log.debug("handled %s from %s in %.1f ms%s", event_type, self.queue.name,
                          (time.perf_counter() - started) * 1000, " (duplicate)" if result == "duplicate" else "",
                          extra={"request_no": request_no})
            if result == "duplicate":
                self._duplicates.inc()
            self._ack(part, acks)
            return result, exc_info
        metrics.EVENTS_FAILED.labels(self.service, self.queue.name, event_type).inc()
        exc = exc_info[1]
        if isinstance(exc, DomainError):
            self._attempts.pop(tag, None)
            self.dead_letter(part, exc.code, domain_errors(exc))
        elif isinstance(exc, ValidationError):
            self._attempts.pop(tag, None)
            self.dead_letter(part, "invalid", exc.messages)
        elif isinstance(exc, (NotReady, *RETRYABLE)):
            attempt = self._attempts.get(tag, 0) + 1
            self._attempts[tag] = attempt
            if isinstance(exc, NotReady) and attempt > self.max_not_ready:
                self._attempts.pop(tag, None)
                self.dead_letter(part, "not_ready", {"_": [str(exc)]})
            else:
                log.warning("retrying %s in-process after %s (attempt %d)", event_type, type(exc).__name__, attempt)
                self.container.spawn_managed_thread(lambda: self._retry_later(loaded, part, attempt))
        else:
            self._attempts.pop(tag, None)
            deliveries = int((part.message.headers or {}).get("x-delivery-count", 0)) + 1
            if deliveries >= topology.DELIVERY_LIMIT:
                self.dead_letter(part, "handler_error", {"_": [f"{type(exc).__name__}: {exc}"[:1000]]})
            else:
                log.error("handler failed on %s (delivery %d); requeued", event_type, deliveries, exc_info=exc_info)
                eventlet.sleep(min(0.2 * deliveries, 2.0))
                self._requeue(part)
        return result, exc_info

    def _retry_later(self, loaded: dict[str, Any], part: _Part, attempt: int) -> None:
        eventlet.sleep(min(0.05 * 2 ** min(attempt, 7), 5.0))
        try:
            self._spawn(loaded, part)
        except ContainerBeingKilled:
            pass  # stopping: the unacked message goes back to the broker


Outcome = tuple[Any, Any, float]  # (result, exc_info, seconds) of one message


def run_batch(service: Any, fn: Callable[[Any, dict[str, Any]], Any], items: list[dict[str, Any]],
              lock_key: int | None = None, lane: int | None = None) -> list[Outcome]:
    """Run `fn` once per message in one transaction; commit once; one outcome per message.

    First in fast mode (no savepoints, claims and events written once for the batch: `BatchUnitOfWork`); if a
    message there cannot be undone alone (its handler raised, rolled back, or left statements uncommitted), the
    batch is rolled back and run again carefully, each message in a savepoint. There a message whose handler
    raises is rolled back to its savepoint and reported with its exception (the consumer settles it: retry,
    dead-letter, requeue); the others are kept. If the batch cannot commit, this raises and every message of the
    batch is retried."""
    factory = next(v for v in vars(service).values() if isinstance(v, UowFactory))
    try:
        return _run(factory, service, fn, items, lock_key, lane, fast=True)
    except RedoCarefully as why:
        metrics.BATCHES_REDONE.labels(factory.store.service).inc()
        log.debug("batch of %d redone with savepoints: %s", len(items), why)
    return _run(factory, service, fn, items, lock_key, lane, fast=False)


def _run(factory: UowFactory, service: Any, fn: Callable[[Any, dict[str, Any]], Any], items: list[dict[str, Any]],
         lock_key: int | None, lane: int | None, fast: bool) -> list[Outcome]:
    batch = factory.store.batch_uow()
    batch.lane = lane
    batch.open(lock_key, fast=fast, items=items)
    factory.batch = batch
    outcomes: list[Outcome] = []
    try:
        for loaded in items:
            t0 = time.perf_counter()
            token = logs.bind(correlation_id=loaded.get("correlation_id"), request_no=loaded.get("request_no"),
                              event_type=loaded.get("event_type"))
            try:
                batch.begin_item()
                try:
                    result = fn(service, loaded)
                except Exception:
                    if fast:
                        raise  # the whole batch goes round again carefully (below)
                    error = sys.exc_info()
                    batch.end_item(failed=True)  # raises when the connection is gone: the batch fails whole
                    outcomes.append((None, error, time.perf_counter() - t0))
                else:
                    batch.end_item(failed=False)
                    outcomes.append((result, None, time.perf_counter() - t0))
            finally:
                logs.unbind(token)
        batch.finish()
    except RedoCarefully:
        raise
    except Exception as exc:
        if fast:
            raise RedoCarefully(f"{type(exc).__name__} in a fast batch") from exc
        raise
    finally:
        factory.batch = None
        batch.close()
    return outcomes


def _batched(fn: Callable[[Any, dict[str, Any]], Any]) -> Callable[..., list[Outcome]]:
    @functools.wraps(fn)
    def run(self: Any, items: list[dict[str, Any]], lock_key: int | None = None,
            lane: int | None = None) -> list[Outcome]:
        return run_batch(self, fn, items, lock_key, lane)
    return run


def consume_events(loader: Callable[[Any], dict[str, Any] | None] | None = None) -> Any:
    """The service's single event queue (`<service>.events`), bound per topology.SUBSCRIPTIONS. The method
    takes one event; it is called per event inside a batch transaction (`run_batch`). A loader may answer None
    for an event the service has no use for: it is acknowledged without a batch."""
    from services.common.contract.registry import load_envelope

    class _EventConsumer(ReliableConsumer):
        accepts_packs = True

        def setup(self) -> None:
            self.queue = topology.service_queue(self.container.service_name)
            super().setup()

    register = _EventConsumer.decorator(queue=None, loader=loader or load_envelope)
    return lambda fn: register(_batched(fn))


def consume_inbound(loader: Callable[[Any], dict[str, Any]]) -> Any:
    """The inbound exchange other systems publish requests to (batched as `consume_events`)."""
    register = ReliableConsumer.decorator(queue=topology.inbound_queue(), loader=loader)
    return lambda fn: register(_batched(fn))


def amqp_connection(amqp_uri: str) -> Connection:
    return Connection(amqp_uri)


__all__ = ["Store", "Observability", "consume_events", "consume_inbound", "NotReady", "SharedExtension"]
