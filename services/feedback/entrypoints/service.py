"""feedback's nameko service: projections of other services' events, return visits, reply letters, praise,
audits, surveys and statistics."""
from __future__ import annotations

import services.common  # noqa: F401

import functools
import logging
import time
from typing import Any
from collections.abc import Iterable

import yaml
from psycopg.rows import tuple_row
from marshmallow import ValidationError
from nameko.dependency_providers import Config
from nameko.extensions import DependencyProvider
from services.common.rpc import rpc
from nameko.timer import Timer
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from services.common import rpc as answers
from services.common import timeline
from services.common.config import REPO_ROOT
from services.common.nameko_ext import Observability, Store, consume_events
from services.feedback.domain.letters import LetterTemplate
from services.feedback.domain.policy import SATISFACTION_LEVELS, FeedbackPolicy
from services.feedback.domain.statistics import CHINA_TZ, quarter_bounds
from services.feedback.service_layer import handlers
from services.feedback.service_layer.handlers import Settings

log = logging.getLogger(__name__)


def _path(value: str) -> Any:
    return REPO_ROOT / value if not value.startswith("/") else value


def load_settings(cfg: dict[str, Any]) -> Settings:
    raw: dict[str, Any] = {}
    policy_file = str(cfg.get("FEEDBACK_POLICY") or "services/feedback/policy.yml")
    with open(_path(policy_file), encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    rv = dict(raw.get("return_visit") or {})
    # The environment decides the sample (FEEDBACK_SAMPLE_RATE, FEEDBACK_SEED_ID, FEEDBACK_SEED) over the file.
    for key, name in (("sample_rate", "FEEDBACK_SAMPLE_RATE"), ("seed_id", "FEEDBACK_SEED_ID"),
                      ("seed", "FEEDBACK_SEED")):
        if cfg.get(name) not in (None, ""):
            rv[key] = cfg[name]
    if cfg.get("FEEDBACK_RETRY_AFTER_HOURS") is not None:  # tests: a schedule in fractions of an hour
        rv["retry_after_hours"] = [float(h) for h in str(cfg["FEEDBACK_RETRY_AFTER_HOURS"]).split(",")]
    if cfg.get("FEEDBACK_RETRY_LAPSE_HOURS") is not None:
        rv["retry_lapse_hours"] = float(cfg["FEEDBACK_RETRY_LAPSE_HOURS"])
    raw["return_visit"] = rv
    policy = FeedbackPolicy.from_mapping(raw)
    templates_file = str(cfg.get("LETTER_TEMPLATES") or "services/feedback/letter_templates.yml")
    with open(_path(templates_file), encoding="utf-8") as fh:
        tpl = yaml.safe_load(fh) or {}
    templates = {tid: LetterTemplate(tid, t["title"], t["body"]) for tid, t in tpl.items()}
    households = {str(k): int(v) for k, v in (raw.get("households") or {}).items()}
    min_occ = int((raw.get("recurring") or {}).get("min_occurrences", 2))
    return Settings(policy=policy, templates=templates, households=households, recurring_min_occurrences=min_occ)


class SettingsProvider(DependencyProvider):
    """Policy, letter templates and households, read once at start."""

    def setup(self) -> None:
        self.settings = load_settings(dict(self.container.config))

    def get_dependency(self, worker_ctx: Any) -> Settings:
        return self.settings


class ConfiguredTimer(Timer):
    """nameko's timer with its interval from the config key TIMER_INTERVAL (seconds) instead of the decorator."""

    def setup(self) -> None:
        default = float(getattr(self, "interval"))  # noqa: B009  (set by Timer.__init__; untyped there)
        self.interval = float(self.container.config.get("TIMER_INTERVAL", default) or default)


timer = ConfiguredTimer.decorator


def required_fields(fn: Any) -> Any:
    """RPC callers other than the gateway may omit a field the gateway's schema requires: name it (422), not 500."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyError as exc:
            raise ValidationError({str(exc.args[0]): ["Missing data for required field."]}) from None

    return wrapper


# --------------------------------------------------------------------------------------------------- metrics
class _FeedbackCollector:
    """Counts read from feedback's own tables on each scrape: the figures survive restarts and every label value
    exists from the start. The quarter's recurring problems are a grouping, so they are cached briefly."""

    recurring_ttl = 30.0

    def __init__(self) -> None:
        self.store: Store | None = None
        self.properties: tuple[str, ...] = ()
        self._recurring: tuple[float, dict[str, int]] = (0.0, {})

    def collect(self) -> Iterable[Any]:
        visits = CounterMetricFamily("feedback_return_visits", "Return visits by outcome (scheduled counts every "
                                     "visit ever scheduled)", labels=["outcome"])
        sat = CounterMetricFamily("feedback_satisfaction", "Satisfaction recorded on return visits", labels=["level"])
        comp = CounterMetricFamily("feedback_complaints", "Complaints registered, valid or communicative",
                                   labels=["validity"])
        rec = GaugeMetricFamily("feedback_recurring_problems", "Recurring problems (same place and subclass at least "
                                "twice) in the current quarter", labels=["property"])
        if self.store is None:
            return []
        try:
            with self.store.pool.connection(timeout=2) as pooled:
                conn = pooled.cursor(row_factory=tuple_row)
                v = conn.execute("SELECT count(*), count(*) FILTER (WHERE state = 'done'), "
                                 "count(*) FILTER (WHERE state = 'failed') FROM return_visits").fetchone()
                levels: dict[str, int] = dict(conn.execute(
                    "SELECT level, count(*) FROM return_visits WHERE level IS NOT NULL GROUP BY level").fetchall())
                c = conn.execute("SELECT count(*) FILTER (WHERE complaint_valid OR validity = 'valid'), "
                                 "count(*) FILTER (WHERE NOT coalesce(complaint_valid OR validity = 'valid', false)) "
                                 "FROM requests WHERE category = 'complaint'").fetchone()
                recurring = self._recurring_counts(conn)
        except Exception:  # a scrape must not fail because the database is restarting
            log.warning("feedback collector could not read its tables")
            return []
        assert v is not None and c is not None
        for outcome, n in (("scheduled", v[0]), ("done", v[1]), ("failed", v[2])):
            visits.add_metric([outcome], float(n))
        for level in SATISFACTION_LEVELS:
            sat.add_metric([level], float(levels.get(level, 0)))
        comp.add_metric(["valid"], float(c[0]))
        comp.add_metric(["communicative"], float(c[1]))
        for prop in sorted(set(self.properties) | set(recurring)):
            rec.add_metric([prop], float(recurring.get(prop, 0)))
        return [visits, sat, comp, rec]

    def _recurring_counts(self, conn: Any) -> dict[str, int]:
        at, cached = self._recurring
        if time.monotonic() - at < self.recurring_ttl:
            return cached
        now = conn.execute("SELECT now()").fetchone()[0].astimezone(CHINA_TZ)
        start, end = quarter_bounds(f"{now.year}-Q{(now.month - 1) // 3 + 1}")
        rows = conn.execute(
            "SELECT property_id, count(*) FROM (SELECT property_id FROM requests "
            "WHERE registered_at >= %s AND registered_at < %s AND subcategory IS NOT NULL "
            "AND coalesce(unit, area) IS NOT NULL GROUP BY property_id, building, coalesce(unit, area), subcategory "
            "HAVING count(*) >= 2) g GROUP BY property_id", (start, end)).fetchall()
        counts = {r[0]: int(r[1]) for r in rows}
        self._recurring = (time.monotonic(), counts)
        return counts


COLLECTOR = _FeedbackCollector()


class FeedbackMetrics(DependencyProvider):
    def setup(self) -> None:
        settings = load_settings(dict(self.container.config))
        COLLECTOR.properties = tuple(settings.households)

    def start(self) -> None:
        COLLECTOR.store = self.container.dependencies and next(
            (d for d in self.container.dependencies if isinstance(d, Store)), None)
        COLLECTOR._recurring = (0.0, {})
        try:
            REGISTRY.register(COLLECTOR)
        except ValueError:  # registered by an earlier container in this process (tests)
            pass


# --------------------------------------------------------------------------------------------------- service
class FeedbackService:
    name = "feedback"

    obs = Observability()
    uow = Store(REPO_ROOT / "services" / "feedback" / "migrations")
    config = Config()
    settings = SettingsProvider()
    metrics = FeedbackMetrics()

    @consume_events()
    def on_event(self, envelope: dict[str, Any]) -> Any:
        return handlers.on_event(self.uow(), envelope, self.settings)

    @timer(interval=1.0)
    def tick(self) -> None:
        while handlers.fail_lapsed_visits(self.uow(), self.settings) >= handlers.TIMER_BATCH:
            pass
        handlers.publish_monthly_report(self.uow(), self.settings)

    # -- return visits
    @rpc
    @answers.answer
    @required_fields
    def record_unreachable(self, visit_id: str, body: dict[str, Any]) -> Any:
        return handlers.record_unreachable(self.uow(), visit_id, body, self.settings)

    @rpc
    @answers.answer
    @required_fields
    def complete_visit(self, visit_id: str, body: dict[str, Any]) -> Any:
        return handlers.complete_visit(self.uow(), visit_id, body, self.settings)

    @rpc
    @answers.answer
    @required_fields
    def request_visits(self, request_no: str) -> Any:
        return handlers.request_visits(self.uow(), request_no)

    @rpc
    @answers.answer
    @required_fields
    def visits_due(self, query: dict[str, Any]) -> Any:
        return handlers.visits_due(self.uow(), query)

    # -- reply letters
    @rpc
    @answers.answer
    @required_fields
    def draft_letter(self, request_no: str, body: dict[str, Any]) -> Any:
        return answers.ok(handlers.draft_letter(self.uow(), request_no, body, self.settings), 201)

    @rpc
    @answers.answer
    @required_fields
    def letter_step(self, letter_id: str, action: str, body: dict[str, Any]) -> Any:
        return handlers.letter_step(self.uow(), letter_id, action, body, self.settings)

    @rpc
    @answers.answer
    @required_fields
    def get_letter(self, letter_id: str) -> Any:
        return handlers.get_letter(self.uow(), letter_id)

    @rpc
    @answers.answer
    @required_fields
    def request_letters(self, request_no: str) -> Any:
        return handlers.request_letters(self.uow(), request_no)

    # -- praise, audits, surveys
    @rpc
    @answers.answer
    @required_fields
    def add_praise(self, body: dict[str, Any]) -> Any:
        return answers.ok(handlers.add_praise(self.uow(), body), 201)

    @rpc
    @answers.answer
    @required_fields
    def start_audit(self, body: dict[str, Any]) -> Any:
        data, created = handlers.start_audit(self.uow(), body, self.settings)
        return answers.ok(data, 201 if created else 200)

    @rpc
    @answers.answer
    @required_fields
    def record_finding(self, audit_id: str, body: dict[str, Any]) -> Any:
        return handlers.record_finding(self.uow(), audit_id, body)

    @rpc
    @answers.answer
    @required_fields
    def get_audit(self, audit_id: str) -> Any:
        return handlers.get_audit(self.uow(), audit_id)

    @rpc
    @answers.answer
    @required_fields
    def open_survey(self, body: dict[str, Any]) -> Any:
        return answers.ok(handlers.open_survey(self.uow(), body, self.settings), 201)

    @rpc
    @answers.answer
    @required_fields
    def survey_step(self, survey_id: str, action: str, body: dict[str, Any]) -> Any:
        return handlers.survey_step(self.uow(), survey_id, action, body)

    @rpc
    @answers.answer
    @required_fields
    def get_survey(self, survey_id: str) -> Any:
        return handlers.get_survey(self.uow(), survey_id)

    # -- statistics
    @rpc
    @answers.answer
    @required_fields
    def monthly_report(self, query: dict[str, Any]) -> Any:
        return handlers.monthly(self.uow(), query, self.settings)

    @rpc
    @answers.answer
    @required_fields
    def quarterly_report(self, query: dict[str, Any]) -> Any:
        return handlers.quarterly(self.uow(), query, self.settings)

    @rpc
    @answers.answer
    @required_fields
    def publish_monthly_report(self, period: str) -> Any:
        return {"published": handlers.publish_monthly_report(self.uow(), self.settings, period)}

    @rpc
    @answers.answer
    @required_fields
    def timeline(self, request_no: str) -> Any:
        return {"timeline": timeline.read(self.uow(), request_no),
                "state": handlers.timeline_state(self.uow(), request_no)}
