"""A publisher that pipelines a batch and waits once for the broker's confirms.

Waiting for each confirm before the next publish caps a relay at one round trip per event. Here a batch
is sent back to back on a channel in confirm mode, then the acks, nacks and returns (unroutable with
`mandatory`) are collected per delivery tag: the caller learns exactly which messages the broker took
responsibility for, and removes only those from its outbox.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import amqp
from kombu import Connection


class ConfirmTimeout(Exception):
    pass


@dataclass
class Outgoing:
    exchange: str
    routing_key: str
    body: bytes  # UTF-8 JSON, as the outbox stores it
    message_id: str
    mandatory: bool = False
    headers: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None


@dataclass
class Outcome:
    confirmed: list[int]  # indexes into the batch the broker acked and routed
    unroutable: list[int]  # returned: no queue bound for a mandatory message
    nacked: list[int]


class ConfirmingPublisher:
    def __init__(self, amqp_uri: str, confirm_timeout: float = 10.0) -> None:
        self.amqp_uri = amqp_uri
        self.confirm_timeout = confirm_timeout
        self._conn: Connection | None = None
        self._channel: Any = None
        self._next_tag = 1
        self._acked: set[int] = set()
        self._nacked: set[int] = set()
        self._returned: set[str] = set()
        self._pending: set[int] = set()
        self._first_tag = 1

    def _ensure(self) -> Any:
        if self._channel is not None and self._conn is not None and self._conn.connected:
            return self._channel
        self.close()
        self._conn = Connection(self.amqp_uri, heartbeat=0)
        self._conn.ensure_connection(max_retries=1)
        channel = self._conn.channel()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)
        channel.confirm_select()
        self._channel, self._next_tag = channel, 1
        return channel

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(self._acked, delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(self._nacked, delivery_tag, multiple)

    def _settle(self, into: set[int], tag: int, multiple: bool) -> None:
        # A "multiple" ack may arrive while the batch is still being sent, before `_pending` is known: it
        # covers every tag of this batch up to `tag`, counted from the batch's first tag.
        if multiple:
            into.update(range(self._first_tag, tag + 1))
        else:
            into.add(tag)

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        self._returned.add(str(message.properties.get("message_id")))

    def publish_batch(self, batch: Sequence[Outgoing]) -> Outcome:
        channel = self._ensure()
        self._acked, self._nacked, self._returned = set(), set(), set()
        self._first_tag = self._next_tag
        tags: list[int] = []
        try:
            for item in batch:
                props: dict[str, Any] = {"content_type": "application/json", "content_encoding": "utf-8",
                                         "delivery_mode": 2, "message_id": item.message_id,
                                         "application_headers": item.headers}
                if item.correlation_id:
                    props["correlation_id"] = item.correlation_id
                channel.basic_publish(amqp.Message(item.body, **props), exchange=item.exchange,
                                      routing_key=item.routing_key, mandatory=item.mandatory)
                tags.append(self._next_tag)
                self._next_tag += 1
            self._pending = set(tags)
            deadline = time.monotonic() + self.confirm_timeout
            while not self._pending <= (self._acked | self._nacked):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConfirmTimeout(f"{len(self._pending - self._acked - self._nacked)} unconfirmed")
                try:
                    assert self._conn is not None
                    self._conn.drain_events(timeout=min(remaining, 1.0))
                except TimeoutError:
                    continue
        except Exception:
            self.close()  # the channel's state is unknown: start clean next time
            raise
        confirmed, unroutable, nacked = [], [], []
        for index, (item, tag) in enumerate(zip(batch, tags, strict=True)):
            if tag in self._nacked:
                nacked.append(index)
            elif item.message_id in self._returned:
                unroutable.append(index)
            else:
                confirmed.append(index)
        return Outcome(confirmed, unroutable, nacked)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            except Exception:  # closing a broken connection may raise; it is being dropped anyway
                pass
        self._conn, self._channel = None, None
