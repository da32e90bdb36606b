"""RPC answers as data, not exceptions: {"status": 200, "data": ...} or {"status": 4xx, "errors": {field: [...]}}.

nameko serialises a remote exception to its type name and text; carrying the status and the
per-field errors as data keeps the gateway's 4xx answers exact (which field, which rule).
"""
from __future__ import annotations

import services.common  # noqa: F401  (sets PSYCOPG_WAIT_FUNC before psycopg is imported)

import functools
import logging
from typing import Any
from collections.abc import Callable

import psycopg
import psycopg_pool
from marshmallow import ValidationError
from nameko.rpc import Rpc as NamekoRpc

from services.common.domain import DomainError, InvalidTransition, NotFound

log = logging.getLogger(__name__)


def ok(data: Any, status: int = 200) -> dict[str, Any]:
    return {"status": status, "data": data}


def error(status: int, errors: dict[str, Any], code: str) -> dict[str, Any]:
    return {"status": status, "errors": errors, "code": code}


def domain_errors(exc: DomainError) -> dict[str, Any]:
    """Per-field messages of a refusal; a domain error may carry several (`errors`) or one (`field`)."""
    many = getattr(exc, "errors", None)
    if isinstance(many, dict) and many:
        return {k: v if isinstance(v, list) else [v] for k, v in many.items()}
    return {exc.field or "_": [exc.message]}


def answer(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an RPC method body so that refusals become 4xx answers; other failures still raise (5xx)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            result = fn(*args, **kwargs)
        except ValidationError as exc:
            return error(422, exc.messages if isinstance(exc.messages, dict) else {"_": exc.messages}, "invalid")
        except NotFound as exc:
            return error(404, {exc.field or "_": [exc.message]}, exc.code)
        except InvalidTransition as exc:
            return error(409, {exc.field or "state": [exc.message], "current_state": [exc.current_state]}, exc.code)
        except DomainError as exc:
            return error(422, domain_errors(exc), exc.code)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            # The database is restarting or unreachable: nothing was committed; the caller may retry.
            log.warning("%s: database unavailable (%s)", fn.__name__, type(exc).__name__)
            return error(503, {"_": ["database temporarily unavailable; retry with the same Idempotency-Key"]},
                         "unavailable")
        if isinstance(result, dict) and "status" in result and ("data" in result or "errors" in result):
            return result
        return ok(result)

    return wrapper


class Rpc(NamekoRpc):
    """nameko's RPC entrypoint, except that a reply which cannot be sent (the broker restarting, the
    connection cut) is logged instead of killing the service. The request is still acked when possible so
    it does not run twice; the caller times out and answers 503, and a client retries with its
    Idempotency-Key."""

    def handle_result(self, message: Any, worker_ctx: Any, result: Any, exc_info: Any) -> Any:
        try:
            return super().handle_result(message, worker_ctx, result, exc_info)
        except Exception as exc:
            log.warning("could not reply to %s (%s); the caller will retry", worker_ctx.entrypoint.method_name,
                        type(exc).__name__)
            try:
                self.rpc_consumer.queue_consumer.ack_message(message)
            except Exception:  # the connection is gone: the broker redelivers, the handlers are idempotent
                pass
            return result, exc_info


rpc = Rpc.decorator
