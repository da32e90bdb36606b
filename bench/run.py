"""`make bench` / `make bench-quick`: start the platform as `make run` does, drive it, stop it, then the baseline;
write bench/results/<timestamp>.json and print a Markdown summary.

    python -m bench.run [--quick] [--skip growth,timers,...]

Exit status: 0 when the report is complete and nothing was lost or duplicated, 2 otherwise (never a speed).
"""
from __future__ import annotations

import services.common  # noqa: F401

import argparse
import functools
import json
import os
import platform as pyplatform
import subprocess
import sys
import time
import traceback
from datetime import datetime, UTC
from pathlib import Path
from typing import Any
from collections.abc import Callable

from bench import growth, httpload, infra, load, measure, profiles, resources, settings, timers
from bench.baseline import hops as baseline
from bench.platform import Platform
from bench.report import markdown
from services.common.config import REPO_ROOT

SECTIONS = ("throughput", "latency", "http", "timers", "growth", "resources", "baseline", "profiles", "exactness")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = 0
    try:
        mem = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))) // 1024
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "services"], cwd=REPO_ROOT, capture_output=True,
                                text=True).stdout.strip())
    with infra.admin(database="postgres") as conn:  # the bench database may not exist yet
        pg = {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in  # type: ignore[index]
              ("server_version", "synchronous_commit", "fsync", "shared_buffers", "autovacuum")}
    rabbit = infra.rabbit("GET", "/overview").json().get("rabbitmq_version")
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "memory_mb": mem, "python": pyplatform.python_version(),
            "kernel": pyplatform.release(), "git_commit": commit, "services_uncommitted_changes": dirty,
            "postgres": pg, "rabbitmq": rabbit}


DURABILITY = ("persistent messages (delivery_mode 2), publisher confirms on every publish (harness, relays, "
              "baseline), quorum queues, synchronous_commit as the server has it (see meta.machine.postgres)")


# ------------------------------------------------------------------------------------------------ ladder
def ladder(kind: str, rates: list[int], sizes: settings.Sizes, work: Path, vhost: str,
           totals: Callable[[], dict[str, int | None]], hop_rates: Callable[[float, float], dict[str, float | None]],
           caught_up: Callable[[int, dict[str, int | None]], bool],
           sampler_counts: Any = None, pids: Callable[[], dict[str, int]] | None = None
           ) -> tuple[list[dict[str, Any]], list[str]]:
    steps: list[dict[str, Any]] = []
    all_ids: list[str] = []
    for rate in rates:
        log(f"{kind}: {rate} requests/s for {sizes.warmup_s + sizes.steady_s:.0f}s")
        base = totals()
        run = load.start_load(f"{kind}{rate}", rate, sizes.warmup_s + sizes.steady_s, sizes.publishers,
                              work / "ids", vhost=vhost)
        sampler = measure.Sampler(vhost, run.published, interval=0.5 if sizes.quick else 2.0,
                                  counts=sampler_counts).start()
        share = resources.MachineShare(pids() if pids else {})
        pub = run.join()
        machine_share = share.stop()
        samples = sampler.stop()
        w0, w1 = pub["t0"] + sizes.warmup_s, pub["t_end"]
        hops = hop_rates(w0, w1)
        trend = measure.backlog_trend(samples, w0, w1, "clocks_started")
        ids = run.external_ids()
        all_ids.extend(ids)
        ok, waited = measure.drained(functools.partial(caught_up, len(ids), base), sizes.drain_s)
        growth_limit = max(1.0, 0.03 * rate)
        backlog_slope = trend["published_minus_clocks_started"]["slope_per_s"]
        held = (pub["publish_rate"] >= 0.95 * rate and pub["unconfirmed"] == 0 and pub["nacked"] == 0
                and all(v is not None and v >= 0.95 * pub["publish_rate"] for v in hops.values())
                and backlog_slope is not None and backlog_slope <= growth_limit and ok)
        step = {"offered_rate": rate, "publish": {k: v for k, v in pub.items() if k not in ("t0", "t_end", "tag")},
                "window_s": round(w1 - w0, 1), "hop_rates_per_s": hops, "backlog": trend,
                "backlog_growth_limit_per_s": growth_limit, "cpu_during_step": machine_share,
                "db_active_backends": measure.waits_summary(samples, w0, w1),
                "drained": ok, "drain_wait_s": waited, "held": held,
                "samples": samples}
        if pids is not None:
            # After each step: /metrics must stop growing once every label set the load can produce exists.
            step["metrics_after_step"] = {"n": len(all_ids), "sizes": resources.metrics_sizes()}
        steps.append(step)
        log(f"{kind}: {rate}/s -> published {pub['publish_rate']}/s, hops {hops}, backlog slope {backlog_slope}, "
            f"drained {ok} in {waited}s, held {held}; CPU {machine_share}")
        if not held:
            break
    return steps, all_ids


def held_rate(steps: list[dict[str, Any]]) -> int | None:
    held = [s["offered_rate"] for s in steps if s["held"]]
    return max(held) if held else None


def best_hop_rate(steps: list[dict[str, Any]]) -> float:
    return max((min(v for v in s["hop_rates_per_s"].values() if v is not None) for s in steps
                if any(v is not None for v in s["hop_rates_per_s"].values())), default=0.0)


# ------------------------------------------------------------------------------------------------ sections
def run_platform(sizes: settings.Sizes, work: Path, report: dict[str, Any], skip: set[str],
                 profile_dir: Path) -> None:
    plat = Platform(log_dir=work / "logs")
    log(f"starting the platform (database {settings.DB}, vhost {settings.VHOST}, HTTP :{settings.HTTP_PORT})")
    try:
        plat.start()
        log(f"platform ready in {plat.started_s:.1f}s")
        report["platform"] = {"start_s": round(plat.started_s, 1), "bench_env": dict(__import__(
            "bench.platform", fromlist=["BENCH_ENV"]).BENCH_ENV), "log_dir": str(work / "logs")}
        pids = plat.pids()
        res: dict[str, Any] = {"metrics_after_0_requests": resources.metrics_sizes(),
                               "idle": resources.idle(pids, 3.0 if sizes.quick else 10.0)}
        peak = resources.PeakSampler(pids).start()
        cpu0 = resources.snapshot(pids)
        published_ids: list[str] = []

        # -- throughput ladder
        steps, ids = ladder("platform", sizes.rates, sizes, work, settings.VHOST, measure.totals, measure.hop_rates,
                            measure.platform_caught_up, pids=plat.pids)
        published_ids += ids
        held = held_rate(steps)
        report["throughput"] = {
            "target_per_s": 1000, "held_rate_per_s": held, "best_all_hop_rate_per_s": best_hop_rate(steps),
            "steady_window_s": sizes.steady_s, "publishers": sizes.publishers, "steps": steps,
            "rule": "held: publishers reached >=95% of the offered rate with every publish confirmed, every hop "
                    "recorded >=95% of the publish rate in the steady window (services' own timestamps), the backlog "
                    "(published - clocks started) grew by <= max(1, 3% of the rate)/s, and the step drained "
                    f"within {sizes.drain_s:.0f}s",
        }

        # -- profiles, under load at the highest held rate (or the first rate)
        if "profiles" not in skip and profiles.available():
            prate = held or sizes.rates[0]
            log(f"profiles: py-spy on each service for {sizes.profile_s:.0f}s at {prate}/s")
            base = measure.totals()
            run = load.start_load("profile", prate, sizes.profile_s + 2, sizes.publishers, work / "ids")
            time.sleep(1.5)
            spies = profiles.start(pids, profile_dir, sizes.profile_s)
            run.join()
            profiles.wait(spies, sizes.profile_s + 30)
            pids_ids = run.external_ids()
            published_ids += pids_ids
            measure.drained(lambda: measure.platform_caught_up(len(pids_ids), base), sizes.drain_s)
            report["profiles"] = {"rate_per_s": prate, "seconds": sizes.profile_s, "sampler": "py-spy "
                                  f"{profiles.RATE}/s --nonblocking (active threads only)", "dir": str(profile_dir),
                                  "services": {n: profiles.top(profile_dir / f"{n}.txt") for n in pids}}
        else:
            report["profiles"] = {"skipped": "py-spy not installed" if not profiles.available() else "--skip"}

        # -- latency at 300/s (or below the held rate when the platform cannot hold 300/s: queueing otherwise)
        if "latency" not in skip:
            capacity = held or best_hop_rate(steps)
            lrate = sizes.latency_rate if capacity >= sizes.latency_rate else max(5, int(capacity * 0.8))
            log(f"latency: {lrate}/s for {sizes.latency_s:.0f}s")
            base = measure.totals()
            run = load.start_load("latency", lrate, sizes.latency_s, sizes.publishers, work / "ids")
            pub = run.join()
            lat_ids = run.external_ids()
            published_ids += lat_ids
            ok, waited = measure.drained(lambda: measure.platform_caught_up(len(lat_ids), base), sizes.drain_s)
            report["latency"] = {"target": "p99 publish -> assigned <= 200 ms at 300/s", "target_rate_per_s":
                                 sizes.latency_rate, "rate_used_per_s": lrate,
                                 "why_rate": None if lrate == sizes.latency_rate else
                                 f"the platform held {capacity}/s: at {sizes.latency_rate}/s the figures would be "
                                 "queueing time of a growing backlog",
                                 "publish": {k: v for k, v in pub.items() if k not in ("t0", "t_end", "tag")},
                                 "drained": ok, "amqp": measure.latencies(lat_ids)}

        # -- exactly once over everything published over AMQP
        log(f"exactness: waiting for {len(published_ids)} requests to be fully processed")
        before_final = measure.totals()
        ok, waited = measure.drained(lambda: measure.platform_caught_up(0, {}) and _all_done(published_ids),
                                     sizes.drain_s * 2, poll=2.0)
        report["exactness"] = measure.exactly_once(published_ids) | {"drained": ok, "final_wait_s": waited,
                                                                     "totals_before_wait": before_final}
        log(f"exactness: ok={report['exactness']['ok']}")
        cpu1 = resources.snapshot(pids)
        res["cpu_seconds_per_1000_requests"] = resources.cpu_per_1000(cpu0, cpu1, len(published_ids))
        res["requests_for_cpu"] = len(published_ids)
        res["metrics_after_n_requests"] = {"n": len(published_ids), "sizes": resources.metrics_sizes()}

        # -- HTTP
        if "http" not in skip and httpload.available():
            report["http"] = http_section(plat, sizes, work)
        elif "http" not in skip:
            report["http"] = {"skipped": "wrk not installed (apt-get install -y wrk)"}

        # -- growth
        if "growth" not in skip:
            report["growth"] = growth_section(plat, sizes)

        # -- timers
        if "timers" not in skip:
            report["timers"] = timers_section(plat, sizes)

        res["metrics_at_end"] = resources.metrics_sizes()
        res["peak_rss_mb"] = peak.stop()
        res["target_rss_mb"] = 120
        res["alive_at_end"] = plat.alive()
        report["resources"] = res
    finally:
        log("stopping the platform")
        plat.stop()


def _all_done(ids: list[str]) -> bool:
    with infra.admin() as conn:
        n = conn.execute("SELECT count(*) FROM intake.requests WHERE source = %s", (settings.SOURCE,)).fetchone()
        if n is None or n[0] < len(ids):
            return False
        for hop in ("assigned", "clocks_started"):
            if (measure.hop_total(conn, hop) or 0) < len(ids):
                return False
    return True


def http_section(plat: Platform, sizes: settings.Sizes, work: Path) -> dict[str, Any]:
    key = plat.keys["all"]
    with infra.admin() as conn:
        numbers = [r[0] for r in conn.execute("SELECT request_no FROM intake.requests WHERE source = %s LIMIT 2000",
                                              (settings.SOURCE,)).fetchall()]
    numbers_file = work / "request_numbers.txt"
    numbers_file.write_text("\n".join(numbers), encoding="utf-8")
    out: dict[str, Any] = {"tool": "wrk (Lua scripts in bench/lua)", "seconds_each": sizes.http_s,
                           "get_by_number": {}, "submit": {}}
    for c in sizes.http_concurrency:
        log(f"http: GET /requests/<no> at concurrency {c}")
        out["get_by_number"][str(c)] = httpload.get_by_number(plat.base_url, key, numbers_file, c, sizes.http_s)
    for c in sizes.http_concurrency:
        log(f"http: POST /requests at concurrency {c}")
        out["submit"][str(c)] = httpload.submit(plat.base_url, key, f"http{c}-{int(time.time())}", c, sizes.http_s)
    return out


def growth_section(plat: Platform, sizes: settings.Sizes) -> dict[str, Any]:
    out: dict[str, Any] = {"method": "rows added to intake.requests by one server-side INSERT ... SELECT over "
                                     "generate_series (superuser), copies of a real registered row", "sizes": {}}
    g = 1
    with infra.admin() as conn:
        for size in sizes.growth_sizes:
            log(f"growth: filling intake.requests to {size} rows")
            added, secs = growth.fill_to(conn, size, g)
            g += added
            log(f"growth: {added} rows in {secs}s; measuring submit and list")
            out["sizes"][str(size)] = {"rows_added": added, "load_s": secs, "stored": growth.stored(conn),
                                       "http_c1": growth.measure(plat.base_url, plat.keys["all"], sizes.growth_s,
                                                                 f"grow{size}-{int(time.time())}"),
                                       "list_plan": growth.list_plan(conn)}
    return out


def timers_section(plat: Platform, sizes: settings.Sizes) -> dict[str, Any]:
    out: dict[str, Any] = {"target": "max lateness <= 1 s; due pass cost flat in the open count",
                           "schema_source": "services/escalation/migrations/0002_escalation.sql (clocks, deadlines)",
                           "due_query_source": "services/escalation/adapters/repository.py due_timers"}
    if not timers.escalation_tables_exist():
        return out | {"status": "not_available", "why": "escalation tables missing"}
    batch = 200
    with infra.admin() as conn:
        tpl = timers.template(conn)
        if tpl is None:
            return out | {"status": "not_available", "why": "no running resolution clock to copy"}
        out["template"] = {k: str(v) for k, v in tpl.items()}
        small = min(10_000, sizes.timer_open)
        log(f"timers: loading {small} open clocks")
        out["load_small_s"] = timers.load_open(conn, tpl, small - sizes.timer_due, "TMRA")
        out["due_pass_small"] = timers.due_pass_cost(conn, batch)
        rest = sizes.timer_open - small
        if rest > 0:
            log(f"timers: loading {rest} more open clocks")
            out["load_large_s"] = timers.load_open(conn, tpl, rest, "TMRB")
            out["due_pass_large"] = timers.due_pass_cost(conn, batch)
        out["lateness"] = {}
        for instances in sizes.timer_instances:
            if instances > 1:
                log(f"timers: starting {instances - 1} more escalation instances")
                plat.start_extra_escalation(instances - 1)
                _wait_consumers("escalation.events", instances, 90)
            prefix = f"DUE{instances}"
            lead = 5.0
            log(f"timers: {sizes.timer_due} clocks due within {sizes.timer_due_window_s:.0f}s, {instances} instance(s)")
            t_first, t_last = timers.load_due(conn, tpl, sizes.timer_due, sizes.timer_due_window_s, lead, prefix)
            done = timers.wait_fired(conn, prefix, t_last, sizes.timer_due_window_s + lead + 90)
            out["lateness"][str(instances)] = timers.lateness(conn, prefix) | {
                "all_fired": done, "open_clocks": timers.open_count(conn), "due_window_s": sizes.timer_due_window_s}
            log(f"timers: {instances} instance(s): {out['lateness'][str(instances)]}")
        plat.stop_extra()
    out["status"] = "measured"
    return out


def _wait_consumers(queue: str, n: int, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            r = infra.rabbit("GET", f"/queues/{settings.VHOST}/{queue}")
            if r.ok and int(r.json().get("consumers") or 0) >= n:
                return True
        except Exception:
            pass
        time.sleep(1)
    return False


def run_baseline(sizes: settings.Sizes, work: Path, report: dict[str, Any]) -> None:
    log(f"baseline: schema baseline in {settings.DB}, vhost {settings.BASELINE_VHOST}")
    infra.reset_vhost(settings.BASELINE_VHOST)
    baseline.setup()
    procs = baseline.start()
    try:
        time.sleep(2.0)

        def totals() -> dict[str, int | None]:
            with infra.admin() as conn:
                return baseline.totals(conn)

        def caught_up(expected: int, since: dict[str, int | None]) -> bool:
            now = totals()
            return all((now[h] or 0) - (since.get(h) or 0) >= expected for h in now)

        steps, ids = ladder("baseline", sizes.baseline_rates, sizes, work, settings.BASELINE_VHOST, totals,
                            baseline.hop_rates, caught_up, sampler_counts=baseline.totals,
                            pids=lambda: {n: p.pid for n, p in procs.items() if p.pid})
        measure.drained(lambda: caught_up(len(ids), {}), sizes.drain_s)
        report["baseline"] = {"what": baseline.__doc__.strip().splitlines()[0] if baseline.__doc__ else "",
                              "held_rate_per_s": held_rate(steps), "best_all_hop_rate_per_s": best_hop_rate(steps),
                              "steps": steps, "exactness": baseline.exactly_once(ids),
                              "alive": {n: p.is_alive() for n, p in procs.items()}}
    finally:
        baseline.stop(procs)
        infra.delete_vhost(settings.BASELINE_VHOST)


def ratio(report: dict[str, Any]) -> dict[str, Any]:
    p = report.get("throughput", {})
    b = report.get("baseline", {})
    out: dict[str, Any] = {"target": 0.5}
    if p.get("held_rate_per_s") and b.get("held_rate_per_s"):
        out["held_rate_ratio"] = round(p["held_rate_per_s"] / b["held_rate_per_s"], 3)
    if p.get("best_all_hop_rate_per_s") and b.get("best_all_hop_rate_per_s"):
        out["best_rate_ratio"] = round(p["best_all_hop_rate_per_s"] / b["best_all_hop_rate_per_s"], 3)
    return out


def complete(report: dict[str, Any], skip: set[str]) -> list[str]:
    return [s for s in SECTIONS if s not in skip and s not in report]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (under 2 minutes): the harness smoke test")
    parser.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {', '.join(SECTIONS)}")
    parser.add_argument("--out", default=None, help="report path (default bench/results/<timestamp>.json)")
    parser.add_argument("--rates", default="",
                        help="comma-separated throughput ladder (requests/s) instead of the mode's")
    parser.add_argument("--steady", type=float, default=0,
                        help="seconds of each steady window instead of the mode's")
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    sizes = settings.Sizes.for_mode(args.quick)
    if args.rates:
        sizes.rates = [int(r) for r in args.rates.split(",")]
    if args.steady:
        sizes.steady_s = args.steady
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    work = REPO_ROOT / "tmp" / "bench" / stamp
    work.mkdir(parents=True, exist_ok=True)
    settings.RESULTS.mkdir(parents=True, exist_ok=True)
    profile_dir = settings.RESULTS / "profiles" / stamp
    out_path = Path(args.out) if args.out else settings.RESULTS / f"{stamp}.json"
    restore_autovacuum, autovacuum_was_off = infra.autovacuum_as_deployed()
    report: dict[str, Any] = {"meta": {"started_at": started.isoformat(), "mode": "quick" if args.quick else "full",
                                       "machine": machine(), "durability": DURABILITY, "sizes": sizes.__dict__,
                                       "skipped": sorted(skip), "database": settings.DB, "vhost": settings.VHOST,
                                       "autovacuum_turned_on_for_the_run": autovacuum_was_off}}
    t0 = time.monotonic()
    errors: list[str] = []
    try:
        try:
            run_platform(sizes, work, report, skip, profile_dir)
        except Exception:
            errors.append(traceback.format_exc())
            log("platform phase failed:\n" + errors[-1])
        if "baseline" not in skip:
            try:
                run_baseline(sizes, work, report)
            except Exception:
                errors.append(traceback.format_exc())
                log("baseline phase failed:\n" + errors[-1])
    finally:
        restore_autovacuum()
    report["ratio_to_baseline"] = ratio(report)
    report["meta"]["duration_s"] = round(time.monotonic() - t0, 1)
    report["meta"]["errors"] = errors
    missing = complete(report, skip)
    report["meta"]["missing_sections"] = missing
    lost_ok = report.get("exactness", {}).get("ok", False) and \
        ("baseline" in skip or report.get("baseline", {}).get("exactness", {}).get("ok", False))
    report["meta"]["nothing_lost_or_duplicated"] = bool(lost_ok)
    out_path.write_text(json.dumps(report, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    print(markdown(report))
    print(f"\nreport: {out_path}")
    return 0 if not missing and lost_ok and not errors else 2


if __name__ == "__main__":
    sys.exit(main())
