"""The platform as real OS processes: the commands of deploy/processes.yml (as `make run` and compose run
them), against the test database and vhost, on test ports. One platform per test session."""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import pytest
import requests

from services.common import runner, topology
from services.common.bootstrap import bootstrap
from services.common.config import REPO_ROOT
from services.gateway.keys import create_key
from tests.support import amqp_uri, db_url, reset_vhost

HTTP_PORT = int(os.environ.get("E2E_HTTP_PORT", "18000"))
METRICS_BASE = int(os.environ.get("E2E_METRICS_BASE", "19100"))
METRICS_PORTS = {"gateway": METRICS_BASE, "intake": METRICS_BASE + 1, "dispatch": METRICS_BASE + 2,
                 "escalation": METRICS_BASE + 3, "feedback": METRICS_BASE + 4}
# The platform keeps running until the session ends, while the integration tests run in the same session:
# it gets its own database and vhost, or its services would consume the integration tests' messages.
E2E_DB = f"{os.environ['PROPSVC_TEST_DB']}_e2e"
E2E_VHOST = f"{os.environ['PROPSVC_TEST_VHOST']}_e2e"
E2E_TEST_ENV = {
    "PROPSVC_DB": E2E_DB,
    "PROPSVC_TEST_VHOST": E2E_VHOST,
    "AMQP_URI": f"pyamqp://guest:guest@127.0.0.1:5672/{E2E_VHOST}",
}
LOG_DIR = REPO_ROOT / "tmp" / "e2e-logs" / E2E_DB
# Targets in seconds so warnings, breaches and ladder rungs happen within a test, on real processes.
E2E_ENV = {
    "ESCALATION_POLICY": str(REPO_ROOT / "tests" / "e2e" / "policy_seconds.yml"),
    "FEEDBACK_SAMPLE_RATE": "1.0",
    "TIMER_INTERVAL": "0.2",
    "LOG_LEVEL": "INFO",
}


@contextlib.contextmanager
def e2e_environment() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in E2E_TEST_ENV}
    os.environ.update(E2E_TEST_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(autouse=True)
def _e2e_targets() -> Iterator[None]:
    """tests.support's helpers (scalar, publish_inbound, get_messages...) read these: point them at the
    end-to-end platform's database and vhost for the duration of each end-to-end test."""
    with e2e_environment():
        yield


@dataclass
class Platform:
    base_url: str
    keys: dict[str, str]
    procs: dict[str, Any]
    log_dir: Path
    session: requests.Session = field(default_factory=requests.Session)

    def api(self, method: str, path: str, key: str | None = "all", **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if key is not None:
            headers.setdefault("X-API-Key", self.keys.get(key, key))
        return self.session.request(method, f"{self.base_url}{path}", headers=headers, timeout=30, **kwargs)

    def metrics(self, service: str) -> str:
        return requests.get(f"http://127.0.0.1:{METRICS_PORTS[service]}/metrics", timeout=10).text

    def logs(self) -> str:
        return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    def alive(self) -> dict[str, int | None]:
        return {name: p.poll() for name, p in self.procs.items()}


def _wait_ready(base_url: str, procs: dict[str, Any], key: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    pending = set(METRICS_PORTS)
    while time.monotonic() < deadline:
        dead = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"processes exited during start: {dead}; see {LOG_DIR}")
        for name in list(pending):
            try:
                requests.get(f"http://127.0.0.1:{METRICS_PORTS[name]}/metrics", timeout=1)
                pending.discard(name)
            except requests.RequestException:
                pass
        if not pending:
            try:
                # Ready means every service answers RPC through the gateway (intake has loaded its
                # dictionary, the others have migrated), not only that the processes listen.
                if requests.get(f"{base_url}/health/ready", timeout=10).status_code == 200:
                    return
            except requests.RequestException:
                pass
        time.sleep(0.2)
    raise RuntimeError(f"platform not ready after {timeout}s (waiting for {pending}); see {LOG_DIR}")


def docker_engine_available() -> bool:
    import shutil
    import subprocess
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(REPO_ROOT / "deploy" / "docker-compose.yml")


@pytest.fixture(scope="session")
def platform(request: pytest.FixtureRequest) -> Iterator[Platform]:
    if request.config.getoption("--compose"):
        yield from _compose_platform(request)
        return
    yield from _local_platform()


def _local_platform() -> Iterator[Platform]:
    # The e2e database and vhost are set only while starting: across the yield the environment is the
    # session's again (the autouse fixture points each e2e test at them).
    with e2e_environment():
        reset_vhost()
        bootstrap(os.environ["PROPSVC_DB"], drop=True)
        topology.declare(amqp_uri())
        keys = {
            "all": create_key("e2e-desk", ["submit", "read", "staff", "pii", "admin"], db_url("gateway"))[1],
            "submit": create_key("e2e-submitter", ["submit"], db_url("gateway"))[1],
            "read": create_key("e2e-reader", ["read"], db_url("gateway"))[1],
            "staff": create_key("e2e-staff", ["read", "staff"], db_url("gateway"))[1],
        }
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        for old in LOG_DIR.glob("*.log"):
            old.unlink()
        per_process = {name: {"METRICS_PORT": str(port)} for name, port in METRICS_PORTS.items()}
        per_process["gateway"]["HTTP_ADDRESS"] = f"127.0.0.1:{HTTP_PORT}"
        procs = runner.start(env={**E2E_ENV, **E2E_TEST_ENV}, log_dir=LOG_DIR, per_process_env=per_process)
    base_url = f"http://127.0.0.1:{HTTP_PORT}"
    try:
        _wait_ready(base_url, procs, keys["all"])
        yield Platform(base_url, keys, procs, LOG_DIR)
    finally:
        runner.stop(procs)


def _compose_platform(request: pytest.FixtureRequest) -> Iterator[Platform]:
    """The same suite against the compose stack (pytest-docker). The stack must publish Postgres and the
    RabbitMQ management API on localhost for the tests that read the services' tables (see deploy/.env)."""
    import subprocess
    if not docker_engine_available():
        pytest.skip("--compose needs a Docker engine (`docker info` failed); the static compose checks in "
                    "tests/unit/ops still run")
    docker_services = request.getfixturevalue("docker_services")
    base_url = "http://127.0.0.1:8000"
    docker_services.wait_until_responsive(timeout=180, pause=1,
                                          check=lambda: requests.get(f"{base_url}/health", timeout=2).ok)
    compose = ["docker", "compose", "-f", str(REPO_ROOT / "deploy" / "docker-compose.yml"), "exec", "-T", "gateway",
               "python", "-m", "services.gateway.keys", "create"]
    keys = {}
    for name, scopes in {"all": "submit,read,staff,pii,admin", "submit": "submit", "read": "read",
                         "staff": "read,staff"}.items():
        out = subprocess.run([*compose, "--client", f"e2e-{name}", "--scopes", scopes], capture_output=True,
                             text=True, check=True)
        import json
        keys[name] = json.loads(out.stdout)["key"]
    yield Platform(base_url, keys, {}, LOG_DIR)
