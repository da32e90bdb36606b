"""intake's nameko service: load the payload, build a command, call the handler."""
from __future__ import annotations

import services.common  # noqa: F401

from datetime import datetime
from typing import Any

from marshmallow import ValidationError
from nameko.dependency_providers import Config
from nameko.extensions import DependencyProvider
from services.common.rpc import rpc

from services.common import rpc as answers
from services.common import timeline
from services.common.config import REPO_ROOT
from services.common.contract.inbound import load_inbound
from services.common.nameko_ext import Observability, Store, consume_events, consume_inbound
from services.intake.adapters import repository as repo
from services.intake.adapters.dictionary import bounded_segmentation_dictionary, load_dictionary
from services.intake.domain.classification import Classifier
from services.intake.domain.commands import RegisterRequest
from services.intake.service_layer import handlers


class ClassifierProvider(DependencyProvider):
    """The classification dictionary, read once at start."""

    def setup(self) -> None:
        path = self.container.config.get("CLASSIFICATION_DICTIONARY", "services/intake/classification.yml")
        words = int(self.container.config.get("JIEBA_MAX_WORDS", 60000))
        self.classifier = Classifier(load_dictionary(REPO_ROOT / path), bounded_segmentation_dictionary(words))
        self.classifier.classify("预热")  # load jieba's dictionary now, not on the first resident's request

    def get_dependency(self, worker_ctx: Any) -> Classifier:
        return self.classifier


def load_inbound_message(body: Any) -> dict[str, Any]:
    data = load_inbound(body)
    if not data.get("external_id"):
        raise ValidationError({"external_id": ["required on the inbound exchange (the idempotency key)"]})
    return data


def register_command(data: dict[str, Any]) -> RegisterRequest:
    reporter = data["reporter"]
    return RegisterRequest(
        source=data["source"], external_id=data.get("external_id"), channel=data["channel"],
        property_id=data["property_id"], building=data.get("building"), unit=data.get("unit"),
        area=data.get("area"), reporter_kind=reporter["kind"], reporter_name=reporter.get("name"),
        reporter_phone=reporter.get("phone"), description=data["description"], agent_id=data.get("agent_id"),
        category=data.get("category"), subcategory=data.get("subcategory"), priority=data.get("priority"),
        paid_service=data.get("paid_service", False), vip=data.get("vip", False),
        compensation_demanded=data.get("compensation_demanded", False),
        details={k: v for k, v in (data.get("channel_details") or {}).items() if v is not None},
        reported_at=data.get("reported_at"),
    )


class RulesProvider(DependencyProvider):
    """Duplicate and cluster rules from configuration, read once; primes the registration counter's label
    children from the properties table once the store is up."""

    def setup(self) -> None:
        self.rules = handlers.rules_from_config(self.container.config)

    def start(self) -> None:
        store = next(d for d in self.container.dependencies if isinstance(d, Store))
        with store.uow() as uow:
            handlers.prime_metrics(repo.property_ids(uow))

    def get_dependency(self, worker_ctx: Any) -> handlers.Rules:
        return self.rules


def parse_time(value: Any, field: str) -> datetime:
    """RPC carries times as ISO text; the domain wants aware datetimes."""
    if isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValidationError({field: ["not an ISO 8601 time"]}) from None
    if parsed.tzinfo is None:
        raise ValidationError({field: ["needs a timezone offset"]})
    return parsed


def body_of(payload: Any) -> Any:
    # Typed Any: the domain validates every field (naming each bad one); None is refused there, not here.
    if not isinstance(payload, dict):
        raise ValidationError({"_body": ["a JSON object is required"]})
    return payload


class IntakeService:
    name = "intake"

    obs = Observability()
    uow = Store(REPO_ROOT / "services" / "intake" / "migrations")
    config = Config()
    classifier = ClassifierProvider()
    rules = RulesProvider()

    @rpc
    @answers.answer
    def submit(self, payload: dict[str, Any]) -> Any:
        result = handlers.register(self.uow(), register_command(load_inbound(payload)), self.classifier, self.rules)
        return answers.ok(result, 201 if result["created"] else 200)

    @consume_inbound(loader=load_inbound_message)
    def on_inbound(self, data: dict[str, Any]) -> Any:
        uow = self.uow()
        return handlers.register(uow, register_command(data), self.classifier, self.rules,
                                 coming=lambda: map(register_command, uow.coming()))

    # -- staff actions on a request (each answers with the request's state and its owner) --

    @rpc
    @answers.answer
    def acknowledge(self, request_no: str, payload: dict[str, Any]) -> Any:
        b = body_of(payload)
        promised = parse_time(b.get("promised_at"), "promised_at")
        return handlers.act(self.uow(), request_no, lambda r, now: r.acknowledge(
            how=b.get("how"), promised_at=promised, by=b.get("by"), now=now))

    @rpc
    @answers.answer
    def reclassify(self, request_no: str, payload: dict[str, Any]) -> Any:
        b = body_of(payload)
        return handlers.act(self.uow(), request_no, lambda r, now: r.reclassify(
            category=b.get("category"), subcategory=b.get("subcategory"), priority=b.get("priority"),
            emergency=b.get("emergency"), validity=b.get("validity"), reason=b.get("reason"), by=b.get("by"),
            now=now))

    @rpc
    @answers.answer
    def answer_at_desk(self, request_no: str, payload: dict[str, Any]) -> Any:
        b = body_of(payload)
        return handlers.act(self.uow(), request_no,
                            lambda r, now: r.answer_at_desk(answer=b.get("answer"), by=b.get("by"), now=now))

    @rpc
    @answers.answer
    def refer(self, request_no: str, payload: dict[str, Any]) -> Any:
        b = body_of(payload)
        return handlers.act(self.uow(), request_no,
                            lambda r, now: r.refer_consultation(note=b.get("note"), by=b.get("by"), now=now))

    @rpc
    @answers.answer
    def hand_over(self, request_no: str, payload: dict[str, Any]) -> Any:
        b = body_of(payload)
        return handlers.act(self.uow(), request_no, lambda r, now: r.hand_over(
            to_agent=b.get("to_agent"), reason=b.get("reason"), by=b.get("by"), now=now))

    @rpc
    @answers.answer
    def cancel(self, request_no: str, payload: dict[str, Any]) -> Any:
        b = body_of(payload)
        return handlers.act(self.uow(), request_no,
                            lambda r, now: r.cancel(reason=b.get("reason"), by=b.get("by"), now=now))

    @rpc
    @answers.answer
    def close(self, request_no: str, payload: dict[str, Any]) -> Any:
        b = body_of(payload)
        return handlers.act(self.uow(), request_no, lambda r, now: r.close(
            by=b.get("by"), reason=b.get("reason") or "resolved", now=now))

    # -- staff actions that start or stop SLA clocks (escalation consumes their events) --

    @rpc
    @answers.answer
    def call_in_supervisor(self, request_no: str, payload: dict[str, Any]) -> Any:
        b = body_of(payload)
        return handlers.act(self.uow(), request_no, lambda r, now: r.call_in_supervisor(
            supervisor=b.get("supervisor"), reason=b.get("reason"), by=b.get("by"), now=now))

    @rpc
    @answers.answer
    def supervisor_answer(self, request_no: str, payload: dict[str, Any]) -> Any:
        b = body_of(payload)
        return handlers.act(self.uow(), request_no, lambda r, now: r.record_supervisor_answer(
            answer=b.get("answer"), by=b.get("by"), now=now))

    @rpc
    @answers.answer
    def mark_complex(self, request_no: str, payload: dict[str, Any]) -> Any:
        b = body_of(payload)
        return handlers.act(self.uow(), request_no,
                            lambda r, now: r.mark_complex(reason=b.get("reason"), by=b.get("by"), now=now))

    @rpc
    @answers.answer
    def give_plan(self, request_no: str, payload: dict[str, Any]) -> Any:
        b = body_of(payload)
        return handlers.act(self.uow(), request_no,
                            lambda r, now: r.give_plan(plan=b.get("plan"), by=b.get("by"), now=now))

    @rpc
    @answers.answer
    def first_response(self, request_no: str, payload: dict[str, Any]) -> Any:
        b = body_of(payload)
        return handlers.act(self.uow(), request_no, lambda r, now: r.give_first_response(
            response=b.get("response"), by=b.get("by"), now=now))

    @rpc
    @answers.answer
    def reply_to_complaint(self, request_no: str, payload: dict[str, Any]) -> Any:
        b = body_of(payload)
        return handlers.act(self.uow(), request_no,
                            lambda r, now: r.reply_to_complaint(reply=b.get("reply"), by=b.get("by"), now=now))

    # -- letters registry (来函) --

    @rpc
    @answers.answer
    def log_letter(self, payload: dict[str, Any]) -> Any:
        result = handlers.log_letter(self.uow(), body_of(payload), self.classifier, self.rules)
        return answers.ok(result, 201 if result["created"] else 200)

    @rpc
    @answers.answer
    def decide_letter(self, letter_id: str, payload: dict[str, Any]) -> Any:
        return handlers.decide_letter(self.uow(), letter_id, body_of(payload), self.classifier, self.rules)

    @rpc
    @answers.answer
    def list_letters(self, query: dict[str, Any], pii: bool = False) -> Any:
        return handlers.list_letters(self.uow(), query, pii)

    @consume_events()
    def on_event(self, envelope: dict[str, Any]) -> Any:
        if envelope["event_type"] == "WorkOrderClosed":
            return handlers.close_on_work_done(self.uow(), envelope)
        return None

    @rpc
    @answers.answer
    def get_request(self, request_no: str, pii: bool = False) -> Any:
        return handlers.get_request(self.uow(), request_no, pii)

    @rpc
    @answers.answer
    def list_requests(self, query: dict[str, Any], pii: bool = False) -> Any:
        return handlers.list_requests(self.uow(), query, pii)

    @rpc
    @answers.answer
    def timeline(self, request_no: str) -> Any:
        return {"timeline": timeline.read(self.uow(), request_no), "state": handlers.state(self.uow(), request_no)}
