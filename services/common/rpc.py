"""RPC answers as data, not exceptions: {"status": 200, "data": ...} or {"status": 4xx, "errors": {field: [...]}}.

nameko serialises a remote exception to its type name and text; carrying the status and the
per-field errors as data keeps the gateway's 4xx answers exact (which field, which rule).
"""
from __future__ import annotations

import functools
import logging
from typing import Any
from collections.abc import Callable

from marshmallow import ValidationError

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
        if isinstance(result, dict) and "status" in result and ("data" in result or "errors" in result):
            return result
        return ok(result)

    return wrapper
