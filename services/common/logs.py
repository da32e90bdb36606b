"""JSON-lines logging carrying request number and correlation id, with residents' PII scrubbed.

The correlation id and request number live in a context variable set by the messaging entrypoints
and the HTTP gateway for the duration of one worker; eventlet gives each green thread its own
context, so concurrent workers do not see each other's ids.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import datetime, UTC
from typing import Any

# Never mutated in place: bind() sets a new dict, so the shared empty default is safe.
_EMPTY: dict[str, str] = {}
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_context", default=_EMPTY)

# Chinese mobile numbers and landlines; a last line of defence, the code never logs contact fields.
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)(0\d{2,3})-?\d{3,4}(\d{4})(?!\d)")


def scrub(text: str) -> str:
    text = _PHONE.sub(r"\1****\2", text)
    return _LANDLINE.sub(r"\1-****\2", text)


def bind(**values: str | None) -> contextvars.Token[dict[str, str]]:
    merged = dict(_context.get())
    merged.update({k: v for k, v in values.items() if v})
    return _context.set(merged)


def unbind(token: contextvars.Token[dict[str, str]]) -> None:
    _context.reset(token)


def current() -> dict[str, str]:
    return _context.get()


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        entry.update(_context.get())
        for key in ("request_no", "correlation_id", "event_type", "event_id"):
            value = getattr(record, key, None)
            if value:
                entry[key] = str(value)
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class _ExpectedWorkerErrors(logging.Filter):
    """nameko logs an entrypoint's expected exceptions with a traceback at WARNING; the consumer that
    expects them logs the outcome itself (retry, dead letter), so nameko's line is kept at DEBUG, short."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("(expected)"):
            record.exc_info = None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(_ExpectedWorkerErrors())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # werkzeug's access log line carries query strings; ours (gateway) logs requests itself.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("jieba").setLevel(logging.WARNING)
