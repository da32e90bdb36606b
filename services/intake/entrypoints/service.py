"""intake's nameko service: load the payload, build a command, call the handler."""
from __future__ import annotations

import services.common  # noqa: F401

from typing import Any

from marshmallow import ValidationError
from nameko.dependency_providers import Config
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc

from services.common import rpc as answers
from services.common import timeline
from services.common.config import REPO_ROOT
from services.common.contract.inbound import load_inbound
from services.common.nameko_ext import Observability, Store, consume_events, consume_inbound
from services.intake.adapters.dictionary import load_dictionary
from services.intake.domain.classification import Classifier
from services.intake.domain.commands import RegisterRequest
from services.intake.service_layer import handlers


class ClassifierProvider(DependencyProvider):
    """The classification dictionary, read once at start."""

    def setup(self) -> None:
        path = self.container.config.get("CLASSIFICATION_DICTIONARY", "services/intake/classification.yml")
        self.classifier = Classifier(load_dictionary(REPO_ROOT / path))
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


class IntakeService:
    name = "intake"

    obs = Observability()
    uow = Store(REPO_ROOT / "services" / "intake" / "migrations")
    config = Config()
    classifier = ClassifierProvider()

    @rpc
    @answers.answer
    def submit(self, payload: dict[str, Any]) -> Any:
        result = handlers.register(self.uow(), register_command(load_inbound(payload)), self.classifier)
        return answers.ok(result, 201 if result["created"] else 200)

    @consume_inbound(loader=load_inbound_message)
    def on_inbound(self, data: dict[str, Any]) -> Any:
        return handlers.register(self.uow(), register_command(data), self.classifier)

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
        return {"timeline": timeline.read(self.uow(), request_no)}
