"""dispatch's nameko service: routing and assignment on intake's events, the work-order lifecycle over RPC, timers
for acceptance timeouts, shift handovers and the daily completion check."""
from __future__ import annotations

import services.common  # noqa: F401

import logging
from datetime import UTC, datetime, time, timedelta
from typing import Any

import yaml
from nameko.dependency_providers import Config
from nameko.extensions import DependencyProvider
from services.common.rpc import rpc
from nameko.timer import Timer

from services.common import rpc as answers
from services.common import timeline
from services.common.config import REPO_ROOT
from services.common.nameko_ext import Observability, Store, consume_events
from services.dispatch.adapters import metrics
from services.dispatch.adapters import repository as repo
from services.dispatch.domain.assignment import AssignmentPolicy
from services.dispatch.domain.fees import PriceList
from services.dispatch.domain.roster import DEFAULT_SHIFTS, ShiftPattern
from services.dispatch.domain.routing import RoutingTable
from services.dispatch.service_layer import handlers

log = logging.getLogger(__name__)
MIGRATIONS = REPO_ROOT / "services" / "dispatch" / "migrations"


def _read_yaml(path: str) -> dict[str, Any]:
    with open(REPO_ROOT / path, encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def _clock_time(value: Any) -> time:
    # YAML 1.1 reads an unquoted 18:05 as the sexagesimal integer 1085; accept both spellings.
    if isinstance(value, int):
        return time(value // 60, value % 60)
    return time.fromisoformat(str(value))


def load_settings(cfg: dict[str, Any]) -> handlers.Settings:
    roster = _read_yaml(cfg.get("ROSTER_FILE", "services/dispatch/roster.yml"))
    policy_path = cfg.get("ASSIGNMENT_POLICY", "services/dispatch/assignment_policy.yml")
    shifts = tuple(ShiftPattern(s["name"], time.fromisoformat(str(s["start"])), time.fromisoformat(str(s["end"])))
                   for s in roster.get("shifts", ())) or DEFAULT_SHIFTS
    return handlers.Settings(
        routing=RoutingTable.from_config(_read_yaml(cfg.get("ROUTING_TABLE", "services/dispatch/routing.yml"))),
        policy=AssignmentPolicy.from_config(_read_yaml(policy_path) if policy_path else {}),
        prices=PriceList.from_config(_read_yaml(cfg.get("PRICE_LIST", "services/dispatch/price_list.yml"))),
        shifts=shifts,
        tz=str(cfg.get("TIMEZONE") or roster.get("timezone") or "Asia/Shanghai"),
        check_time=_clock_time(cfg.get("DAILY_CHECK_TIME", "18:00")),
        ack_minutes=float(cfg.get("HANDOVER_ACK_MINUTES", 30)),
        catch_up=timedelta(seconds=float(cfg.get("HANDOVER_CATCH_UP_SECONDS", 900))),
        properties=tuple(roster.get("properties", ())),
    )


class DispatchStore(Store):
    """The plumbing's Store, plus what dispatch needs once at start: its tables from files (routing, policy,
    prices, shift patterns), the demo roster when the roster tables are empty, a clock that tests may shift
    (CLOCK_OFFSET_SECONDS), and the metrics collector bound to this pool."""

    def setup(self) -> None:
        super().setup()
        cfg = self.container.config
        self.settings = load_settings(cfg)
        offset = timedelta(seconds=float(cfg.get("CLOCK_OFFSET_SECONDS", 0) or 0))
        self.clock = lambda: datetime.now(UTC) + offset
        roster_file = cfg.get("ROSTER_FILE", "services/dispatch/roster.yml")
        if roster_file:
            with self.pool.connection() as conn:
                seeded = repo.seed_roster(conn, _read_yaml(roster_file))
            if seeded:
                log.info("loaded the demo roster from %s: %d people", roster_file, seeded)
        settings = self.settings
        metrics.register().bind(self.pool, lambda conn, now: repo.on_duty_counts(conn, now, settings.shifts,
                                                                                 settings.tz), self.clock)


class SettingsProvider(DependencyProvider):
    """The settings DispatchStore read at start (one copy per container)."""

    def get_dependency(self, worker_ctx: Any) -> handlers.Settings:
        for ext in self.container.dependencies:
            if isinstance(ext, DispatchStore):
                return ext.settings
        raise RuntimeError("DispatchStore missing")


class ConfiguredTimer(Timer):
    """nameko's timer with its interval read from config (TIMER_INTERVAL) at setup, not fixed in the code."""

    def setup(self) -> None:
        default: float = self.interval  # type: ignore[has-type]
        self.interval = float(self.container.config.get("TIMER_INTERVAL", default) or default)
        super().setup()


configured_timer = ConfiguredTimer.decorator


class DispatchService:
    name = "dispatch"

    obs = Observability()
    uow = DispatchStore(MIGRATIONS)
    config = Config()
    settings = SettingsProvider()

    # -- events ------------------------------------------------------------------------------------------------
    @consume_events()
    def on_event(self, envelope: dict[str, Any]) -> Any:
        kind = envelope["event_type"]
        if kind == "RequestRegistered":
            return handlers.on_registered(self.uow(), self.settings, envelope)
        if kind == "RequestCancelled":
            return handlers.on_cancelled(self.uow(), self.settings, envelope)
        if kind == "RequestClosed":
            return handlers.on_closed(self.uow(), self.settings, envelope)
        if kind == "RequestReclassified":
            return handlers.on_reclassified(self.uow(), self.settings, envelope)
        if kind == "FollowUpRaised":
            return handlers.on_follow_up(self.uow(), self.settings, envelope)
        return None

    # -- work orders -------------------------------------------------------------------------------------------
    @rpc
    @answers.answer
    def assign(self, request_no: str, body: dict[str, Any]) -> Any:
        return handlers.assign(self.uow(), self.settings, request_no, body)

    @rpc
    @answers.answer
    def resolve(self, request_no: str, body: dict[str, Any]) -> Any:
        return handlers.resolve(self.uow(), self.settings, request_no, body)

    @rpc
    @answers.answer
    def act(self, work_order_id: str, action: str, body: dict[str, Any]) -> Any:
        return handlers.act(self.uow(), self.settings, work_order_id, action, body)

    @rpc
    @answers.answer
    def get_work_order(self, work_order_id: str) -> Any:
        return handlers.get_work_order(self.uow(), work_order_id)

    @rpc
    @answers.answer
    def request_work_orders(self, request_no: str) -> Any:
        return handlers.request_work_orders(self.uow(), request_no)

    @rpc
    @answers.answer
    def timeline(self, request_no: str) -> Any:
        return {"timeline": timeline.read(self.uow(), request_no), "state": handlers.summary(self.uow(), request_no)}

    # -- rosters -----------------------------------------------------------------------------------------------
    @rpc
    @answers.answer
    def list_technicians(self, query: dict[str, Any]) -> Any:
        return handlers.list_technicians(self.uow(), query)

    @rpc
    @answers.answer
    def get_technician(self, technician_id: str) -> Any:
        return handlers.get_technician(self.uow(), self.settings, technician_id)

    @rpc
    @answers.answer
    def put_technician(self, technician_id: str, body: dict[str, Any]) -> Any:
        return handlers.put_technician(self.uow(), technician_id, body)

    @rpc
    @answers.answer
    def set_absent(self, technician_id: str, absent: bool) -> Any:
        return handlers.set_absent(self.uow(), technician_id, absent)

    @rpc
    @answers.answer
    def add_shifts(self, entries: list[dict[str, Any]]) -> Any:
        return handlers.add_shifts(self.uow(), self.settings, entries)

    @rpc
    @answers.answer
    def set_on_call(self, body: dict[str, Any]) -> Any:
        return handlers.set_team_person(self.uow(), "on_call", body)

    @rpc
    @answers.answer
    def set_lead(self, body: dict[str, Any]) -> Any:
        return handlers.set_team_person(self.uow(), "lead", body)

    @rpc
    @answers.answer
    def team(self, property_id: str, department: str) -> Any:
        return handlers.team(self.uow(), self.settings, property_id, department)

    # -- handovers and daily checks ----------------------------------------------------------------------------
    @rpc
    @answers.answer
    def list_handovers(self, query: dict[str, Any]) -> Any:
        return handlers.list_handovers(self.uow(), query)

    @rpc
    @answers.answer
    def acknowledge_handover(self, handover_id: str, by: str) -> Any:
        return handlers.acknowledge_handover(self.uow(), handover_id, by)

    @rpc
    @answers.answer
    def list_daily_checks(self, query: dict[str, Any]) -> Any:
        return handlers.list_daily_checks(self.uow(), query)

    # -- timers ------------------------------------------------------------------------------------------------
    @configured_timer(interval=1.0)
    def tick(self) -> None:
        for name, run in (
            ("acceptance timeouts", lambda: handlers.time_out_acceptances(self.uow(), self.settings)),
            ("handovers", lambda: handlers.publish_handovers(self.uow, self.settings)),
            ("handover acknowledgements", lambda: handlers.report_unacknowledged_handovers(self.uow())),
            ("daily check", lambda: handlers.run_daily_checks(self.uow, self.settings)),
        ):
            try:
                run()
            except Exception:  # one failing pass must not stop the others; the next tick retries
                log.exception("timer pass %s failed", name)
