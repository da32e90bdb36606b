"""HTTP latency with wrk (Debian package), bounded in time: submit (POST /requests) and get-by-number."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from services.common.config import REPO_ROOT

LUA_DIR = REPO_ROOT / "bench" / "lua"


def available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, script: str, args: list[str], concurrency: int, seconds: float) -> dict[str, Any]:
    threads = max(1, min(concurrency, 2))
    cmd = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{max(1, int(round(seconds)))}s",
           "--timeout", "10s", "-s", str(LUA_DIR / script), url, "--", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"^BENCH_JSON (\{.*\})$", proc.stdout, re.M)
    if not m:
        return {"error": (proc.stderr or proc.stdout)[-500:], "concurrency": concurrency}
    raw = json.loads(m.group(1))
    secs = raw["duration_us"] / 1e6
    errors = raw["errors_connect"] + raw["errors_read"] + raw["errors_write"] + raw["errors_timeout"]
    return {
        "concurrency": concurrency, "requests": raw["requests"], "seconds": round(secs, 2),
        "throughput_per_s": round(raw["requests"] / secs, 1) if secs else None,
        "p50_ms": raw["p50_us"] / 1000, "p95_ms": raw["p95_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000, "non_2xx": raw["errors_status"], "socket_errors": errors,
    }


def submit(base_url: str, key: str, tag: str, concurrency: int, seconds: float) -> dict[str, Any]:
    return run_wrk(f"{base_url}/requests", "submit.lua", [key, tag], concurrency, seconds)


def get_by_number(base_url: str, key: str, numbers_file: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    return run_wrk(f"{base_url}/requests", "get.lua", [key, str(numbers_file)], concurrency, seconds)


def get_path(base_url: str, key: str, path: str, concurrency: int, seconds: float) -> dict[str, Any]:
    return run_wrk(f"{base_url}{path}", "get_path.lua", [key], concurrency, seconds)
