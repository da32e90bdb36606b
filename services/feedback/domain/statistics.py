"""Monthly and quarterly statistics for management (001 §4.10: the customer-service department counts and analyses
the month's requests at month end), computed over plain records the repository fills.

Pure computation: records in, a report out, rendered as a JSON-ready dict, CSV text, or a self-contained HTML page
with inline SVG bar charts (no script, no external resource) that a manager can open from disk or mail.
"""
from __future__ import annotations

import csv
import html
import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from collections.abc import Iterable, Mapping, Sequence
from uuid import UUID

from services.common.domain import DomainError, utc
from services.feedback.domain.events import MonthlyReportPublished
from services.feedback.domain.policy import SATISFACTION_LEVELS, FeedbackPolicy

# Months and quarters are the company's, in Beijing time; China has had no daylight saving since 1991, so a fixed
# offset is exact and keeps this module free of the tz database.
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
UNASSIGNED = "unassigned"


# --- the records the repository fills --------------------------------------------------------------------------

@dataclass(frozen=True)
class RequestRecord:
    request_no: str
    property_id: str
    category: str  # the class: repair, complaint, ...
    channel: str
    registered_at: datetime
    subcategory: str | None = None
    department: str | None = None
    building: str | None = None
    unit: str | None = None
    area: str | None = None
    complaint_valid: bool | None = None
    paid_service: bool = False


@dataclass(frozen=True)
class ClockRecord:
    """A clock that was met or breached (running clocks are not counted) in the month of `settled_at`."""

    request_no: str
    clock: str
    outcome: str  # met | breached
    settled_at: datetime
    property_id: str | None = None


@dataclass(frozen=True)
class VisitRecord:
    """A required return visit, counted in the month its work was resolved."""

    request_no: str
    property_id: str
    reason: str  # valid_complaint | paid_service | sampled
    state: str  # scheduled | done | failed
    resolved_at: datetime
    due_at: datetime
    done_at: datetime | None = None


@dataclass(frozen=True)
class SatisfactionRecord:
    request_no: str
    property_id: str
    level: str
    score: int
    recorded_at: datetime
    department: str | None = None


@dataclass(frozen=True)
class PraiseRecord:
    property_id: str
    department: str
    received_at: datetime
    staff_id: str | None = None


# --- periods ---------------------------------------------------------------------------------------------------

def month_bounds(period: str, tz: timezone = CHINA_TZ) -> tuple[datetime, datetime]:
    try:
        y, m = (int(p) for p in period.split("-"))
        if len(period) != 7 or not 1 <= m <= 12:
            raise ValueError
    except ValueError:
        raise DomainError(f"period {period!r} is not YYYY-MM", field="period") from None
    start = datetime(y, m, 1, tzinfo=tz)
    end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=tz)
    return start, end


def quarter_bounds(quarter: str, tz: timezone = CHINA_TZ) -> tuple[datetime, datetime]:
    try:
        y_s, q_s = quarter.split("-Q")
        y, q = int(y_s), int(q_s)
        if len(y_s) != 4 or not 1 <= q <= 4:
            raise ValueError
    except ValueError:
        raise DomainError(f"quarter {quarter!r} is not YYYY-Qn", field="quarter") from None
    start = datetime(y, 3 * q - 2, 1, tzinfo=tz)
    end = datetime(y + (q == 4), (3 * q) % 12 + 1, 1, tzinfo=tz)
    return start, end


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _counts(values: Iterable[str]) -> dict[str, int]:
    """Counts ordered largest first, then by name, so reports read the same every time."""
    c = Counter(values)
    return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


# --- monthly report --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MonthlyReport:
    period: str
    property_id: str | None
    generated_at: datetime
    requests_total: int
    requests_by_class: dict[str, int]
    requests_by_channel: dict[str, int]
    requests_by_property: dict[str, int]
    requests_by_department: dict[str, int]
    clocks: dict[str, dict[str, Any]]  # clock -> {met, breached, attainment}
    return_visits: dict[str, Any]
    satisfaction: dict[str, Any]
    complaints: dict[str, Any]
    praise: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "property_id": self.property_id,
            "generated_at": self.generated_at.isoformat(),
            "requests": {"total": self.requests_total, "by_class": self.requests_by_class,
                         "by_channel": self.requests_by_channel, "by_property": self.requests_by_property,
                         "by_department": self.requests_by_department},
            "clocks": self.clocks,
            "return_visits": self.return_visits,
            "satisfaction": self.satisfaction,
            "complaints": self.complaints,
            "praise": self.praise,
        }

    def sections(self) -> list[Section]:
        rv, sat, cp, pr = self.return_visits, self.satisfaction, self.complaints, self.praise
        return [
            Section("summary", "概要 Summary", ["metric", "value", "target"], [
                ["requests_total", self.requests_total, None],
                ["return_visit_rate", rv["rate"], rv["target"]],
                ["satisfaction_rate", sat["satisfaction_rate"], None],
                ["valid_complaint_rate", cp["rate"], cp["target"]],
                ["praise_total", pr["total"], None],
            ]),
            Section("requests_by_class", "按类别 Requests by class", ["class", "requests"],
                    [[k, v] for k, v in self.requests_by_class.items()], chart=1),
            Section("requests_by_channel", "按渠道 Requests by channel", ["channel", "requests"],
                    [[k, v] for k, v in self.requests_by_channel.items()], chart=1),
            Section("requests_by_property", "按项目 Requests by property", ["property", "requests"],
                    [[k, v] for k, v in self.requests_by_property.items()], chart=1),
            Section("requests_by_department", "按部门 Requests by department", ["department", "requests"],
                    [[k, v] for k, v in self.requests_by_department.items()], chart=1),
            Section("clock_attainment", "时限达标率 Clock attainment", ["clock", "met", "breached", "attainment"],
                    [[k, v["met"], v["breached"], v["attainment"]] for k, v in self.clocks.items()],
                    chart=3, chart_max=1.0),
            Section("return_visits", "回访率 Return visits (target 100%)",
                    ["reason", "required", "done", "done_on_time", "failed", "pending", "rate"],
                    [[k, v["required"], v["done"], v["done_on_time"], v["failed"], v["pending"], v["rate"]]
                     for k, v in {**rv["by_reason"], "total": rv}.items()], chart=6, chart_max=1.0),
            Section("satisfaction", "满意度 Satisfaction", ["level", "count", "share"],
                    [[lv, sat["distribution"][lv], _ratio(sat["distribution"][lv], sat["total"])]
                     for lv in SATISFACTION_LEVELS], chart=1),
            Section("valid_complaints", "有效投诉率 Valid complaints per household (target < 1%)",
                    ["property", "valid_complaints", "households", "rate"],
                    [[k, v["valid_complaints"], v["households"], v["rate"]] for k, v in cp["by_property"].items()],
                    chart=3),
            Section("praise_by_department", "表扬 Praise by department", ["department", "praises"],
                    [[k, v] for k, v in pr["by_department"].items()], chart=1),
            Section("praise_by_staff", "表扬 Praise by staff", ["staff", "praises"],
                    [[k, v] for k, v in pr["by_staff"].items()], chart=1),
        ]

    def to_csv(self) -> str:
        return sections_to_csv(self.sections())

    def to_html(self) -> str:
        scope = f" · {self.property_id}" if self.property_id else ""
        return sections_to_html(f"客户服务月报 Monthly service report {self.period}{scope}", self.generated_at,
                                self.sections())

    def published(self, report_id: UUID, *, now: datetime) -> MonthlyReportPublished:
        return MonthlyReportPublished(report_id, self.period, self.property_id, utc(now), self.requests_total,
                                      self.return_visits["rate"], self.satisfaction["satisfaction_rate"],
                                      self.complaints["rate"], self.praise["total"])


def monthly_report(
    period: str,
    *,
    requests: Iterable[RequestRecord],
    clocks: Iterable[ClockRecord] = (),
    visits: Iterable[VisitRecord] = (),
    satisfactions: Iterable[SatisfactionRecord] = (),
    praises: Iterable[PraiseRecord] = (),
    households: Mapping[str, int],
    policy: FeedbackPolicy,
    generated_at: datetime,
    property_id: str | None = None,
    tz: timezone = CHINA_TZ,
) -> MonthlyReport:
    """The month's report. Records outside the month (by each record's own timestamp) or outside `property_id`
    (when given) are ignored, so the repository may over-fetch safely."""
    start, end = month_bounds(period, tz)

    def inside(ts: datetime, pid: str | None) -> bool:
        return start <= utc(ts) < end and (property_id is None or pid == property_id)

    reqs = [r for r in requests if inside(r.registered_at, r.property_id)]
    req_props = {r.request_no: r.property_id for r in reqs}
    clks = [c for c in clocks if c.outcome in ("met", "breached")
            and inside(c.settled_at, c.property_id if c.property_id is not None else req_props.get(c.request_no))]
    vis = [v for v in visits if inside(v.resolved_at, v.property_id)]
    sats = [s for s in satisfactions if inside(s.recorded_at, s.property_id)]
    prs = [p for p in praises if inside(p.received_at, p.property_id)]

    clock_stats: dict[str, dict[str, Any]] = {}
    for name in sorted({c.clock for c in clks}):
        met = sum(1 for c in clks if c.clock == name and c.outcome == "met")
        breached = sum(1 for c in clks if c.clock == name and c.outcome == "breached")
        clock_stats[name] = {"met": met, "breached": breached, "attainment": _ratio(met, met + breached)}

    def visit_counts(vs: Sequence[VisitRecord]) -> dict[str, Any]:
        done = [v for v in vs if v.state == "done"]
        return {
            "required": len(vs),
            "done": len(done),
            "done_on_time": sum(1 for v in done if v.done_at is not None and v.done_at <= v.due_at),
            "failed": sum(1 for v in vs if v.state == "failed"),
            "pending": sum(1 for v in vs if v.state == "scheduled"),
            "rate": _ratio(len(done), len(vs)),
        }

    rv: dict[str, Any] = visit_counts(vis)
    rv["by_reason"] = {reason: visit_counts([v for v in vis if v.reason == reason])
                       for reason in sorted({v.reason for v in vis})}
    rv["target"] = policy.return_visit_rate_target
    rv["meets_target"] = rv["rate"] is not None and rv["rate"] >= policy.return_visit_rate_target

    dist = {lv: sum(1 for s in sats if s.level == lv) for lv in SATISFACTION_LEVELS}
    satisfaction = {
        "total": len(sats),
        "distribution": dist,
        # The usual 满意率 of the trade: satisfied and basically satisfied together.
        "satisfaction_rate": _ratio(dist["satisfied"] + dist["basically_satisfied"], len(sats)),
        "satisfied_rate": _ratio(dist["satisfied"], len(sats)),
        "mean_score": round(sum(s.score for s in sats) / len(sats), 2) if sats else None,
    }

    valid = [r for r in reqs if r.category == "complaint" and r.complaint_valid]
    props = sorted(set(households) if property_id is None else {property_id})
    by_prop = {}
    for pid in props:
        n_valid = sum(1 for r in valid if r.property_id == pid)
        hh = households.get(pid, 0)
        by_prop[pid] = {"valid_complaints": n_valid, "households": hh, "rate": _ratio(n_valid, hh)}
    total_hh = sum(households.get(pid, 0) for pid in props)
    complaints: dict[str, Any] = {
        "complaints": sum(1 for r in reqs if r.category == "complaint"),
        "valid_complaints": len(valid),
        "households": total_hh,
        "rate": _ratio(len(valid), total_hh),
        "target": policy.valid_complaint_rate_target,
        "by_property": by_prop,
    }
    complaint_rate = _ratio(len(valid), total_hh)
    complaints["meets_target"] = complaint_rate is not None and complaint_rate < policy.valid_complaint_rate_target

    praise = {
        "total": len(prs),
        "by_department": _counts(p.department for p in prs),
        "by_staff": _counts(p.staff_id for p in prs if p.staff_id),
    }

    return MonthlyReport(
        period=period,
        property_id=property_id,
        generated_at=utc(generated_at),
        requests_total=len(reqs),
        requests_by_class=_counts(r.category for r in reqs),
        requests_by_channel=_counts(r.channel for r in reqs),
        requests_by_property=_counts(r.property_id for r in reqs),
        requests_by_department=_counts(r.department or UNASSIGNED for r in reqs),
        clocks=clock_stats,
        return_visits=rv,
        satisfaction=satisfaction,
        complaints=complaints,
        praise=praise,
    )


# --- quarterly recurring problems ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecurringProblem:
    rank: int
    property_id: str
    building: str | None
    place: str  # the unit, or the public area when there is no unit
    subcategory: str
    count: int
    request_nos: list[str]
    first_at: datetime
    last_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "property_id": self.property_id, "building": self.building, "place": self.place,
                "subcategory": self.subcategory, "count": self.count, "request_nos": list(self.request_nos),
                "first_at": _iso(self.first_at), "last_at": _iso(self.last_at)}


@dataclass(frozen=True)
class QuarterlyReport:
    quarter: str
    property_id: str | None
    generated_at: datetime
    min_occurrences: int
    recurring: list[RecurringProblem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"quarter": self.quarter, "property_id": self.property_id,
                "generated_at": self.generated_at.isoformat(), "min_occurrences": self.min_occurrences,
                "recurring_problems": [p.to_dict() for p in self.recurring]}

    def sections(self) -> list[Section]:
        return [Section(
            "recurring_problems", f"重复发生的问题 Recurring problems (≥ {self.min_occurrences} times)",
            ["problem", "rank", "count", "first_at", "last_at", "requests"],
            [[f"{p.property_id} {p.building or ''} {p.place} · {p.subcategory}".replace("  ", " "), p.rank, p.count,
              _iso(p.first_at), _iso(p.last_at), " ".join(p.request_nos)] for p in self.recurring],
            chart=2,
        )]

    def to_csv(self) -> str:
        return sections_to_csv(self.sections())

    def to_html(self) -> str:
        scope = f" · {self.property_id}" if self.property_id else ""
        return sections_to_html(f"季度重复问题 Quarterly recurring problems {self.quarter}{scope}", self.generated_at,
                                self.sections())


def quarterly_report(quarter: str, *, requests: Iterable[RequestRecord], generated_at: datetime,
                     property_id: str | None = None, min_occurrences: int = 2,
                     tz: timezone = CHINA_TZ) -> QuarterlyReport:
    """Requests of the quarter grouped by (property, building, unit or area, subclass), kept when they occur at
    least `min_occurrences` times, ranked by count, then by the most recent occurrence."""
    if min_occurrences < 2:
        raise DomainError("a problem recurs from its second occurrence", field="min_occurrences")
    start, end = quarter_bounds(quarter, tz)
    groups: dict[tuple[str, str | None, str, str], list[RequestRecord]] = defaultdict(list)
    for r in requests:
        place = r.unit or r.area
        if not (start <= utc(r.registered_at) < end) or not r.subcategory or not place:
            continue
        if property_id is not None and r.property_id != property_id:
            continue
        groups[(r.property_id, r.building, place, r.subcategory)].append(r)
    rows = []
    for (pid, building, place, sub), rs in groups.items():
        if len(rs) < min_occurrences:
            continue
        rs.sort(key=lambda r: (utc(r.registered_at), r.request_no))
        rows.append((pid, building, place, sub, rs))
    rows.sort(key=lambda t: (-len(t[4]), -utc(t[4][-1].registered_at).timestamp(), t[0], t[1] or "", t[2], t[3]))
    recurring = [
        RecurringProblem(i + 1, pid, building, place, sub, len(rs), [r.request_no for r in rs],
                         utc(rs[0].registered_at), utc(rs[-1].registered_at))
        for i, (pid, building, place, sub, rs) in enumerate(rows)
    ]
    return QuarterlyReport(quarter, property_id, utc(generated_at), min_occurrences, recurring)


# --- rendering -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Section:
    """One table of a report; `chart` names the numeric column drawn as bars (None: no chart)."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    chart: int | None = None
    chart_max: float | None = None


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def sections_to_csv(sections: Sequence[Section]) -> str:
    """Long format (section, item, metric, value): one file, every table, easy to pivot in a spreadsheet."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "item", "metric", "value"])
    for s in sections:
        for row in s.rows:
            for col, value in zip(s.columns[1:], row[1:], strict=True):
                w.writerow([s.name, _cell(row[0]), col, _cell(value)])
    return buf.getvalue()


def _fmt(v: Any, column: str) -> str:
    if isinstance(v, float) and (column in ("rate", "attainment", "share", "value", "target")):
        return f"{v * 100:.2f}%" if v <= 1.0 else f"{v:g}"
    return _cell(v)


def _bars(section: Section) -> str:
    assert section.chart is not None
    data = [(str(r[0]), r[section.chart]) for r in section.rows if isinstance(r[section.chart], (int, float))]
    if not data:
        return ""
    top = section.chart_max or max(v for _, v in data) or 1
    label_w, bar_w, row_h = 200, 360, 24
    height = row_h * len(data) + 8
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 90}" height="{height}" '
           f'role="img" aria-label="{html.escape(section.title)}">']
    column = section.columns[section.chart]
    for i, (label, value) in enumerate(data):
        y = 4 + i * row_h
        w = max(0.0, min(1.0, value / top)) * bar_w
        out.append(f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end" font-size="13">{html.escape(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" fill="#3b7dd8"/>')
        out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" font-size="12">{html.escape(_fmt(value, column))}'
                   "</text>")
    out.append("</svg>")
    return "".join(out)


def sections_to_html(title: str, generated_at: datetime, sections: Sequence[Section]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,'PingFang SC','Microsoft YaHei',sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px}"
        "th{background:#f0f4fa}td.n{text-align:right}h2{margin-top:1.6em;font-size:1.15em}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Generated {html.escape(generated_at.astimezone(CHINA_TZ).strftime('%Y-%m-%d %H:%M'))} (Beijing time)</p>",
    ]
    for s in sections:
        parts.append(f'<section id="{html.escape(s.name)}"><h2>{html.escape(s.title)}</h2>')
        if not s.rows:
            parts.append("<p>No data.</p></section>")
            continue
        if s.chart is not None:
            parts.append(_bars(s))
        parts.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in s.columns) + "</tr>")
        for row in s.rows:
            cells = []
            for col, v in zip(s.columns, row, strict=True):
                cls = ' class="n"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
                cells.append(f"<td{cls}>{html.escape(_fmt(v, col))}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table></section>")
    parts.append("</body></html>")
    return "\n".join(parts)
