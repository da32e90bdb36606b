"""Where the benchmark runs: its own database, vhosts and ports, never the ones `make run` or the tests use."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from services.common.config import REPO_ROOT

DB = os.environ.get("BENCH_DB", "propsvc_bench")
VHOST = os.environ.get("BENCH_VHOST", "propsvc_bench")
BASELINE_VHOST = os.environ.get("BENCH_BASELINE_VHOST", "propsvc_bench_baseline")
HTTP_PORT = int(os.environ.get("BENCH_HTTP_PORT", "18600"))
METRICS_BASE = int(os.environ.get("BENCH_METRICS_BASE", "19600"))
METRICS_PORTS = {"gateway": METRICS_BASE, "intake": METRICS_BASE + 1, "dispatch": METRICS_BASE + 2,
                 "escalation": METRICS_BASE + 3, "feedback": METRICS_BASE + 4}
SERVICES = ("gateway", "intake", "dispatch", "escalation", "feedback")
RABBIT_API = os.environ.get("RABBIT_API", "http://guest:guest@127.0.0.1:15672/api")
AMQP_HOST = os.environ.get("BENCH_AMQP_HOST", "127.0.0.1:5672")
ADMIN_URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"
RESULTS = REPO_ROOT / "bench" / "results"
SOURCE = "bench"  # the inbound `source` of every request this harness publishes


def amqp_uri(vhost: str = VHOST) -> str:
    return f"pyamqp://guest:guest@{AMQP_HOST}/{vhost}"


@dataclass
class Sizes:
    """Everything that differs between `make bench` and `make bench-quick`."""

    quick: bool
    # From 50/s: with batches that linger the platform holds ~250/s, and the ladder must fit 20 minutes.
    rates: list[int] = field(default_factory=lambda: [50, 100, 150, 200, 250, 300, 350, 400, 500, 700, 1000, 1300])
    baseline_rates: list[int] = field(default_factory=lambda: [25, 50, 100, 200, 400, 700, 1000, 1300])
    publishers: int = 3
    warmup_s: float = 5.0
    steady_s: float = 60.0
    drain_s: float = 90.0
    latency_rate: int = 300
    latency_s: float = 30.0
    http_concurrency: list[int] = field(default_factory=lambda: [1, 16, 64])
    http_s: float = 8.0
    timer_open: int = 1_000_000
    timer_due: int = 10_000
    timer_due_window_s: float = 60.0
    timer_instances: list[int] = field(default_factory=lambda: [1, 3])
    growth_sizes: list[int] = field(default_factory=lambda: [10_000, 1_000_000])
    growth_s: float = 5.0
    profile_s: float = 20.0

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        if not quick:
            return cls(quick=False)
        return cls(quick=True, rates=[20], baseline_rates=[40], publishers=2, warmup_s=1.0, steady_s=4.0,
                   drain_s=30.0, latency_rate=30, latency_s=3.0, http_concurrency=[1, 16, 64], http_s=3.0,
                   timer_open=10_000, timer_due=300, timer_due_window_s=3.0, timer_instances=[1],
                   growth_sizes=[10_000], growth_s=1.0, profile_s=3.0)
