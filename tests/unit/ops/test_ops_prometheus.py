"""promtool and amtool accept the configuration, and the alert unit tests pass."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
PROM = REPO / "deploy" / "prometheus"
RULES = sorted((PROM / "rules").glob("*.yml"))
TESTS = sorted((PROM / "tests").glob("*.yml"))

promtool = shutil.which("promtool")
amtool = shutil.which("amtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="promtool missing: apt-get install prometheus (Debian package, gives promtool 2.42)")
needs_amtool = pytest.mark.skipif(
    amtool is None, reason="amtool missing: apt-get install prometheus-alertmanager")


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=cwd)


@needs_promtool
def test_prometheus_config_and_its_rule_files_are_valid(tmp_path):
    config = yaml.safe_load((PROM / "prometheus.yml").read_text(encoding="utf-8"))
    # The container path does not exist here; point rule_files at the repository so they are checked too.
    config["rule_files"] = [str(p) for p in RULES]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = _run(str(promtool), "check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULES)} rule files found" in result.stdout + result.stderr


@needs_promtool
def test_rule_files_are_valid():
    result = _run(str(promtool), "check", "rules", *map(str, RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("test_file", TESTS, ids=lambda p: p.name)
def test_promtool_rule_unit_tests_pass(test_file):
    result = _run(str(promtool), "test", "rules", test_file.name, cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def _alerts() -> list[str]:
    names = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names += [rule["alert"] for rule in group["rules"] if "alert" in rule]
    return names


def _alert_tests() -> dict[str, list[bool]]:
    """alertname -> list of 'fires' flags over every alert_rule_test case."""
    seen: dict[str, list[bool]] = {}
    for path in TESTS:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                seen.setdefault(check["alertname"], []).append(bool(check.get("exp_alerts")))
    return seen


def test_every_alert_has_a_case_that_fires_and_one_that_does_not():
    seen = _alert_tests()
    for name in _alerts():
        assert True in seen.get(name, []), f"no promtool case fires {name}"
        assert False in seen.get(name, []), f"no promtool case keeps {name} silent"


def test_every_alert_has_severity_and_a_runbook_section():
    runbook = (REPO / "docs" / "operations.md").read_text(encoding="utf-8").lower()
    for path in RULES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
                anchor = rule["annotations"]["runbook"].split("#", 1)[1]
                assert f"### {rule['alert'].lower()}" in runbook, f"docs/operations.md lacks ### {rule['alert']}"
                assert anchor == rule["alert"].lower()


def test_sloth_recording_rules_exist_for_every_window():
    records = set()
    for path in RULES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            records |= {rule["record"] for rule in group["rules"] if "record" in rule}
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"):
        assert f"slo:sli_error:ratio_rate{window}" in records
    for name in ("slo:objective:ratio", "slo:error_budget:ratio", "slo:period_error_budget_remaining:ratio",
                 "clock:sla_attainment:ratio_1h", "clock:sla_attainment:ratio_1d", "clock:sla_attainment:ratio_30d"):
        assert name in records


@needs_amtool
def test_alertmanager_config_is_valid():
    result = _run(str(amtool), "check-config", str(REPO / "deploy" / "alertmanager" / "alertmanager.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_page_inhibits_the_ticket_of_the_same_slo():
    config = yaml.safe_load((REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8"))
    rule = next(r for r in config["inhibit_rules"] if 'alertname="SLAErrorBudgetBurnPage"' in r["source_matchers"])
    assert 'alertname="SLAErrorBudgetBurnTicket"' in rule["target_matchers"]
    assert rule["equal"] == ["clock"]
