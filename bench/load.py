"""Publishers: several OS processes publish requests to `property.inbound` as another system would (plain AMQP,
persistent, mandatory, publisher confirms pipelined), at a fixed total rate, each with a unique external_id and
the publish instant in `reported_at`."""
from __future__ import annotations

import json
import multiprocessing as mp
import time
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from bench import settings

INBOUND_EXCHANGE = "property.inbound"

# (channel, category, subcategory, description): repair classes that route to a technician (engineering, least
# loaded), so that every request is registered, assigned and clocked. No unit and no reporter phone, and a unique
# area: nothing is a probable duplicate or joins an incident (both would rightly skip the work order).
MIX: list[tuple[str, str, str, str]] = [
    ("phone", "repair", "plumbing", "卫生间水管漏水，地面有积水，请尽快派人维修"),
    ("online", "repair", "electrical", "客厅插座没电，总闸跳闸后合不上"),
    ("iot", "repair", "lift", "电梯运行异常报警，轿厢停在两层之间"),
    ("call_centre", "repair", "public_facility", "小区主干道路灯不亮，晚上很黑"),
    ("patrol", "repair", "door_window", "单元门禁门锁损坏，门关不上"),
    ("email", "repair", "roof_wall_leak", "外墙渗水，卧室墙面发霉"),
]
PROPERTIES = ("LY", "HY", "JH")


def payload(tag: str, pub: int, seq: int, source: str = settings.SOURCE) -> tuple[str, str, bytes]:
    """(routing key, external_id, body) of the seq-th request of publisher `pub` in phase `tag`."""
    n = pub * 10_000_000 + seq
    channel, category, subcategory, description = MIX[n % len(MIX)]
    external_id = f"{tag}-{pub}-{seq}"
    body: dict[str, Any] = {
        "source": source, "external_id": external_id, "channel": channel,
        "property_id": PROPERTIES[(n // len(MIX)) % len(PROPERTIES)],
        "area": f"公共区域{tag}-{pub}-{seq}", "description": description,
        "reporter": {"kind": "system"} if channel in ("iot", "patrol") else {"kind": "resident", "name": "测试住户"},
        "category": category, "subcategory": subcategory,
        "reported_at": datetime.now(UTC).isoformat(),
    }
    if channel == "iot":
        body["channel_details"] = {"device_id": f"lift-{n % 97}", "reading": 1, "alarm_code": "E12"}
    elif channel == "call_centre":
        # A unique caller number per request: the repeat-caller lookup runs (indexed) and finds nothing.
        body["channel_details"] = {"caller_number": f"139{n % 100_000_000:08d}", "call_id": f"call-{external_id}"}
    elif channel == "online":
        body["channel_details"] = {"platform": "app"}
    elif channel == "patrol":
        body["channel_details"] = {"inspector": "patrol-7", "round_id": f"round-{seq // 100}"}
    elif channel == "email":
        body["channel_details"] = {"message_id": f"<{external_id}@mail.example>", "subject": "报修"}
    return f"request.{channel}", external_id, json.dumps(body, ensure_ascii=False).encode("utf-8")


def _publisher(pub: int, n_pubs: int, rate: float, duration: float, tag: str, t_start: float, vhost: str,
               exchange: str, out_file: str, counter: Any, result_q: Any) -> None:
    import amqp

    conn = amqp.Connection(host=settings.AMQP_HOST, userid="guest", password="guest", virtual_host=vhost)
    conn.connect()
    ch = conn.channel()
    ch.confirm_select()
    pending: dict[int, str] = {}
    acked: list[str] = []
    stats = {"nacked": 0, "returned": 0}

    def settle(tag_: int, multiple: bool, ok: bool) -> None:
        tags = [t for t in pending if t <= tag_] if multiple else [tag_]
        for t in tags:
            ext = pending.pop(t, None)
            if ext is None:
                continue
            if ok:
                acked.append(ext)
            else:
                stats["nacked"] += 1

    ch.events["basic_ack"].add(lambda t, m: settle(t, m, True))
    ch.events["basic_nack"].add(lambda t, m: settle(t, m, False))
    ch.events["basic_return"].add(lambda *a: stats.__setitem__("returned", stats["returned"] + 1))

    def drain(timeout: float) -> None:
        try:
            while True:
                conn.drain_events(timeout=timeout)
                timeout = 0.0001
        except TimeoutError:
            pass

    my_rate = rate / n_pubs
    while time.time() < t_start:
        time.sleep(0.001)
    t0 = time.time()
    end = t0 + duration
    seq = 0
    delivery_tag = 0
    last_count = 0
    while True:
        now = time.time()
        if now >= end:
            break
        due = int((now - t0) * my_rate) - seq
        for _ in range(due):
            seq += 1
            routing_key, ext, body = payload(tag, pub, seq)
            msg = amqp.Message(body, content_type="application/json", content_encoding="utf-8", delivery_mode=2)
            ch.basic_publish(msg, exchange=exchange, routing_key=routing_key, mandatory=True)
            delivery_tag += 1
            pending[delivery_tag] = ext
        # Sleep in the socket until the next request is due (confirms wake it as they come): polling every 2 ms
        # made the load generator 8 % of the machine at 150/s, CPU taken from the platform it measures.
        drain(min(0.05, max(0.0005, t0 + (seq + 1) / my_rate - time.time())))
        if len(acked) != last_count:
            with counter.get_lock():
                counter.value += len(acked) - last_count
            last_count = len(acked)
    t_end = time.time()
    deadline = time.time() + 60
    while pending and time.time() < deadline:
        drain(0.05)
    with counter.get_lock():
        counter.value += len(acked) - last_count
    Path(out_file).write_text("\n".join(acked), encoding="utf-8")
    result_q.put({"pub": pub, "sent": seq, "acked": len(acked), "nacked": stats["nacked"],
                  "returned": stats["returned"], "unconfirmed": len(pending), "t0": t0, "t_end": t_end})
    conn.close()


@dataclass
class LoadRun:
    tag: str
    rate: float
    duration: float
    t_start: float
    procs: list[Any]
    result_q: Any
    counter: Any
    files: list[Path]

    def published(self) -> int:
        return int(self.counter.value)

    def join(self) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        deadline = time.time() + self.duration + 120
        while len(results) < len(self.procs):
            try:
                results.append(self.result_q.get(timeout=1))
            except Exception:  # queue.Empty: check that the publishers are still alive
                if time.time() > deadline or not any(p.is_alive() for p in self.procs) and self.result_q.empty():
                    raise RuntimeError(f"publishers of {self.tag} died or hung") from None
        for p in self.procs:
            p.join(timeout=10)
        sent = sum(r["sent"] for r in results)
        acked = sum(r["acked"] for r in results)
        t0 = min(r["t0"] for r in results)
        t_end = max(r["t_end"] for r in results)
        return {"tag": self.tag, "offered_rate": self.rate, "sent": sent, "confirmed": acked,
                "nacked": sum(r["nacked"] for r in results), "returned": sum(r["returned"] for r in results),
                "unconfirmed": sum(r["unconfirmed"] for r in results), "t0": t0, "t_end": t_end,
                "publish_rate": round(sent / max(1e-9, t_end - t0), 1)}

    def external_ids(self) -> list[str]:
        out: list[str] = []
        for f in self.files:
            text = f.read_text(encoding="utf-8")
            out.extend(x for x in text.split("\n") if x)
        return out


def start_load(tag: str, rate: float, duration: float, publishers: int, work_dir: Path,
               vhost: str = settings.VHOST, exchange: str = INBOUND_EXCHANGE, delay: float = 1.0) -> LoadRun:
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    result_q = ctx.Queue()
    work_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time() + delay
    files = [work_dir / f"{tag}-{i}.ids" for i in range(publishers)]
    procs = [ctx.Process(target=_publisher, args=(i, publishers, rate, duration, tag, t_start, vhost, exchange,
                                                   str(files[i]), counter, result_q), daemon=True)
             for i in range(publishers)]
    for p in procs:
        p.start()
    return LoadRun(tag, rate, duration, t_start, procs, result_q, counter, files)
