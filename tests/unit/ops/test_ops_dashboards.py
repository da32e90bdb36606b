"""Dashboards: generated JSON is current, every panel is documented, every query uses known metrics."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
GRAFANA = REPO / "deploy" / "grafana"
RULES = sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))

# The metric names the services document (see docs/operations.md), RabbitMQ's plugin and Prometheus's own.
COUNTERS = {
    "events_handled_total", "events_failed_total", "events_dead_lettered_total", "outbox_published_total",
    "inbox_duplicates_total", "http_requests_total", "sla_clock_verdicts_total", "escalations_total",
    "calendar_fallback_clocks_total", "feedback_return_visits_total", "feedback_satisfaction_total",
    "feedback_complaints_total", "intake_requests_registered_total",
}
HISTOGRAMS = {"event_handler_duration_seconds", "http_request_duration_seconds", "sla_clock_elapsed_seconds",
              "escalation_timer_lateness_seconds"}
GAUGES = {
    "outbox_pending_events", "outbox_oldest_event_timestamp_seconds", "sla_clocks_open", "sla_clock_objective_ratio",
    "escalation_timers_due", "dispatch_backlog", "dispatch_technicians_on_duty", "dispatch_technician_load",
    "dispatch_handovers_unacknowledged", "dispatch_daily_check_open", "dispatch_daily_check_overdue",
    "feedback_recurring_problems", "up",
    "rabbitmq_detailed_queue_messages", "rabbitmq_detailed_queue_messages_ready",
    "rabbitmq_detailed_queue_messages_unacked", "rabbitmq_detailed_queue_consumers",
}
HISTOGRAM_SERIES = {f"{h}_{s}" for h in HISTOGRAMS for s in ("bucket", "count", "sum")}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan"}


def _recorded() -> set[str]:
    names = set()
    for path in RULES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def _generator():
    spec = importlib.util.spec_from_file_location("propsvc_grafana_generate", GRAFANA / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}


def _panels():
    for name, board in _dashboards().items():
        for panel in board["panels"]:
            if panel["type"] != "row":
                yield name, panel


def _exprs():
    for name, panel in _panels():
        for target in panel["targets"]:
            yield f"{name}: {panel['title']}", target["expr"]
    for name, board in _dashboards().items():
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                # label_values(<series selector>, <label>): the selector is the PromQL part.
                query = re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", var["query"]["query"])
                yield f"{name}: ${var['name']}", query


def _strip(expr: str) -> str:
    """Blank out strings, label matchers, ranges and grouping clauses, keeping positions."""
    def blank(m: re.Match[str]) -> str:
        return " " * len(m.group(0))
    expr = re.sub(r'"(?:\\.|[^"\\])*"', blank, expr)
    expr = re.sub(r"\{[^}]*\}", blank, expr)
    expr = re.sub(r"\[[^\]]*\]", blank, expr)
    return re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", blank, expr)


def metric_occurrences(expr: str) -> list[tuple[str, str | None]]:
    """(metric name, innermost enclosing function) for every metric selector in a PromQL expression."""
    stripped = _strip(expr)
    found = []
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", stripped):
        name = m.group(0)
        rest = stripped[m.end():].lstrip()
        if rest.startswith("(") or name.lower() in KEYWORDS or re.fullmatch(r"\d.*", name):
            continue
        stack: list[str | None] = []
        for fm in re.finditer(r"([A-Za-z_]+)?\s*\(|\)", stripped[: m.start()]):
            if fm.group(0) == ")":
                if stack:
                    stack.pop()
            else:
                stack.append(fm.group(1))
        found.append((name, next((f for f in reversed(stack) if f is not None), None)))
    return found


def test_the_extractor_sees_counters_outside_rate():
    occurrences = metric_occurrences('sum by (x) (events_handled_total{a="b"}) / rate(http_requests_total[5m])')
    assert occurrences == [("events_handled_total", "sum"), ("http_requests_total", "rate")]


def test_committed_dashboards_equal_what_the_generator_produces():
    rendered = _generator().render()
    committed = {p.name: p.read_text(encoding="utf-8") for p in (GRAFANA / "dashboards").glob("*.json")}
    assert committed == rendered, "run: python deploy/grafana/generate.py"


def test_the_four_dashboards_exist_with_chinese_and_english_titles():
    titles = {board["title"] for board in _dashboards().values()}
    assert len(titles) == 4
    for title in titles:
        assert " / " in title and re.search(r"[\u4e00-\u9fff]", title) and re.search(r"[A-Za-z]", title)


def test_every_dashboard_has_a_templated_prometheus_datasource():
    for name, board in _dashboards().items():
        ds = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
        assert ds and ds[0]["query"] == "prometheus", name
        for _, panel in _panels():
            assert panel["datasource"]["uid"] == "${datasource}"
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_every_panel_has_title_description_and_unit():
    for name, panel in _panels():
        assert panel.get("title"), name
        assert panel.get("description"), f"{name}: {panel['title']}"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{name}: {panel['title']}"
        assert panel["targets"], f"{name}: {panel['title']}"


def test_every_query_uses_documented_metrics_and_counters_only_inside_rate_or_increase():
    known = COUNTERS | GAUGES | HISTOGRAM_SERIES | _recorded()
    counters = COUNTERS | HISTOGRAM_SERIES
    for where, expr in _exprs():
        for name, function in metric_occurrences(expr):
            assert name in known, f"{where}: unknown metric {name}"
            if name in counters:
                assert function in ("rate", "increase"), f"{where}: counter {name} outside rate/increase"
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", f"{where}: range [{window}] instead of [$__rate_interval]"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: apt-get install prometheus")
def test_every_dashboard_query_parses(tmp_path):
    # promtool has no query parser of its own offline; a recording rule per expression makes `check rules`
    # parse each one, with the Grafana variables replaced by values Prometheus accepts.
    rules = []
    for i, (_where, expr) in enumerate(_exprs()):
        concrete = expr.replace("$__rate_interval", "5m").replace("$property", ".*").replace("$department", ".*")
        rules.append({"record": f"dashboard:check:{i}", "expr": concrete})
    (tmp_path / "dash.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(["promtool", "check", "rules", str(tmp_path / "dash.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_provisioning_points_grafana_at_prometheus_and_the_dashboards_directory():
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    assert ds["datasources"][0]["type"] == "prometheus"
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "propsvc.yml").read_text(encoding="utf-8"))
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text(encoding="utf-8"))
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in mounts
