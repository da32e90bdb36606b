"""Dashboards checked against a live Prometheus (issue 7, item 4): Debian's Prometheus scrapes the five
services of the end-to-end run and RabbitMQ, with the repo's recording rules; every panel's query, with its
variables expanded, must be valid and return data. Runs after the other end-to-end tests (file order), when
requests have been through every service."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from typing import Any
from collections.abc import Iterator

import pytest
import requests
import yaml

from services.common.config import REPO_ROOT
from tests.e2e.conftest import METRICS_PORTS, Platform
from tests.support import free_port, wait_for

DASHBOARDS = sorted((REPO_ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="Debian package `prometheus` not installed (the CI script installs it)")


@pytest.fixture(scope="module")
def prometheus(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("prometheus")
    # The repo's rules, with every group evaluated each second: chained recording rules (5 m rates -> 30 d
    # ratios -> budgets) get several evaluations within the test instead of one a minute.
    rules = []
    for source in sorted((REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml")):
        doc = yaml.safe_load(source.read_text(encoding="utf-8"))
        for group in doc["groups"]:
            group["interval"] = "1s"
        rules.append(work / source.name)
        rules[-1].write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    jobs = [{"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for name, port in METRICS_PORTS.items()]
    jobs += [
        {"job_name": "rabbitmq", "static_configs": [{"targets": ["127.0.0.1:15692"]}]},
        {"job_name": "rabbitmq-queues", "metrics_path": "/metrics/detailed",
         "params": {"family": ["queue_coarse_metrics", "queue_consumer_count"]},
         "static_configs": [{"targets": ["127.0.0.1:15692"]}]},
    ]
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(r) for r in rules], "scrape_configs": jobs}
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(work / "prometheus.log", "wb"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{base}/-/ready", timeout=1).ok, timeout=30, what="prometheus ready")
        # Every service target up and scraped a few times, so rates have two samples.
        wait_for(lambda: _all_up(base), timeout=30, what="every target scraped")
        # SLA activity inside Prometheus' window (it only sees what happens while it runs): a repair every
        # 0.5 s for 14 s under the seconds policy. Verdicts land while it scrapes (first response met at the
        # assignment, the online acknowledgement breached at 1.5 s), and when the panels are queried the
        # on-site clocks of the requests from about 10 s earlier are past their warning point (9.6 s of 12 s).
        for i in range(28):
            platform.api("POST", "/requests", json={
                "channel": "online" if i % 2 else "phone", "external_id": f"prom-{uuid.uuid4()}",
                "property_id": "LY", "unit": f"{1 + i % 6}-{10 + i % 20}0{1 + i % 4}", "agent_id": "agent-prom",
                "reporter": {"kind": "resident"}, "description": "厨房水龙头漏水"})
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def _all_up(base: str) -> bool:
    targets = requests.get(f"{base}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    return bool(targets) and all(t["health"] == "up" for t in targets)


def _expand(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s").replace("$__range", "1h")
    return re.sub(r"\$\{?(\w+)(?::\w+)?\}?", ".*", expr)


def _queries() -> list[tuple[str, str, str]]:
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append((path.stem, panel["title"], target["expr"]))
    return out


QUERIES = _queries()


@pytest.mark.parametrize("board,title,expr", QUERIES, ids=[f"{b}:{t}" for b, t, _ in QUERIES])
def test_every_dashboard_query_is_valid_and_returns_data_from_a_live_run(prometheus: str, board: str, title: str,
                                                                         expr: str) -> None:
    query = _expand(expr)
    answer: dict[str, Any] = requests.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=10).json()
    assert answer["status"] == "success", (query, answer)
    assert answer["data"]["result"], f"no data for {board} / {title}: {query}"


def test_the_scrape_covers_every_service(prometheus: str) -> None:
    jobs = {t["labels"]["job"] for t in
            requests.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]}
    assert set(METRICS_PORTS) <= jobs


