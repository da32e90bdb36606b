"""JSON parameters (services.common.db.dumps, json_rows): orjson writes them; what they say is what json.dumps said,
and what orjson refuses is still written."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from psycopg.types.json import Jsonb

from services.common.db import _json_default, _json_param, dumps, json_rows

SHANGHAI = ZoneInfo("Asia/Shanghai")
VALUES: list[Any] = [
    datetime(2026, 12, 8, 0, 26, 57, 927699, tzinfo=UTC),
    datetime(2026, 1, 1, tzinfo=UTC),  # no microseconds: none written, as isoformat()
    datetime(2026, 12, 8, 8, 26, 57, 5, tzinfo=SHANGHAI),
    datetime(2026, 1, 1, 1, 2, 3),
    datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    date(2026, 3, 4),
    uuid.UUID("fe5e2d4c-4b7a-45b2-a887-35f5edab9cba"),
    {"说明": "卫生间水管漏水", "n": 3, "ok": True, "none": None, "list": [1, 2.5, "x"]},
    {1: "a", None: "b"},
    (1, 2, 3),
    1.5e-7,
    {"tags": {"b", "a"}},
    10**20,  # beyond 64 bits: orjson refuses it
    -(2**63) - 1,
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_a_parameter_says_what_json_dumps_said(value: Any) -> None:
    assert json.loads(dumps(value)) == json.loads(json.dumps(value, default=_json_default, ensure_ascii=False))


def test_chinese_text_is_written_as_is_not_escaped() -> None:
    assert dumps({"d": "漏水"}) == '{"d":"漏水"}'


def test_what_neither_can_write_is_refused_as_before() -> None:
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        dumps({"x": object()})


def test_rows_unwrap_jsonb_values_and_keep_columns_in_order() -> None:
    when = datetime(2026, 12, 8, tzinfo=UTC)
    text = json_rows(("id", "body", "at"), [(1, Jsonb({"k": [1, 2]}), when), (2, None, None)])
    assert json.loads(text) == [{"id": 1, "body": {"k": [1, 2]}, "at": when.isoformat()},
                                {"id": 2, "body": None, "at": None}]
    assert list(json.loads(text)[0]) == ["id", "body", "at"]
    assert _json_param(Jsonb({"a": 1})) == {"a": 1}
