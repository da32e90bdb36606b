"""`make run`: bootstrap the database, declare the broker topology, start every process in
deploy/processes.yml in the foreground; Ctrl-C (or SIGTERM) stops them all.

The end-to-end tests and `make bench` start the platform through `start()` here, so they run the
very commands (and environment) that `make run` and the compose file run.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml

from services.common.config import REPO_ROOT, expand

PROCESSES_FILE = REPO_ROOT / "deploy" / "processes.yml"


@dataclass
class ProcessSpec:
    name: str
    command: str
    environment: dict[str, str]


def process_specs(path: Path = PROCESSES_FILE) -> list[ProcessSpec]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    shared = {k: expand(str(v)) for k, v in (doc.get("environment") or {}).items()}
    return [
        ProcessSpec(name, spec["command"],
                    {**shared, **{k: expand(str(v)) for k, v in (spec.get("environment") or {}).items()}})
        for name, spec in doc["processes"].items()
    ]


def command_argv(spec: ProcessSpec) -> list[str]:
    argv = spec.command.split()
    # The venv's own nameko, whatever PATH says.
    if argv[0] == "nameko":
        argv = [sys.executable, "-m", "nameko", *argv[1:]]
    return argv


def start(names: list[str] | None = None, env: dict[str, str] | None = None,
          log_dir: Path | None = None, per_process_env: dict[str, dict[str, str]] | None = None
          ) -> dict[str, subprocess.Popen[bytes]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for spec in process_specs():
        if names and spec.name not in names:
            continue
        full_env = dict(os.environ)
        full_env.update(env or {})
        # Values already in the environment win, as in compose: ops override, processes.yml defaults.
        for key, value in spec.environment.items():
            full_env.setdefault(key, value)
        full_env.update((per_process_env or {}).get(spec.name, {}))
        full_env["PYTHONUNBUFFERED"] = "1"
        out: IO[bytes] | int | None = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            out = open(log_dir / f"{spec.name}.log", "ab")
        procs[spec.name] = subprocess.Popen(command_argv(spec), cwd=REPO_ROOT, env=full_env, stdout=out,
                                            stderr=subprocess.STDOUT if out else None)
    return procs


def stop(procs: dict[str, subprocess.Popen[bytes]], timeout: float = 15) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + timeout
    for p in procs.values():
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main() -> None:
    from services.common.bootstrap import bootstrap
    from services.common import topology

    database = os.environ.get("PROPSVC_DB", "propsvc")
    bootstrap(database)
    topology.declare(os.environ.get("AMQP_URI", "pyamqp://guest:guest@127.0.0.1:5672/"))
    procs = start()
    print("platform running: API http://127.0.0.1:8000 (OpenAPI at /openapi.json); Ctrl-C stops", flush=True)

    def shutdown(*_: object) -> None:
        stop(procs)
        sys.exit(0)

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    # A process that exits is started again, as compose's `restart: unless-stopped` does, with a growing
    # pause while it keeps failing; one broker blip must not take the whole platform down.
    backoff = {name: 1.0 for name in procs}
    started_at = {name: time.monotonic() for name in procs}
    while True:
        for name, p in list(procs.items()):
            if p.poll() is None:
                if time.monotonic() - started_at[name] > 60:
                    backoff[name] = 1.0
                continue
            print(f"{name} exited with {p.returncode}; restarting in {backoff[name]:.0f}s", flush=True)
            time.sleep(backoff[name])
            backoff[name] = min(backoff[name] * 2, 30.0)
            procs[name] = start([name])[name]
            started_at[name] = time.monotonic()
        time.sleep(0.5)


if __name__ == "__main__":
    main()
