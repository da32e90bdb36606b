"""py-spy profiles of each service while load runs: a flame graph (SVG) and the collapsed stacks, from which the
report takes the functions with the most samples (self and total)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RATE = 50  # samples per second; --nonblocking: the service is never paused to be sampled


def _py_spy() -> str | None:
    # Installed from requirements.lock into the virtualenv, whose bin/ `make bench` does not put on PATH.
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def available() -> bool:
    return _py_spy() is not None


def start(pids: dict[str, int], out_dir: Path, seconds: float) -> list[subprocess.Popen[bytes]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    exe = _py_spy() or "py-spy"
    for name, pid in pids.items():
        for fmt, ext in (("flamegraph", "svg"), ("raw", "txt")):
            procs.append(subprocess.Popen(
                [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(RATE),
                 "--nonblocking", "--format", fmt, "-o", str(out_dir / f"{name}.{ext}")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def wait(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()


def _frame(f: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)": lines merged, so a function is one entry
    name, _, rest = f.partition(" (")
    path = rest.rstrip(")").rsplit(":", 1)[0]
    short = "/".join(path.split("/")[-2:])
    return f"{name} ({short})"


def top(raw_file: Path, n: int = 12) -> dict[str, Any]:
    if not raw_file.exists():
        return {"error": "no profile"}
    self_c: Counter[str] = Counter()
    total_c: Counter[str] = Counter()
    samples = 0
    idle = 0
    for line in raw_file.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        frames = [_frame(f) for f in stack.split(";") if f and not f.startswith("process ") and
                  not f.startswith("thread ")]
        if not frames:
            continue
        samples += k
        leaf = frames[-1]
        if any(s in leaf for s in ("hub.py", "epolls.py", "poll (", "select (", "wait (")):
            idle += k
        self_c[leaf] += k
        for f in set(frames):
            total_c[f] += k

    def pct(c: int) -> float:
        return round(100 * c / samples, 1) if samples else 0.0

    return {"samples": samples, "idle_wait_percent": pct(idle),
            "top_self": [{"frame": f, "percent": pct(c)} for f, c in self_c.most_common(n)],
            "top_total": [{"frame": f, "percent": pct(c)} for f, c in total_c.most_common(n * 2)
                          if not f.startswith(("<module>", "_bootstrap", "run (", "main ("))][:n]}
