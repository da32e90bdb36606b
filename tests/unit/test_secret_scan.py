"""The CI secret scan (.ci/secret-scan, issue 10 item 6): the repository is clean, and a planted secret is caught.

Planted secrets are assembled at run time, so this file itself holds none.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.common.config import REPO_ROOT

SCAN = REPO_ROOT / ".ci" / "secret-scan"
RANDOM_43 = "Q7f" + "x9K2mPq" * 5 + "Ab-_Z"  # 43 characters of the base64url alphabet


def run(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCAN), str(root)], capture_output=True, text=True, timeout=120)


def test_the_repository_has_no_secret() -> None:
    result = run(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


PLANTED = {
    "private key": "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEow...\n",
    "openssh key": "-----BEGIN " + "OPENSSH PRIVATE KEY-----\n",
    "aws id": "key = '" + "AKIA" + "IOSFODNN7EXAMPLE" + "'\n",
    "aws secret": "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY\n",
    "psk": "X_API_KEY=" + "psk_" + "abcdefgh1234_" + RANDOM_43 + "\n",
    "url password": "DATABASE_URL=postgresql://intake:" + "hunter2@db.example.com:5432/propsvc\n",
    "url password on localhost": "amqp://admin:" + "s3cret@127.0.0.1:5672/\n",
}


@pytest.mark.parametrize("name", list(PLANTED))
def test_a_planted_secret_is_caught_without_being_echoed(tmp_path: Path, name: str) -> None:
    (tmp_path / "clean.py").write_text("URL = 'postgresql://intake:intake@127.0.0.1:5432/propsvc'\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "config.env").write_text("# settings\n" + PLANTED[name])
    result = run(tmp_path)
    assert result.returncode == 1, result.stdout
    assert "sub/config.env:2:" in result.stdout
    assert "clean.py" not in result.stdout
    assert "hunter2" not in result.stdout and RANDOM_43 not in result.stdout


@pytest.mark.parametrize("line", [
    "postgresql://intake:intake@127.0.0.1:5432/propsvc",
    "pyamqp://guest:guest@localhost:5672/",
    "f'pyamqp://guest:guest@{AMQP_HOST}/{vhost}'",
    "postgresql://user:${DB_PASSWORD}@db.example.com/x",
    "https://user:<password>@example.com/",
    "https://example.com/path?x=1",
])
def test_documented_local_defaults_and_placeholders_pass(tmp_path: Path, line: str) -> None:
    (tmp_path / "settings.txt").write_text(line + "\n")
    assert run(tmp_path).returncode == 0
