"""Per service: RSS (idle and peak) and CPU seconds from /proc through psutil; /metrics size."""
from __future__ import annotations

import threading
import time
from typing import Any

import psutil
import requests

from bench import settings


def _procs(pids: dict[str, int]) -> dict[str, psutil.Process]:
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = psutil.Process(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def snapshot(pids: dict[str, int]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, p in _procs(pids).items():
        try:
            with p.oneshot():
                cpu = p.cpu_times()
                out[name] = {"rss_mb": round(p.memory_info().rss / 2**20, 1), "cpu_s": round(cpu.user + cpu.system, 2)}
        except psutil.NoSuchProcess:
            pass
    return out


class PeakSampler:
    """Peak RSS per service over the run, sampled every second."""

    def __init__(self, pids: dict[str, int], interval: float = 1.0) -> None:
        self.pids = pids
        self.interval = interval
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PeakSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, s in snapshot(self.pids).items():
                self.peak[name] = max(self.peak.get(name, 0.0), s["rss_mb"])
            self._stop.wait(self.interval)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.peak


def idle(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    """RSS after start and CPU % while nothing is sent (timers and relays only)."""
    a = snapshot(pids)
    time.sleep(seconds)
    b = snapshot(pids)
    return {n: {"rss_mb": b[n]["rss_mb"], "cpu_percent": round(100 * (b[n]["cpu_s"] - a[n]["cpu_s"]) / seconds, 1)}
            for n in b if n in a}


def metrics_sizes() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, port in settings.METRICS_PORTS.items():
        try:
            t0 = time.monotonic()
            r = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=60)
            out[name] = {"bytes": len(r.content), "series": sum(1 for line in r.text.splitlines()
                                                                 if line and not line.startswith("#")),
                         "scrape_ms": round((time.monotonic() - t0) * 1000, 1)}
        except requests.RequestException as exc:
            out[name] = {"error": type(exc).__name__}
    return out


def cpu_per_1000(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]],
                 requests_done: int) -> dict[str, float | None]:
    if requests_done <= 0:
        return {n: None for n in after}
    return {n: round((after[n]["cpu_s"] - before[n]["cpu_s"]) * 1000 / requests_done, 2) for n in after if n in before}


class MachineShare:
    """CPU of the whole machine vs the processes under test over an interval: the benchmark shares 2 cores with
    whatever else runs (other test suites), and a figure means little without that context."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.t0 = time.monotonic()
        self.sys0 = psutil.cpu_times()
        self.own0 = snapshot(pids)
        self.load0 = _loadavg()
        self.groups0 = _group_cpu()

    def stop(self) -> dict[str, Any]:
        secs = time.monotonic() - self.t0
        sys1 = psutil.cpu_times()
        own1 = snapshot(self.pids)
        busy = (sum(sys1) - sys1.idle - getattr(sys1, "iowait", 0)) - \
            (sum(self.sys0) - self.sys0.idle - getattr(self.sys0, "iowait", 0))
        own = sum(own1[n]["cpu_s"] - self.own0[n]["cpu_s"] for n in own1 if n in self.own0)
        cores = psutil.cpu_count() or 1
        groups1 = _group_cpu()
        return {"seconds": round(secs, 1), "machine_busy_percent": round(100 * busy / (secs * cores), 1),
                "under_test_percent_of_machine": round(100 * own / (secs * cores), 1),
                "everything_else_percent_of_machine": round(100 * (busy - own) / (secs * cores), 1),
                "others_percent_of_machine": {g: round(100 * (groups1.get(g, 0.0) - self.groups0.get(g, 0.0))
                                                       / (secs * cores), 1) for g in groups1},
                "loadavg_1m": [self.load0, _loadavg()]}


def _group_cpu() -> dict[str, float]:
    """CPU seconds so far of the processes the platform leans on, by kind: where "everything else" goes.
    A server process that exited during the interval is missed (Postgres backends are pooled, so few do). The
    load generator is this harness and its publishers: they have exited (and been reaped) when a step's share is
    read, so they count through this process's children's times."""
    me = psutil.Process().cpu_times()
    groups = {"postgres": 0.0, "rabbitmq": 0.0,
              "load_generator": me.user + me.system + me.children_user + me.children_system}
    for p in psutil.process_iter(["name", "cpu_times"]):
        name, cpu = p.info["name"] or "", p.info["cpu_times"]
        if cpu is None or name not in ("postgres", "beam.smp"):
            continue
        groups["postgres" if name == "postgres" else "rabbitmq"] += cpu.user + cpu.system
    return groups


def _loadavg() -> float:
    import os
    return round(os.getloadavg()[0], 2)
