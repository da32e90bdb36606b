"""`make bench-quick` as CI runs it: the harness runs end to end and its report is complete, and nothing published
was lost or duplicated at any hop. Never a speed: the figures are the benchmark's business, not the suite's.

The harness uses its own database, vhost and ports (bench/settings.py; BENCH_DB, BENCH_VHOST, BENCH_HTTP_PORT,
BENCH_METRICS_BASE override them), so it does not touch the test database or the e2e platform.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from services.common.config import REPO_ROOT

SECTIONS = ("throughput", "latency", "http", "timers", "growth", "resources", "baseline", "profiles", "exactness")


def test_quick_bench_report_is_complete_and_nothing_lost(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PROPSVC_DB", "AMQP_URI")}
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out", str(out)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=150)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    meta = report["meta"]
    assert meta["errors"] == [], meta["errors"]
    assert meta["missing_sections"] == []
    for section in SECTIONS:
        assert section in report, section

    exact = report["exactness"]
    assert exact["published"] > 0
    assert exact["ok"], exact
    for hop in ("registered", "routed", "assigned", "clock_first_response", "clock_on_site"):
        timeline = exact["hops"][hop]["timeline"]
        assert (timeline["lost"], timeline["duplicated_requests"]) == (0, 0), (hop, timeline)
    assert exact["hops"]["registered"]["lost"] == 0
    assert exact["hops"]["clocks_any"]["duplicated_clock_starts"] == 0
    assert report["baseline"]["exactness"]["ok"], report["baseline"]["exactness"]

    steps = report["throughput"]["steps"]
    assert steps and all(s["hop_rates_per_s"].keys() >= {"registered", "routed", "assigned", "clocks_started"}
                         for s in steps)
    assert steps[0]["publish"]["confirmed"] == steps[0]["publish"]["sent"]
    assert report["baseline"]["steps"]
    for hop in ("registered", "assigned", "clock_first_response_started", "all_clocks_started"):
        assert report["latency"]["amqp"][hop]["n"] > 0, hop
    if "skipped" in report["http"]:  # a machine without wrk (.ci/run installs it): the section says so
        assert "wrk" in report["http"]["skipped"]
    else:
        for kind in ("submit", "get_by_number"):
            for c in ("1", "16", "64"):
                assert "error" not in report["http"][kind][c], report["http"][kind][c]
                assert report["http"][kind][c]["requests"] > 0, (kind, c)
    assert report["timers"]["status"] in ("measured", "not_available")
    if report["timers"]["status"] == "measured":
        assert report["timers"]["lateness"]["1"]["fired"] > 0
        assert report["timers"]["due_pass_small"]["plan"]
    assert "10000" in report["growth"]["sizes"]
    res = report["resources"]
    for key in ("idle", "peak_rss_mb", "cpu_seconds_per_1000_requests", "metrics_after_0_requests",
                "metrics_after_n_requests"):
        assert set(res[key] if key != "metrics_after_n_requests" else res[key]["sizes"]) >= {
            "gateway", "intake", "dispatch", "escalation", "feedback"}, key
    assert "services" in report["profiles"] or "skipped" in report["profiles"]
    assert "ratio_to_baseline" in report
    assert proc.returncode == 0, proc.stdout[-3000:]
