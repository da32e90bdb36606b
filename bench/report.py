"""The Markdown summary printed at the end of a run (the JSON report holds everything)."""
from __future__ import annotations

from typing import Any


def _g(d: Any, *path: Any, default: Any = "n/a") -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d if d is not None else default


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def markdown(r: dict[str, Any]) -> str:
    m = r.get("meta", {})
    mc = m.get("machine", {})
    lines = [f"## Benchmark ({m.get('mode')}) {m.get('started_at', '')[:19]}Z, {mc.get('cpus')} CPUs "
             f"({mc.get('cpu_model', '')}), {mc.get('memory_mb')} MB, commit {mc.get('git_commit')}"
             f"{' + uncommitted services' if mc.get('services_uncommitted_changes') else ''}, "
             f"{m.get('duration_s')} s", "",
             "| Measure | Target | Measured | Met |", "|---|---|---|---|"]
    tp = r.get("throughput", {})
    held = tp.get("held_rate_per_s")
    lines.append(f"| Throughput held, all hops (req/s) | >= 1000 | {held or 'none held'} "
                 f"(best all-hop rate {tp.get('best_all_hop_rate_per_s', 'n/a')}) | "
                 f"{_met(held is not None and held >= 1000) if tp else 'n/a'} |")
    ex = r.get("exactness", {})
    lines.append(f"| Lost / duplicated (platform, {ex.get('published', 0)} published) | 0 | "
                 f"{_exact_text(ex)} | {_met(ex.get('ok')) if ex else 'n/a'} |")
    lat = r.get("latency", {})
    if lat:
        a = _g(lat, "amqp", "assigned", default={})
        p99 = a.get("p99_ms") if isinstance(a, dict) else None
        lines.append(f"| Publish -> assigned p50/p95/p99/max ms at {lat.get('rate_used_per_s')}/s "
                     "| p99 <= 200 at 300/s | "
                     f"{_g(a, 'p50_ms')}/{_g(a, 'p95_ms')}/{p99}/{_g(a, 'max_ms')} | "
                     f"{_met(p99 is not None and p99 <= 200 and lat.get('rate_used_per_s') == 300)} |")
        for hop in ("registered", "all_clocks_started"):
            h = _g(lat, "amqp", hop, default={})
            lines.append(f"| Publish -> {hop} p50/p95/p99/max ms | | {_g(h, 'p50_ms')}/{_g(h, 'p95_ms')}/"
                         f"{_g(h, 'p99_ms')}/{_g(h, 'max_ms')} | |")
    http = r.get("http", {})
    for kind in ("submit", "get_by_number"):
        for c, v in (http.get(kind) or {}).items():
            lines.append(f"| HTTP {kind} c={c}: p50/p95/p99 ms, req/s, non-2xx | | {_g(v, 'p50_ms')}/{_g(v, 'p95_ms')}/"
                         f"{_g(v, 'p99_ms')}, {_g(v, 'throughput_per_s')}/s, {_g(v, 'non_2xx')} | |")
    tm = r.get("timers", {})
    if tm:
        if tm.get("status") != "measured":
            lines.append(f"| Timers | | {tm.get('status')}: {tm.get('why', '')} | n/a |")
        for n, v in (tm.get("lateness") or {}).items():
            mx = v.get("max_ms")
            lines.append(f"| Timer lateness, {n} instance(s), {v.get('fired')} fired of {v.get('open_clocks')} open: "
                         f"p50/p99/max ms | max <= 1000 | {_g(v, 'p50_ms')}/{_g(v, 'p99_ms')}/{mx} | "
                         f"{_met(mx is not None and mx <= 1000 and v.get('all_fired'))} |")
        s, b = tm.get("due_pass_small", {}), tm.get("due_pass_large", {})
        if s:
            flat = 3 * max(1.0, s.get("execution_ms_median") or 0)
            lines.append(f"| Due pass (batch {s.get('batch')}) ms: {s.get('open_clocks')} vs "
                         f"{b.get('open_clocks', 'n/a')} open | flat | {s.get('execution_ms_median')} vs "
                         f"{b.get('execution_ms_median', 'n/a')} | "
                         f"{_met(bool(b) and b.get('execution_ms_median', 1e9) <= flat)} |")
    gr = r.get("growth", {})
    for v in (gr.get("sizes") or {}).values():
        h = v.get("http_c1", {})
        lines.append(f"| {v.get('stored')} requests stored: submit / list / list filtered / page 200, p50 ms (c=1) | | "
                     f"{_g(h, 'submit', 'p50_ms')} / {_g(h, 'list_newest', 'p50_ms')} / "
                     f"{_g(h, 'list_property_channel', 'p50_ms')} / {_g(h, 'list_page_200', 'p50_ms')} | |")
    res = r.get("resources", {})
    if res:
        idle, peak = res.get("idle", {}), res.get("peak_rss_mb", {})
        cpu = res.get("cpu_seconds_per_1000_requests", {})
        m0 = res.get("metrics_after_0_requests", {})
        mn = _g(res, "metrics_after_n_requests", "sizes", default={})
        n = _g(res, "metrics_after_n_requests", "n")
        first = next((s["metrics_after_step"] for s in tp.get("steps", []) if "metrics_after_step" in s), None)
        at = f"0 / {first['n']} / {n}" if first else f"0 / {n}"
        for svc in idle:
            pk = peak.get(svc)
            sizes = [_g(m0, svc, "bytes"), *([_g(first["sizes"], svc, "bytes")] if first else []),
                     _g(mn, svc, "bytes")]
            lines.append(f"| {svc}: RSS idle/peak MB, idle CPU %, CPU s per 1000 req, /metrics bytes at {at} req | "
                         f"RSS <= 120 | {_g(idle, svc, 'rss_mb')}/{pk}, {_g(idle, svc, 'cpu_percent')}%, "
                         f"{cpu.get(svc, 'n/a')}, {' / '.join(str(x) for x in sizes)} | "
                         f"{_met(pk is not None and pk <= 120)} |")
    bl = r.get("baseline", {})
    ra = r.get("ratio_to_baseline", {})
    if bl:
        lines.append(f"| Baseline held (req/s), lost | | {bl.get('held_rate_per_s') or 'none held'} (best "
                     f"{bl.get('best_all_hop_rate_per_s')}), ok={_g(bl, 'exactness', 'ok')} | |")
    met = _met(ra["held_rate_ratio"] >= 0.5) if "held_rate_ratio" in ra else "n/a"
    lines.append(f"| Platform / baseline | >= 0.5 | held {ra.get('held_rate_ratio', 'n/a')}, best "
                 f"{ra.get('best_rate_ratio', 'n/a')} | {met} |")
    for name, steps in (("platform", tp.get("steps", [])), ("baseline", bl.get("steps", []))):
        if not steps:
            continue
        lines += ["", f"### {name} ladder", "",
                  "| offered/s | published/s | registered/s | routed/s | assigned/s | clocks/s | backlog slope/s | "
                  "drained | held |", "|---|---|---|---|---|---|---|---|---|"]
        for s in steps:
            h = s["hop_rates_per_s"]
            slope = _g(s, "backlog", "published_minus_clocks_started", "slope_per_s")
            lines.append(f"| {s['offered_rate']} | {s['publish']['publish_rate']} | {h.get('registered')} | "
                         f"{h.get('routed', '-')} | {h.get('assigned')} | {h.get('clocks_started')} | {slope} | "
                         f"{s['drained']} ({s['drain_wait_s']} s) | {s['held']} |")
    prof = r.get("profiles", {}).get("services", {})
    if prof:
        lines += ["", "### top self time (py-spy)", ""]
        for svc, p in prof.items():
            tops = ", ".join(f"{t['frame']} {t['percent']}%" for t in (p.get("top_self") or [])[:4])
            lines.append(f"- {svc} ({p.get('samples', 0)} samples): {tops}")
    if m.get("errors"):
        lines += ["", f"**errors**: {len(m['errors'])} (see meta.errors)"]
    if m.get("missing_sections"):
        lines += ["", f"**missing sections**: {', '.join(m['missing_sections'])}"]
    return "\n".join(lines)


def _exact_text(ex: dict[str, Any]) -> str:
    if not ex:
        return "n/a"
    parts = []
    for hop, h in (ex.get("hops") or {}).items():
        t = h.get("timeline", {})
        lost = h.get("lost", t.get("lost", 0)) or 0
        dup = t.get("duplicated_requests", 0) + h.get("duplicated_clock_starts", 0)
        err = " error" if "error" in h else ""
        parts.append(f"{hop} {lost}/{dup}{err}")
    return "lost/dup: " + ", ".join(parts)
