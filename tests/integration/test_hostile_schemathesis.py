"""schemathesis against the in-process gateway's /openapi.json (issue 10 item 4): every check, bounded for CI.

All five services run in this process so that no route answers 503 for want of a service; the key holds every
scope, so generated calls get past authentication and exercise bodies, queries and path values. Any 5xx, any
answer not matching the document, any crash is a failure. schemathesis runs as its CLI (pinned in SECURITY.md).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nameko.containers import ServiceContainer

from services.dispatch.entrypoints.service import DispatchService
from services.escalation.entrypoints.service import EscalationService
from services.feedback.entrypoints.service import FeedbackService
from services.gateway.entrypoints.service import GatewayService
from services.gateway.keys import create_key
from services.intake.entrypoints.service import IntakeService
from services.common.config import REPO_ROOT
from tests.support import amqp_uri, db_url, free_port

ST = shutil.which("st", path=str(Path(sys.executable).parent))
MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def gateway(infra: None) -> Iterator[tuple[str, str]]:
    common: dict[str, Any] = {"AMQP_URI": amqp_uri(), "METRICS_PORT": 0, "LOG_LEVEL": "ERROR", "max_workers": 10}
    containers = []
    for cls in (IntakeService, DispatchService, EscalationService, FeedbackService):
        c = ServiceContainer(cls, {**common, "DATABASE_URL": db_url(cls.name)})
        c.start()
        containers.append(c)
    port = free_port()
    gw = ServiceContainer(GatewayService, {
        **common, "DATABASE_URL": db_url("gateway"), "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}", "RPC_TIMEOUT": 10,
        "RATE_LIMIT_PER_SECOND": 100000, "RATE_LIMIT_BURST": 100000})
    gw.start()
    containers.append(gw)
    key = create_key("schemathesis", ["submit", "read", "staff", "pii", "admin"], db_url("gateway"))[1]
    try:
        yield f"http://127.0.0.1:{port}", key
    finally:
        for c in reversed(containers):
            c.stop()


@pytest.mark.skipif(ST is None, reason="schemathesis is not installed (pip install schemathesis==4.32.5)")
def test_schemathesis_finds_no_failure(gateway: tuple[str, str], tmp_path: Path) -> None:
    base, key = gateway
    result = subprocess.run(
        [str(ST), "run", f"{base}/openapi.json", "--url", base, "--checks", "all", "--max-examples", str(MAX_EXAMPLES),
         "--header", f"X-API-Key: {key}", "--seed", "20261129", "--request-timeout", "20", "--workers", "4",
         "--generation-deterministic", "--report-dir", str(tmp_path), "--no-color"],
        capture_output=True, text=True, timeout=600)
    out = REPO_ROOT / "tmp" / "schemathesis.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(result.stdout + result.stderr, encoding="utf-8")
    failures = result.stdout[result.stdout.find("FAILURES"):]
    summary = result.stdout[result.stdout.rfind("SUMMARY"):]
    assert "Test cases:" in summary, f"schemathesis did not run to its summary; see {out}"
    # A failure is a finding about the API (5xx, an answer outside the document, a malformed request accepted,
    # a well-formed one refused). schemathesis' own runtime errors (hypothesis flakiness inside the tool) are
    # reported in the output but are not findings about the API.
    assert "Failures:" not in summary, f"full output in {out}\n" + failures[:12000]
