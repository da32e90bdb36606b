"""Packs: which outbox rows travel together, and the order a fast batch writes its events in."""
from __future__ import annotations

import random
from typing import Any

from services.common.db import pack_order
from services.common.nameko_ext import pack_runs


def row(key: str, exchange: str = "intake.events") -> tuple[Any, ...]:
    return (0, exchange, key, {})


def test_consecutive_rows_of_one_type_form_a_pack_up_to_its_limit() -> None:
    rows = [row("A"), row("A"), row("A"), row("B"), row("A"), row("A", "dispatch.events")]
    assert pack_runs(rows, limit=2) == [(0, 2), (2, 3), (3, 4), (4, 5), (5, 6)]
    assert pack_runs(rows, limit=50) == [(0, 3), (3, 4), (4, 5), (5, 6)]
    assert pack_runs([], limit=50) == []


def env(no: str | None, event_type: str, tag: int) -> dict[str, Any]:
    return {"request_no": no, "event_type": event_type, "tag": tag}


def test_a_batch_puts_each_requests_nth_event_together_by_type() -> None:
    batch = [env("r1", "Registered", 1), env("r1", "Classified", 2), env("r2", "Registered", 3),
             env("r2", "Classified", 4), env("r3", "Registered", 5), env("r3", "Classified", 6)]
    assert [e["tag"] for e in pack_order(batch)] == [1, 3, 5, 2, 4, 6]


def test_no_event_overtakes_an_earlier_one_of_its_request_or_of_no_request() -> None:
    rng = random.Random(7)
    for _ in range(200):
        batch = [env(rng.choice(["r1", "r2", "r3", None]), rng.choice("ABC"), i) for i in range(rng.randint(0, 40))]
        ordered = pack_order(batch)
        assert sorted(e["tag"] for e in ordered) == list(range(len(batch)))
        for no in ("r1", "r2", "r3", None):
            tags = [e["tag"] for e in ordered if e["request_no"] == no]
            assert tags == sorted(tags)
