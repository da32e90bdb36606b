"""A delivery's body (services.common.nameko_ext.decode_body): read by `json.loads` without kombu's per-object hook,
and every body reads, or is refused, as kombu's own `Message.decode` reads or refuses it."""
from __future__ import annotations

import gzip
from typing import Any

import pytest
from kombu.message import Message

from services.common.nameko_ext import decode_body

TEXTS: list[bytes] = [
    b'{"a": 1, "b": [1, 2.5, "x", null, true], "c": {"d": "\\u6d4b\\u8bd5"}}',
    '{"说明": "卫生间水管漏水", "reading": 1.82}'.encode(),
    b'{"big": 123456789012345678901234567890}',
    b'{"neg": -9223372036854775809, "max": 9223372036854775807}',
    b'{"f": 0.1234567890123456789}',
    b'{"nan": NaN}', b'{"inf": Infinity}', b'{"s": "\\ud800"}',
    b'{"k": 1, "k": 2}', b"[]", b'"text"', b"3", b"[" * 900 + b"]" * 900, b"[" * 100000,
    b'{"__type__": "datetime", "__value__": "2026-12-08T01:02:03+00:00"}',
]


def message(body: bytes | str, content_type: str | None = "application/json",
            encoding: str | None = "utf-8") -> Message:
    return Message(body=body, content_type=content_type, content_encoding=encoding, accept={"application/json"})


def outcome(read: Any, msg: Message) -> tuple[str, str]:
    try:
        return "ok", repr(read(msg))
    except Exception as exc:
        return "error", type(exc).__name__


BODIES: list[Message] = [message(t) for t in TEXTS] + [message(t.decode()) for t in TEXTS] + [
    message(b"\xff\xfe{}"),  # not UTF-8
    message(b"\xef\xbb\xbf{}"),  # a byte order mark
    message(b'{"a": 1} trailing'),
    message(b""),
    message(b'{"a": 1}', content_type="text/plain"),
    message(b'{"a": 1}', content_type=None, encoding=None),
    message(gzip.compress(b'{"a": 1}'), encoding="gzip"),
    message(b'{"a": 1}', encoding="UTF-8"),
]


@pytest.mark.parametrize("msg", BODIES, ids=lambda m: f"{m.content_type}-{m.content_encoding}-{m.body[:20]!r}")
# Bodies as bytes and as text: py-amqp gives a UTF-8 body over as text.
def test_a_delivery_decodes_as_kombu_decodes_it(msg: Message) -> None:
    assert outcome(decode_body, msg) == outcome(lambda m: Message(
        body=m.body, content_type=m.content_type, content_encoding=m.content_encoding, accept=m.accept).decode(), msg)


def test_kombus_typed_values_are_still_its_own() -> None:
    typed = b'{"at": {"__type__": "datetime", "__value__": "2026-12-08T01:02:03+00:00"}}'
    for body in (typed, typed.decode()):
        assert type(decode_body(message(body))["at"]).__name__ == "datetime"


def test_a_plain_body_is_read_without_kombus_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Message) -> None:
        raise AssertionError("kombu's decoder was asked")

    monkeypatch.setattr(Message, "decode", refuse)
    for body in (b'{"a": [1, "x"]}', '{"a": [1, "x"]}'):
        assert decode_body(message(body)) == {"a": [1, "x"]}
