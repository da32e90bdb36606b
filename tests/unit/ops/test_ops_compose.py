"""The compose stack is valid Compose and runs exactly the processes `make run` runs."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "deploy" / "docker-compose.yml"
PROCESSES = REPO / "deploy" / "processes.yml"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _processes() -> dict:
    return yaml.safe_load(PROCESSES.read_text(encoding="utf-8"))


def test_compose_file_is_valid_against_the_compose_specification_schema():
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).with_name("check-jsonschema"))
    if not Path(exe).exists():
        pytest.skip("check-jsonschema is not installed in this environment")
    result = subprocess.run([exe, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_process_runs_in_compose_with_the_same_command():
    services = _compose()["services"]
    for name, proc in _processes()["processes"].items():
        assert name in services, f"{name} from processes.yml has no compose service"
        assert services[name]["command"] == proc["command"], name


def test_compose_services_use_the_same_environment_variable_names_as_the_local_runner():
    procs = _processes()
    services = _compose()["services"]
    shared = set(procs["environment"])
    for name, proc in procs["processes"].items():
        assert set(services[name]["environment"]) == shared | set(proc["environment"]), name


def test_scalable_services_have_no_container_name_and_no_fixed_host_port():
    services = _compose()["services"]
    for name in _processes()["processes"]:
        svc = services[name]
        assert "container_name" not in svc, name
        for port in svc.get("ports", []):
            published = str(port).rsplit(":", 1)[0]
            # Either no host port, or a range (one host port per replica).
            assert "-" in published or published == str(port), f"{name} publishes a fixed host port {port}"


def test_services_restart_and_report_health():
    services = _compose()["services"]
    for name, svc in services.items():
        if name == "bootstrap":
            assert svc["restart"] == "no"
            continue
        assert svc.get("restart") == "unless-stopped", name
        assert "healthcheck" in svc, name


def test_no_secret_is_committed_in_the_compose_file():
    text = COMPOSE.read_text(encoding="utf-8")
    for svc in _compose()["services"].values():
        for key, value in (svc.get("environment") or {}).items():
            if "PASSWORD" in key or "PASS" in key:
                assert str(value).startswith("${"), key
    for url_key in ("DATABASE_URL", "AMQP_URI", "PG_ADMIN_URL"):
        for svc in _compose()["services"].values():
            value = (svc.get("environment") or {}).get(url_key)
            if value:
                # The password part of the URL must be a required .env variable, never a literal.
                assert re.search(r":\$\{[A-Z_]*PASSWORD:\?[^}]*\}@", value), f"{url_key} carries a literal password"
    assert "guest:guest" not in text


def test_env_example_defines_every_required_variable():
    text = COMPOSE.read_text(encoding="utf-8")
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    example = (REPO / "deploy" / ".env.example").read_text(encoding="utf-8")
    defined = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line and not line.startswith("#")}
    assert required <= defined, required - defined


def test_rabbitmq_enables_management_and_prometheus_plugins_and_keeps_its_data():
    rabbit = _compose()["services"]["rabbitmq"]
    plugins = (REPO / "deploy" / "rabbitmq" / "enabled_plugins").read_text()
    assert "rabbitmq_management" in plugins and "rabbitmq_prometheus" in plugins
    assert any(v.startswith("rabbitmq-data:/var/lib/rabbitmq") for v in rabbit["volumes"])
    assert rabbit["hostname"] == "rabbitmq"


def test_dockerfile_is_multi_stage_non_root_and_installs_from_the_lock():
    text = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2
    assert "pip install -r requirements.lock" in text
    assert "pip install --no-deps ." in text
    user_lines = [line for line in text.splitlines() if line.startswith("USER ")]
    assert user_lines and user_lines[-1].split()[1] not in ("root", "0")
