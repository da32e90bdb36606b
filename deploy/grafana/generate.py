"""Grafana dashboards as code: `python deploy/grafana/generate.py` rewrites deploy/grafana/dashboards/*.json.

Plain dicts (Grafana 10 dashboard schema), no library: the JSON is committed and provisioned, and
tests/unit/ops/test_ops_dashboards.py fails when it differs from what this file produces.

Conventions the test enforces: a templated Prometheus datasource; every panel has a title, a description and
a unit; counters appear only inside rate()/increase() over $__rate_interval. Table-derived gauges and
counters (SLA, dispatch, outbox) are equal on every replica, so they are collapsed with
`max without (instance)` before summing; in-process counters (events, HTTP) are summed over replicas.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"


def _dedup(expr: str) -> str:
    return f"max without (instance) ({expr})"


class Board:
    def __init__(self, uid: str, title: str, description: str, tags: list[str]):
        self.uid, self.title, self.description, self.tags = uid, title, description, tags
        self.panels: list[dict[str, Any]] = []
        self.variables: list[dict[str, Any]] = []
        self._x = 0
        self._y = 0
        self._row_h = 0

    def variable(self, name: str, label: str, query: str, description: str) -> Board:
        self.variables.append({
            "name": name, "label": label, "description": description, "type": "query",
            "datasource": DS, "query": {"query": query, "refId": f"var-{name}"}, "definition": query,
            "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1,
        })
        return self

    def row(self, title: str) -> Board:
        if self._x:
            self._y += self._row_h
            self._x, self._row_h = 0, 0
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "id": len(self.panels) + 1, "gridPos": {"x": 0, "y": self._y, "w": 24, "h": 1}})
        self._y += 1
        return self

    def panel(self, kind: str, title: str, description: str, unit: str, targets: list[tuple[str, str]],
              w: int = 8, h: int = 8, **options: Any) -> Board:
        if self._x + w > 24:
            self._y += self._row_h
            self._x, self._row_h = 0, 0
        defaults: dict[str, Any] = {"unit": unit}
        if "min" in options:
            defaults["min"] = options.pop("min")
        if "max" in options:
            defaults["max"] = options.pop("max")
        if "thresholds" in options:
            defaults["thresholds"] = {"mode": "absolute", "steps": options.pop("thresholds")}
        panel: dict[str, Any] = {
            "id": len(self.panels) + 1, "type": kind, "title": title, "description": description,
            "datasource": DS, "gridPos": {"x": self._x, "y": self._y, "w": w, "h": h},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options.pop("panel_options", {}),
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend,
                 "range": True, "instant": False}
                for i, (expr, legend) in enumerate(targets)
            ],
        }
        self.panels.append(panel)
        self._x += w
        self._row_h = max(self._row_h, h)
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid, "title": self.title, "description": self.description, "tags": self.tags,
            "schemaVersion": 39, "version": 1, "editable": False, "timezone": "browser",
            "time": {"from": "now-24h", "to": "now"}, "refresh": "1m", "graphTooltip": 1,
            "annotations": {"list": []}, "links": [],
            "templating": {"list": [
                {"name": "datasource", "label": "数据源 / Data source", "type": "datasource", "query": "prometheus",
                 "current": {}, "hide": 0, "refresh": 1, "regex": "",
                 "description": "Prometheus that scrapes the property-service platform"},
                *self.variables,
            ]},
            "panels": self.panels,
        }


def sla_overview() -> Board:
    b = Board("propsvc-sla", "SLA 总览 / SLA overview",
              "Each service clock's attainment against its objective, clocks at risk now, breaches.",
              ["propsvc", "sla"])
    b.variable("property", "小区 / Property", "label_values(sla_clocks_open, property)",
               "Filter the open-clock and breach panels by property")
    sel = 'property=~"$property"'
    elapsed = _dedup(f"rate(sla_clock_elapsed_seconds_bucket[{RI}])")
    breached = 'increase(sla_clock_verdicts_total{outcome="breached",' + sel + "}[" + RI + "])"
    b.row("达标率 / Attainment")
    b.panel("bargauge", "30 天达标率 / Attainment, 30 days",
            "Share of clocks met among clocks with a verdict in the last 30 days, per clock.", "percentunit",
            [("clock:sla_attainment:ratio_30d", "{{clock}}")], w=8, min=0, max=1,
            thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 0.95}])
    b.panel("timeseries", "达标率与目标 / Attainment (1 day) vs objective",
            "Attainment over a sliding day, per clock, with each clock's objective as a dashed reference.",
            "percentunit",
            [("clock:sla_attainment:ratio_1d", "{{clock}} 1d"), ("clock:sla_attainment:ratio_1h", "{{clock}} 1h"),
             ("slo:objective:ratio", "{{clock}} objective / 目标")], w=16, min=0, max=1)
    b.panel("stat", "剩余误差预算 / Error budget remaining (30 d)",
            "Share of the 30-day error budget not yet used by breaches; below 0 the objective is missed.",
            "percentunit", [("slo:period_error_budget_remaining:ratio", "{{clock}}")], w=12)
    b.panel("timeseries", "当前消耗速率 / Burn rate (5 m)",
            "How many times faster than sustainable the error budget is being used (1 = exactly on budget).",
            "none", [("slo:current_burn_rate:ratio", "{{clock}}")], w=12)
    b.row("风险 / At risk now")
    b.panel("timeseries", "临近超时 / Open past warning",
            "Clocks running now that have passed their warning point but not yet their deadline.", "short",
            [("sum by (clock) (" + _dedup('sla_clocks_open{state="warning",' + sel + "}") + ")", "{{clock}}")], w=8)
    b.panel("timeseries", "已超时未完成 / Open past deadline",
            "Clocks running now whose deadline has already passed (counted as breached when the deadline passed).",
            "short",
            [("sum by (clock) (" + _dedup('sla_clocks_open{state="overdue",' + sel + "}") + ")", "{{clock}}")], w=8)
    b.panel("timeseries", "待触发计时器 / Timers due, not fired",
            "Escalation timers that are due and not yet fired; should stay near 0.", "short",
            [("max(escalation_timers_due)", "due")], w=8)
    b.row("超时 / Breaches")
    b.panel("timeseries", "超时数 / Breaches per clock",
            "Clocks that passed their deadline, per clock, counted when the deadline passed.", "short",
            [("sum by (clock) (" + _dedup(breached) + ")", "{{clock}}")], w=12,
            panel_options={"legend": {"displayMode": "table", "placement": "right"}})
    b.panel("timeseries", "按小区超时 / Breaches by property",
            "Breaches of every clock, by property.", "short",
            [("sum by (property) (" + _dedup(breached) + ")", "{{property}}")], w=12)
    b.panel("timeseries", "用时分布 / Elapsed time to meet (p50, p90)",
            "Distribution of time from clock start to stop; the verdict, not this histogram, decides met.", "s",
            [(f"histogram_quantile({q}, sum by (clock, le) ({elapsed}))", f"{{{{clock}}}} p{int(q * 100)}")
             for q in (0.5, 0.9)], w=12)
    b.panel("timeseries", "升级 / Escalations by rung",
            "Escalations per rung of the ladder (front desk to leadership).", "short",
            [(f"sum by (rung) (increase(escalations_total[{RI}]))", "{{rung}}")], w=12)
    b.panel("timeseries", "计时器延迟 / Timer lateness (p99)",
            "How late escalation timers fire after they fall due.", "s",
            [(f"histogram_quantile(0.99, sum by (le) (rate(escalation_timer_lateness_seconds_bucket[{RI}])))",
              "p99")], w=12)
    b.panel("timeseries", "备用日历 / Clocks on the fallback calendar",
            "Clocks whose working-day deadline was computed without official holiday data for the year.", "short",
            [(f"sum by (clock) (increase(calendar_fallback_clocks_total[{RI}]))", "{{clock}}")], w=12)
    return b


def operations() -> Board:
    b = Board("propsvc-operations", "运营 / Operations",
              "Backlog by department, technician load, shift handovers, daily completion checks.",
              ["propsvc", "operations"])
    b.variable("department", "部门 / Department", "label_values(dispatch_backlog, department)",
               "Filter by department")
    d = 'department=~"$department"'
    b.row("工单 / Work orders")
    b.panel("timeseries", "积压工单 / Backlog by department and state",
            "Open work orders per department and state.", "short",
            [(f"sum by (department, state) ({_dedup(f'dispatch_backlog{{{d}}}')})", "{{department}} {{state}}")], w=12)
    b.panel("timeseries", "新报事 / Requests registered",
            "Requests registered by intake per interval, by channel.", "short",
            [(f"sum by (channel) (increase(intake_requests_registered_total[{RI}]))", "{{channel}}")], w=12)
    b.row("人员 / Technicians")
    b.panel("timeseries", "在岗维修人员 / Technicians on duty",
            "Technicians on duty per department.", "short",
            [(f"sum by (department) ({_dedup(f'dispatch_technicians_on_duty{{{d}}}')})", "{{department}}")], w=8)
    b.panel("timeseries", "人均负荷 / Open orders per technician on duty",
            "Open work orders assigned in a department divided by its technicians on duty.", "short",
            [(f"sum by (department) ({_dedup(f'dispatch_technician_load{{{d}}}')}) / "
              f"sum by (department) ({_dedup(f'dispatch_technicians_on_duty{{{d}}}')})", "{{department}}")], w=8)
    b.panel("timeseries", "未签收交接 / Handovers not acknowledged",
            "Shift handovers the incoming shift has not acknowledged.", "short",
            [(f"sum by (department) ({_dedup(f'dispatch_handovers_unacknowledged{{{d}}}')})", "{{department}}")], w=8)
    b.row("每日检查 / Daily completion check")
    b.panel("timeseries", "当日未完成 / Daily check open",
            "Items of today's completion check still open.", "short",
            [(f"sum by (department) ({_dedup(f'dispatch_daily_check_open{{{d}}}')})", "{{department}}")], w=12)
    b.panel("timeseries", "逾期未完成 / Daily check overdue",
            "Items of the completion check past their day.", "short",
            [(f"sum by (department) ({_dedup(f'dispatch_daily_check_overdue{{{d}}}')})", "{{department}}")], w=12)
    return b


def quality() -> Board:
    b = Board("propsvc-quality", "服务质量 / Quality",
              "Return visits, satisfaction, complaints, recurring problems.", ["propsvc", "quality"])
    b.panel("timeseries", "回访 / Return visits by outcome",
            "Return visits done, failed and scheduled per interval.", "short",
            [(f"sum by (outcome) (increase(feedback_return_visits_total[{RI}]))", "{{outcome}}")], w=12)
    b.panel("timeseries", "满意度 / Satisfaction by level",
            "Return-visit answers per satisfaction level.", "short",
            [(f"sum by (level) (increase(feedback_satisfaction_total[{RI}]))", "{{level}}")], w=12)
    b.panel("timeseries", "满意率 / Satisfied share",
            "Satisfied plus basically satisfied among all answers.", "percentunit",
            [(f'sum(increase(feedback_satisfaction_total{{level=~"satisfied|basically_satisfied"}}[{RI}])) / '
              f"sum(increase(feedback_satisfaction_total[{RI}]))", "satisfied / 满意")], w=12, min=0, max=1)
    b.panel("timeseries", "投诉 / Complaints by validity",
            "Complaints classed valid or communicative per interval.", "short",
            [(f"sum by (validity) (increase(feedback_complaints_total[{RI}]))", "{{validity}}")], w=12)
    b.panel("bargauge", "重复问题 / Recurring problems by property",
            "Problems reported again after being resolved, per property (now).", "short",
            [(f"sum by (property) ({_dedup('feedback_recurring_problems')})", "{{property}}")], w=24)
    return b


def pipeline() -> Board:
    b = Board("propsvc-pipeline", "消息管道 / Pipeline",
              "RabbitMQ queues and dead letters, outbox, inbox duplicates, handler and HTTP latency.",
              ["propsvc", "pipeline"])
    b.row("队列 / Queues")
    b.panel("timeseries", "队列深度 / Queue depth",
            "Messages ready plus unacknowledged per queue (dead-letter queues excluded).", "short",
            [('sum by (queue) (rabbitmq_detailed_queue_messages{queue!~".+\\\\.dlq"})', "{{queue}}")], w=8)
    b.panel("timeseries", "死信 / Dead-letter queues",
            "Messages parked in each dead-letter queue; anything above 0 needs a fix and a replay.", "short",
            [('sum by (queue) (rabbitmq_detailed_queue_messages{queue=~".+\\\\.dlq"})', "{{queue}}")], w=8)
    b.panel("timeseries", "消费者 / Consumers per queue",
            "Consumers attached to each queue; 0 on a work queue means nobody is processing it.", "short",
            [('sum by (queue) (rabbitmq_detailed_queue_consumers{queue!~".+\\\\.dlq"})', "{{queue}}")], w=8)
    b.row("事件 / Events")
    b.panel("timeseries", "处理速率 / Events handled", "Events handled per second, per service and queue.",
            "reqps", [(f"sum by (service, queue) (rate(events_handled_total[{RI}]))", "{{service}} {{queue}}")], w=8)
    b.panel("timeseries", "失败与死信 / Events failed and dead-lettered",
            "Handler failures and dead-lettered messages per second.", "reqps",
            [(f"sum by (service, queue) (rate(events_failed_total[{RI}]))", "failed {{service}} {{queue}}"),
             (f"sum by (service, queue, reason) (rate(events_dead_lettered_total[{RI}]))",
              "dead-lettered {{service}} {{queue}} {{reason}}")], w=8)
    b.panel("timeseries", "处理耗时 / Handler latency p95", "95th percentile of event handler duration.", "s",
            [("histogram_quantile(0.95, sum by (service, queue, le) "
              f"(rate(event_handler_duration_seconds_bucket[{RI}])))", "{{service}} {{queue}}")], w=8)
    b.row("发件箱 / Outbox & inbox")
    b.panel("timeseries", "待发事件 / Outbox rows waiting", "Events committed and not yet published, per service.",
            "short", [(f"max by (service) ({_dedup('outbox_pending_events')})", "{{service}}")], w=6)
    b.panel("timeseries", "最旧待发 / Oldest outbox event age",
            "Age of the oldest unpublished event (no line when the outbox is empty). Alert at 60 s.", "s",
            # 0 when the outbox is empty (the timestamp is then 0), the age of the oldest row otherwise.
            [("max by (service) ((time() - outbox_oldest_event_timestamp_seconds) "
              "* (outbox_oldest_event_timestamp_seconds > bool 0))", "{{service}}")], w=6)
    b.panel("timeseries", "发布速率 / Outbox published", "Events published from the outbox per second.", "reqps",
            [(f"sum by (service) (rate(outbox_published_total[{RI}]))", "{{service}}")], w=6)
    b.panel("timeseries", "重复消息 / Inbox duplicates", "Redelivered messages recognised and skipped per second.",
            "reqps", [(f"sum by (service, queue) (rate(inbox_duplicates_total[{RI}]))", "{{service}} {{queue}}")], w=6)
    b.row("接口 / HTTP API & targets")
    b.panel("timeseries", "请求速率 / HTTP requests by status", "Gateway requests per second by status code.",
            "reqps", [(f"sum by (status) (rate(http_requests_total[{RI}]))", "{{status}}")], w=8)
    b.panel("timeseries", "接口耗时 / HTTP latency p95", "95th percentile of gateway request duration per route.",
            "s", [(f"histogram_quantile(0.95, sum by (route, le) (rate(http_request_duration_seconds_bucket[{RI}])))",
                   "{{route}}")], w=8)
    b.panel("stat", "在线实例 / Targets up", "Scrape targets answering, per job.", "short",
            [("sum by (job) (up)", "{{job}}")], w=8)
    return b


BOARDS = {"sla-overview": sla_overview, "operations": operations, "quality": quality, "pipeline": pipeline}


def render() -> dict[str, str]:
    return {f"{name}.json": json.dumps(fn().to_json(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
            for name, fn in BOARDS.items()}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
