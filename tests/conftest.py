"""Suite-wide settings: every test talks to its own database (propsvc_test) and RabbitMQ vhost
(propsvc_test), never to what `make run` uses. Set before anything imports psycopg or starts a process,
so the services the end-to-end tests start inherit them.
"""
from __future__ import annotations

import eventlet

# nameko >= 2.13 no longer monkey-patches under pytest; the services under test run on green threads,
# as they do under `nameko run`, so patch before anything imports socket, threading or psycopg.
eventlet.monkey_patch()

import os

os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")
TEST_DB = os.environ.setdefault("PROPSVC_TEST_DB", "propsvc_test")
TEST_VHOST = os.environ.setdefault("PROPSVC_TEST_VHOST", "propsvc_test")
os.environ["PROPSVC_DB"] = TEST_DB
os.environ["AMQP_URI"] = f"pyamqp://guest:guest@127.0.0.1:5672/{TEST_VHOST}"
os.environ.setdefault("RABBIT_API", "http://guest:guest@127.0.0.1:15672/api")


def pytest_addoption(parser):  # type: ignore[no-untyped-def]
    parser.addoption("--compose", action="store_true", default=False,
                     help="run the end-to-end suite against deploy/docker-compose.yml (needs a Docker engine)")
