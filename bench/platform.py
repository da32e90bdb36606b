"""The platform as real OS processes, started exactly as `make run` starts it (services.common.runner), against the
benchmark's own database, vhost and ports."""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench import infra, settings

# Set before runner.process_specs() expands deploy/processes.yml (it reads os.environ), so every
# DATABASE_URL and AMQP_URI of the children points at the benchmark's database and vhost.
os.environ["PROPSVC_DB"] = settings.DB
os.environ["AMQP_URI"] = settings.amqp_uri()

from services.common import runner, topology  # noqa: E402
from services.common.bootstrap import bootstrap  # noqa: E402
from services.gateway.keys import create_key  # noqa: E402

# Differences from `make run`, all stated in the report: the acceptance timeout is long so that a request
# assigned in the first minutes is not timed out and reassigned before the run ends (that would be a second,
# legitimate WorkOrderAssigned), and the per-key HTTP rate limit is lifted so the HTTP figures measure the
# platform, not the limiter.
BENCH_ENV = {
    "ASSIGNMENT_POLICY": "bench/assignment_policy.yml",
    "RATE_LIMIT_PER_SECOND": "1000000",
    "RATE_LIMIT_BURST": "1000000",
}


CONSUMED_QUEUES = ("intake.inbound", "dispatch.events", "escalation.events", "feedback.events")


def db_url(role: str) -> str:
    return f"postgresql://{role}:{role}@127.0.0.1:5432/{settings.DB}"


@dataclass
class Platform:
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    extra: list[dict[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    started_s: float = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{settings.HTTP_PORT}"

    def start(self) -> None:
        t0 = time.monotonic()
        infra.reset_vhost(settings.VHOST)
        bootstrap(settings.DB, drop=True)
        topology.declare(settings.amqp_uri())
        self.keys = {
            "all": create_key("bench-http", ["submit", "read", "staff", "pii", "admin"], db_url("gateway"))[1],
        }
        per_process = {name: {"METRICS_PORT": str(port)} for name, port in settings.METRICS_PORTS.items()}
        per_process["gateway"]["HTTP_ADDRESS"] = f"127.0.0.1:{settings.HTTP_PORT}"
        self.procs = runner.start(env=dict(BENCH_ENV), log_dir=self.log_dir, per_process_env=per_process)
        self.wait_ready()
        self.started_s = time.monotonic() - t0

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        pending = set(settings.METRICS_PORTS)
        while time.monotonic() < deadline:
            dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
            if dead:
                raise RuntimeError(f"processes exited during start: {dead}; see {self.log_dir}")
            for name in list(pending):
                try:
                    requests.get(f"http://127.0.0.1:{settings.METRICS_PORTS[name]}/metrics", timeout=1)
                    pending.discard(name)
                except requests.RequestException:
                    pass
            if not pending and self._consuming():
                try:
                    if requests.get(f"{self.base_url}/health", timeout=1).ok:
                        return
                except requests.RequestException:
                    pass
            time.sleep(0.3)
        raise RuntimeError(f"platform not ready after {timeout}s (waiting for {pending}); see {self.log_dir}")

    @staticmethod
    def _consuming() -> bool:
        """Every service consumes its queue (metrics and /health answer before migrations and consumers are up)."""
        try:
            depths = {q["name"]: int(q.get("consumers") or 0) for q in infra.rabbit(
                "GET", f"/queues/{settings.VHOST}?columns=name,consumers").json()}
        except Exception:
            return False
        return all(depths.get(q, 0) > 0 for q in CONSUMED_QUEUES)

    def start_extra_escalation(self, n: int) -> None:
        """More escalation instances: the same command; no metrics port (the benchmark owns five ports only)."""
        for i in range(n):
            procs = runner.start(names=["escalation"], env=dict(BENCH_ENV),
                                 log_dir=self.log_dir / f"escalation-{i + 2}",
                                 per_process_env={"escalation": {"METRICS_PORT": "0"}})
            self.extra.append(procs)

    def stop_extra(self) -> None:
        for procs in self.extra:
            runner.stop(procs)
        self.extra = []

    def alive(self) -> dict[str, int | None]:
        return {name: p.poll() for name, p in self.procs.items()}

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def stop(self) -> None:
        self.stop_extra()
        if self.procs:
            runner.stop(self.procs)
