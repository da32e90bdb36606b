"""How a consumer forms its batches (services.common.nameko_ext.ReliableConsumer._batch_forever): with a linger, the
messages that arrive soon after a batch's first one join it; the linger never adds to time already spent waiting
for the lane."""
from __future__ import annotations

import time
from typing import Any

import eventlet
import pytest
from eventlet.queue import LightQueue
from eventlet.semaphore import Semaphore

from services.common.nameko_ext import ReliableConsumer, batch_linger


class _Lane:
    """A consumer's batching loop, alone: batches are recorded instead of spawned as workers."""

    def __init__(self, linger_s: float, batch_size: int = 50) -> None:
        consumer: Any = object.__new__(ReliableConsumer)
        consumer.batch_size, consumer.lanes, consumer.linger = batch_size, 1, linger_s
        consumer._buffers, consumer._lane_free = [LightQueue()], [Semaphore(1)]
        consumer.queue = type("Q", (), {"name": "test.events"})()
        self.batches: list[tuple[float, list[str]]] = []

        def spawn(items: list[tuple[str, Any]], lane: int = 0) -> None:
            self.batches.append((time.monotonic(), [m for m, _ in items]))
            consumer._lane_free[lane].release()

        consumer._spawn_batch = spawn
        self.consumer = consumer
        self.thread = eventlet.spawn(consumer._batch_forever, 0)

    def put(self, message: str) -> None:
        self.consumer._buffers[0].put((message, None))

    def close(self) -> None:
        self.thread.kill()


@pytest.fixture
def lane() -> Any:
    made: list[_Lane] = []

    def make(linger_s: float, batch_size: int = 50) -> _Lane:
        made.append(_Lane(linger_s, batch_size))
        return made[-1]

    yield make
    for one in made:
        one.close()


def test_messages_arriving_within_the_linger_join_the_first_ones_batch(lane: Any) -> None:
    lane = lane(0.5)
    lane.put("a")
    eventlet.sleep(0.05)
    lane.put("b")
    eventlet.sleep(0.05)
    lane.put("c")
    eventlet.sleep(0.7)
    assert [b for _, b in lane.batches] == [["a", "b", "c"]]


def test_without_a_linger_each_quiet_arrival_is_a_batch_of_its_own(lane: Any) -> None:
    lane = lane(0.0)
    for m in "abc":
        lane.put(m)
        eventlet.sleep(0.05)
    assert [b for _, b in lane.batches] == [["a"], ["b"], ["c"]]


def test_a_full_batch_starts_without_waiting_out_the_linger(lane: Any) -> None:
    lane = lane(5.0, batch_size=3)
    t0 = time.monotonic()
    for m in "abcd":
        lane.put(m)
    eventlet.sleep(0.2)
    assert [b for _, b in lane.batches] == [["a", "b", "c"]]
    assert lane.batches[0][0] - t0 < 1.0


def test_time_spent_waiting_for_a_busy_lane_counts_towards_the_linger(lane: Any) -> None:
    lane = lane(0.3)
    lane.consumer._lane_free[0].acquire()  # the lane's previous batch is still running
    lane.put("a")
    eventlet.sleep(0.5)  # longer than the linger
    lane.put("b")
    released = time.monotonic()
    lane.consumer._lane_free[0].release()
    eventlet.sleep(0.1)
    assert [b for _, b in lane.batches] == [["a", "b"]]
    assert lane.batches[0][0] - released < 0.08


def test_the_linger_is_configured_in_milliseconds_and_defaults_to_none() -> None:
    assert batch_linger({}) == 0.0
    assert batch_linger({"CONSUMER_LINGER_MS": "20"}) == 0.02
    assert batch_linger({"CONSUMER_LINGER_MS": -5}) == 0.0


@pytest.mark.parametrize("service", ["intake", "dispatch", "escalation", "feedback"])
def test_a_consumer_holds_a_bounded_number_of_events_yet_enough_for_its_next_batches(service: str) -> None:
    from services.common.config import REPO_ROOT, load_config
    from services.common.nameko_ext import batch_settings, prefetch_count

    cfg = load_config(REPO_ROOT / "services" / service / "config.yml", env={})
    size, lanes = batch_settings(cfg)
    deliveries = prefetch_count(cfg)
    # Every producer packs up to its RELAY_PACK_MAX events in one delivery (intake's inbound messages are single).
    pack = 1 if service == "intake" else max(
        int(load_config(REPO_ROOT / "services" / s / "config.yml", env={})["RELAY_PACK_MAX"])
        for s in ("intake", "dispatch", "escalation", "feedback"))
    assert deliveries * pack <= 5_000  # a backlog waits in the broker, not in this process's memory
    assert deliveries >= min(size * lanes, 50)  # and a batch can still fill under load
