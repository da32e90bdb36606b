from __future__ import annotations

from typing import Any
from collections.abc import Callable, Iterator

import pytest
from nameko.containers import ServiceContainer

from services.common import topology
from services.common.bootstrap import bootstrap
from tests.support import amqp_uri, db_url, rabbit_api, reset_vhost, vhost
import os
import urllib.parse


@pytest.fixture(scope="session")
def infra() -> None:
    """A fresh test database (roles, schemas) and an empty RabbitMQ vhost with the full topology."""
    reset_vhost()
    bootstrap(os.environ["PROPSVC_DB"], drop=True)
    topology.declare(amqp_uri())


@pytest.fixture
def run_service(infra: None) -> Iterator[Callable[..., ServiceContainer]]:
    """Start a nameko service class in this process against the real Postgres and RabbitMQ."""
    containers: list[ServiceContainer] = []

    def start(cls: type, **config: Any) -> ServiceContainer:
        # Every test starts its service on an empty queue: events earlier tests published to it (the queue is
        # bound whether or not its consumer runs) would otherwise be worked through first.
        for queue in (f"{cls.name}.events", f"{cls.name}.inbound"):
            rabbit_api("DELETE", f"/queues/{vhost()}/{urllib.parse.quote(queue, safe='')}/contents")
        cfg = {"AMQP_URI": amqp_uri(), "DATABASE_URL": db_url(cls.name), "max_workers": 10, "METRICS_PORT": 0,
               "LOG_LEVEL": "WARNING", **config}
        container = ServiceContainer(cls, cfg)
        container.start()
        containers.append(container)
        return container

    yield start
    for c in containers:
        c.stop()
