"""escalation's nameko service: consume facts, fire due timers, answer the gateway."""
from __future__ import annotations

import services.common  # noqa: F401

import logging
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml
from nameko.dependency_providers import Config
from nameko.extensions import DependencyProvider
from services.common.rpc import rpc
from nameko.timer import Timer

from services.common import rpc as answers
from services.common import timeline
from services.common.config import REPO_ROOT
from services.common.contract.registry import loader_skipping
from services.common.domain import DomainError, NotFound
from services.common.nameko_ext import Observability, Store, consume_events
from services.escalation.adapters import metrics as sla_metrics
from services.escalation.service_layer import handlers

log = logging.getLogger(__name__)


def read_policy_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_absolute():
        p = REPO_ROOT / p
    with open(p, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    if not isinstance(doc, dict):
        raise DomainError(f"{p} does not hold a policy object", field="ESCALATION_POLICY", code="invalid_policy")
    return doc


class RuntimeProvider(DependencyProvider):
    """Policy and calendar caches; at start, saves the configured policy file as a new version if it changed."""

    def setup(self) -> None:
        cfg = self.container.config
        self.runtime = handlers.Runtime(fallback_rule=str(cfg.get("CALENDAR_FALLBACK_RULE", "weekends_and_statutory")))

    def start(self) -> None:
        cfg = self.container.config
        store = next(d for d in self.container.dependencies if isinstance(d, Store))
        path = str(cfg.get("ESCALATION_POLICY", "services/escalation/policy.yml"))
        version = handlers.ensure_policy(store.uow(), self.runtime, read_policy_file(path), f"file:{Path(path).name}")
        log.info("escalation policy: latest version %d", version)
        sla_metrics.install(store.pool, float(cfg.get("SLA_OBJECTIVE", 0.95)))

    def get_dependency(self, worker_ctx: Any) -> handlers.Runtime:
        return self.runtime


class ConfiguredTimer(Timer):
    """nameko's timer with its interval read from the TIMER_INTERVAL config key."""

    def setup(self) -> None:
        self.interval = float(self.container.config.get("TIMER_INTERVAL", 0.2))  # type: ignore[has-type]
        super().setup()


configured_timer = ConfiguredTimer.decorator


def _uuid(value: Any, field: str) -> UUID:
    # An id that cannot exist is "not found", as for any other unknown id in a path.
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFound(f"no escalation {value!r}", field=field) from None


class EscalationService:
    name = "escalation"

    obs = Observability()
    uow = Store(REPO_ROOT / "services" / "escalation" / "migrations")
    config = Config()
    rt = RuntimeProvider()

    @consume_events(loader_skipping(handlers.concerns_us))
    def on_event(self, envelope: dict[str, Any]) -> Any:
        return handlers.handle_event(self.uow(), self.rt, envelope)

    @configured_timer(interval=0.2)
    def fire_due_timers(self) -> int:
        """Fire due timers in batches until a batch comes back short (several instances share the work): the
        clocks' deadlines, then the requests' timers (time-based condition rules, condition ladder climbs)."""
        limit = int(self.config.get("TIMER_BATCH", 200))
        total = 0
        for fire in (handlers.fire_due, handlers.fire_due_requests):
            while True:
                try:
                    taken, late = fire(self.uow(), self.rt, limit)
                except Exception:  # the database restarting must not kill the timer; the next tick retries
                    log.warning("due-timer pass failed; retrying on the next tick", exc_info=True)
                    return total
                for s in late:
                    sla_metrics.TIMER_LATENESS.observe(max(0.0, s))
                total += taken
                if taken < limit:
                    break
        return total

    # -- API ------------------------------------------------------------------------------------------------------
    @rpc
    @answers.answer
    def request_clocks(self, request_no: str) -> Any:
        return handlers.request_clocks(self.uow(), self.rt, request_no)

    @rpc
    @answers.answer
    def clocks_at_risk(self, property_id: str | None = None, department: str | None = None) -> Any:
        return handlers.clocks_at_risk(self.uow(), self.rt, property_id, department)

    @rpc
    @answers.answer
    def acknowledge_escalation(self, escalation_id: str, by: str) -> Any:
        return handlers.acknowledge(self.uow(), self.rt, _uuid(escalation_id, "escalation_id"), by)

    @rpc
    @answers.answer
    def get_policy(self, version: int | None = None) -> Any:
        return handlers.get_policy(self.uow(), version)

    @rpc
    @answers.answer
    def policy_versions(self) -> Any:
        return handlers.policy_versions(self.uow())

    @rpc
    @answers.answer
    def add_policy(self, policy: dict[str, Any], by: str) -> Any:
        result = handlers.add_policy(self.uow(), self.rt, policy, by)
        return answers.ok(result, 201 if result["created"] else 200)

    @rpc
    @answers.answer
    def calendar_years(self) -> Any:
        return handlers.list_years(self.uow())

    @rpc
    @answers.answer
    def load_calendar_year(self, year: dict[str, Any], by: str) -> Any:
        return answers.ok(handlers.load_year(self.uow(), self.rt, year, by), 201)

    @rpc
    @answers.answer
    def timeline(self, request_no: str) -> Any:
        return {"timeline": timeline.read(self.uow(), request_no),
                "state": handlers.clock_state_summary(self.uow(), request_no)}
