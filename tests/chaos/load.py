"""The chaos run's clients: HTTP submitters and an inbound-exchange publisher, mixed, each request with its own
idempotency key and its own resident (a unique name and phone number, so the PII grep can look for each).

Retry rule (the one a real client of the API follows): an HTTP answer that is not 2xx because the platform was
unavailable (5xx, 429, timeout, refused or reset connection) is retried with the SAME Idempotency-Key until it is
accepted or the run's retry deadline passes; a 4xx other than 429 is final (never retried: the request was refused).
A publish the broker did not confirm (nack, return, connection lost before the confirm) is republished with the
same external_id. So each logical request is either accepted once (maybe after retries) or never accepted.
"""
from __future__ import annotations

import json
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

SURNAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红梅琴云莲"
MIX: list[tuple[str, str, str]] = [
    ("repair", "plumbing", "卫生间水管漏水，地面有积水，请尽快派人维修"),
    ("repair", "electrical", "客厅插座没电，总闸跳闸后合不上"),
    ("repair", "public_facility", "小区主干道路灯不亮，晚上很黑"),
    ("repair", "door_window", "单元门禁门锁损坏，门关不上"),
    ("repair", "roof_wall_leak", "外墙渗水，卧室墙面发霉"),
]
PROPERTIES = ("LY", "HY", "JH")
HTTP_SOURCE = "chaos-http"  # the API key's client: the gateway makes it the request's source
AMQP_SOURCE = "chaos-amqp"


def resident(i: int) -> tuple[str, str]:
    """A unique (name, phone) per request: 3-character Chinese names, 11-digit mobile numbers."""
    n = len(GIVEN)
    name = SURNAMES[i % len(SURNAMES)] + GIVEN[(i // len(SURNAMES)) % n] + GIVEN[(i // (len(SURNAMES) * n)) % n]
    return name, f"137{(i * 7919 + 1234567) % 100_000_000:08d}"


@dataclass
class Item:
    i: int
    via: str  # "http" or "amqp"
    key: str  # Idempotency-Key / external_id
    name: str
    phone: str
    attempts: int = 0
    answers: list[str] = field(default_factory=list)  # status codes or error class names, in order
    accepted: bool = False
    request_no: str | None = None
    final: str | None = None

    def body(self) -> dict[str, Any]:
        category, subcategory, description = MIX[self.i % len(MIX)]
        b: dict[str, Any] = {
            "channel": "phone", "property_id": PROPERTIES[(self.i // len(MIX)) % len(PROPERTIES)],
            # A unique area, no unit and a unique phone: no request is a probable duplicate or joins an incident
            # (either would rightly skip the work order), so every accepted request must be routed and clocked.
            "area": f"公共区域{self.key}", "description": description,
            "reporter": {"kind": "resident", "name": self.name, "phone": self.phone},
            "category": category, "subcategory": subcategory,
        }
        if self.via == "amqp":
            b.update(source=AMQP_SOURCE, external_id=self.key, reported_at=datetime.now(UTC).isoformat())
        return b


def make_items(n: int, seed: int, run_tag: str) -> list[Item]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        name, phone = resident(i)
        items.append(Item(i, "http" if rng.random() < 0.5 else "amqp", f"{run_tag}-{i:05d}", name, phone))
    return items


class Load:
    """Releases item i at t0 + i/rate; HTTP items go to a pool of submitter threads, AMQP items to one publisher."""

    def __init__(self, items: list[Item], rate: float, base_url: str, api_key: str, amqp_uri: str,
                 http_threads: int = 12, retry_deadline_s: float = 600) -> None:
        self.items, self.rate, self.base_url, self.api_key, self.amqp_uri = items, rate, base_url, api_key, amqp_uri
        self.http_q: queue.Queue[Item | None] = queue.Queue()
        self.amqp_q: queue.Queue[Item | None] = queue.Queue()
        self.http_threads = http_threads
        self.retry_deadline_s = retry_deadline_s
        self.threads: list[threading.Thread] = []
        self.t0 = 0.0
        self.stop_retrying_at = 0.0
        self.counts = {"http_retries": 0, "amqp_republished": 0}
        self._lock = threading.Lock()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.stop_retrying_at = self.t0 + len(self.items) / self.rate + self.retry_deadline_s
        self.threads = [threading.Thread(target=self._feed, daemon=True, name="feed"),
                        threading.Thread(target=self._publisher, daemon=True, name="amqp")]
        self.threads += [threading.Thread(target=self._http_worker, daemon=True, name=f"http-{k}")
                         for k in range(self.http_threads)]
        for t in self.threads:
            t.start()

    def released(self) -> int:
        return min(len(self.items), int((time.monotonic() - self.t0) * self.rate))

    def join(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, end - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)

    def _feed(self) -> None:
        for item in self.items:
            due = self.t0 + item.i / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            (self.http_q if item.via == "http" else self.amqp_q).put(item)
        for _ in range(self.http_threads):
            self.http_q.put(None)
        self.amqp_q.put(None)

    # -- HTTP ---------------------------------------------------------------------------------------------------
    def _http_worker(self) -> None:
        session = requests.Session()
        while True:
            item = self.http_q.get()
            if item is None:
                return
            self._submit(session, item)

    def _submit(self, session: requests.Session, item: Item) -> None:
        body = json.dumps(item.body(), ensure_ascii=False).encode()
        headers = {"X-API-Key": self.api_key, "Idempotency-Key": item.key, "Content-Type": "application/json"}
        backoff = 0.5
        while True:
            item.attempts += 1
            try:
                r = session.post(f"{self.base_url}/requests", data=body, headers=headers, timeout=20)
                item.answers.append(str(r.status_code))
                if 200 <= r.status_code < 300:
                    item.accepted = True
                    item.request_no = r.json().get("request_no")
                    item.final = str(r.status_code)
                    return
                if 400 <= r.status_code < 500 and r.status_code != 429:
                    item.final = f"{r.status_code} {r.text[:200]}"  # refused: final, never retried
                    return
            except requests.RequestException as exc:
                item.answers.append(type(exc).__name__)
                session = requests.Session()
            if time.monotonic() > self.stop_retrying_at:
                item.final = f"gave up after {item.attempts} attempts: {item.answers[-1]}"
                return
            with self._lock:
                self.counts["http_retries"] += 1
            time.sleep(backoff)
            backoff = min(backoff * 1.5, 3.0)

    # -- inbound exchange ---------------------------------------------------------------------------------------
    def _publisher(self) -> None:
        from kombu import Connection

        from services.common import topology

        exchange = topology.exchange(topology.INBOUND_EXCHANGE)
        conn: Any = None
        producer: Any = None
        while True:
            item = self.amqp_q.get()
            if item is None:
                break
            payload = json.dumps(item.body(), ensure_ascii=False).encode()
            while True:
                item.attempts += 1
                try:
                    if producer is None:
                        conn = Connection(self.amqp_uri, transport_options={"confirm_publish": True},
                                          connect_timeout=3, heartbeat=0)
                        conn.ensure_connection(max_retries=1)
                        producer = conn.Producer()
                    # Synchronous confirm: publish returns once the broker has the message (persistent, on a
                    # quorum queue) or raises; mandatory: an unroutable message is returned, never dropped silently.
                    producer.publish(payload, exchange=exchange, routing_key="request.phone",
                                     content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                                     mandatory=True, retry=False)
                    item.answers.append("confirmed")
                    item.accepted = True
                    item.final = "confirmed"
                    break
                except Exception as exc:  # connection lost, nack, channel closed: republish the same message
                    item.answers.append(type(exc).__name__)
                    with self._lock:
                        self.counts["amqp_republished"] += 1
                    try:
                        if conn is not None:
                            conn.release()
                    except Exception:
                        pass
                    conn = producer = None
                    if time.monotonic() > self.stop_retrying_at:
                        item.final = f"gave up after {item.attempts} attempts: {item.answers[-1]}"
                        break
                    time.sleep(0.5)
        try:
            if conn is not None:
                conn.release()
        except Exception:
            pass
