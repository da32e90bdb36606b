"""Inspect and replay a dead-letter queue after the cause is fixed.

    python -m services.common.dlq list intake.inbound          # what is there, with reasons
    python -m services.common.dlq replay intake.inbound        # republish to where each message came from

A message is republished to its original exchange and routing key (recorded by the consumer that
dead-lettered it, or by the broker in `x-death`), persistent and with publisher confirms, and only then
removed from the dead-letter queue: a crash mid-replay duplicates, never loses (consumers are idempotent).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from kombu import Connection

from services.common import topology


def _origin(message: Any) -> tuple[str, str]:
    headers = message.headers or {}
    if headers.get("x-original-exchange") is not None and headers.get("x-original-routing-key"):
        return headers["x-original-exchange"], headers["x-original-routing-key"]
    deaths = headers.get("x-death") or []
    if deaths:
        return deaths[0]["exchange"], deaths[0]["routing-keys"][0]
    raise ValueError("no origin recorded on the message")


def _reason(message: Any) -> str:
    headers = message.headers or {}
    if "x-reason" in headers:
        return f"{headers['x-reason']}: {headers.get('x-error', '')}"
    deaths = headers.get("x-death") or []
    return deaths[0].get("reason", "unknown") if deaths else "unknown"


def list_dead(amqp_uri: str, queue: str, limit: int = 100) -> list[dict[str, Any]]:
    out = []
    with Connection(amqp_uri) as conn:
        channel = conn.channel()
        held = []
        for _ in range(limit):
            message = channel.basic_get(f"{queue}.dlq", no_ack=False)
            if message is None:
                break
            held.append(message)
            out.append({"reason": _reason(message), "origin": list(_origin(message)),
                        "message_id": (message.properties or {}).get("message_id")})
        for message in held:  # leave them where they were
            channel.basic_reject(message.delivery_tag, requeue=True)
    return out


def replay(amqp_uri: str, queue: str, limit: int = 10_000) -> int:
    replayed = 0
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        producer = conn.Producer(channel=channel)
        for _ in range(limit):
            message = channel.basic_get(f"{queue}.dlq", no_ack=False)
            if message is None:
                break
            exchange, routing_key = _origin(message)
            headers = {k: v for k, v in (message.headers or {}).items()
                       if not k.startswith("x-") and k != "x-death"}
            headers["x-replayed-from"] = f"{queue}.dlq"
            producer.publish(message.body, exchange=exchange, routing_key=routing_key,
                             content_type=message.content_type or "application/json",
                             content_encoding=message.content_encoding or "utf-8", headers=headers,
                             delivery_mode=2, mandatory=True,
                             message_id=(message.properties or {}).get("message_id"))
            channel.basic_ack(message.delivery_tag)
            replayed += 1
    return replayed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["list", "replay"])
    parser.add_argument("queue", help="the source queue, e.g. intake.inbound (its DLQ is <queue>.dlq)")
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--amqp-uri", default=os.environ.get("AMQP_URI", "pyamqp://guest:guest@127.0.0.1:5672/"))
    args = parser.parse_args(argv)
    topology.declare(args.amqp_uri)
    if args.action == "list":
        print(json.dumps(list_dead(args.amqp_uri, args.queue, args.limit), ensure_ascii=False, indent=1))
    else:
        print(json.dumps({"replayed": replay(args.amqp_uri, args.queue, args.limit), "queue": args.queue}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
