"""Cost as the data grows: requests bulk-loaded into intake.requests (as the Postgres superuser, one server-side
INSERT ... SELECT over generate_series from a real registered row), then submit and list latency over HTTP."""
from __future__ import annotations

import time
from typing import Any

import psycopg

from bench import httpload

VARIED = {
    "request_no": "'BULK-' || lpad(g::text, 8, '0')",
    "request_id": "gen_random_uuid()",
    "source": "'bench-bulk'",
    "external_id": "'bulk-' || g",
    "property_id": "(ARRAY['LY', 'HY', 'JH'])[1 + g % 3]",
    "channel": "(ARRAY['phone', 'online', 'iot', 'call_centre', 'patrol', 'email'])[1 + g % 6]",
    "area": "'公共区域bulk-' || g",
    # Spread over the last 30 days, older than anything the run registered.
    "registered_at": "now() - interval '1 hour' - g * interval '2.5 seconds'",
    "reported_at": "now() - interval '1 hour' - g * interval '2.5 seconds'",
}

ENDPOINTS = {
    "submit": None,
    "list_newest": "/requests?page_size=50",
    "list_property_channel": "/requests?property_id=HY&channel=phone&page_size=50",
    "list_page_200": "/requests?property_id=HY&page=200&page_size=50",
}


def stored(conn: psycopg.Connection[Any]) -> int:
    return int(conn.execute("SELECT count(*) FROM intake.requests").fetchone()[0])  # type: ignore[index]


def fill_to(conn: psycopg.Connection[Any], total: int, start_g: int) -> tuple[int, float]:
    """Add rows until intake.requests holds `total`; returns (rows added, seconds)."""
    have = stored(conn)
    add = max(0, total - have)
    if add == 0:
        return 0, 0.0
    cols = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'intake' AND table_name = 'requests' "
        "AND is_generated = 'NEVER' ORDER BY ordinal_position").fetchall()]
    exprs = [VARIED.get(c, f"t.{c}") for c in cols]
    t0 = time.monotonic()
    conn.execute(
        f"INSERT INTO intake.requests ({', '.join(cols)}) SELECT {', '.join(exprs)} "
        f"FROM generate_series({start_g}, {start_g + add - 1}) g, "
        "(SELECT * FROM intake.requests WHERE source = 'bench' LIMIT 1) t")
    conn.execute("ANALYZE intake.requests")
    return add, round(time.monotonic() - t0, 1)


def measure(base_url: str, key: str, seconds: float, tag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, path in ENDPOINTS.items():
        if path is None:
            out[name] = httpload.submit(base_url, key, tag, 1, seconds)
        else:
            out[name] = httpload.get_path(base_url, key, path, 1, seconds)
    return out


def list_plan(conn: psycopg.Connection[Any]) -> list[str]:
    """The plan of the filtered list (services/intake/adapters/repository.py list_requests) at this size."""
    sql = ("SELECT r.*, c.name AS reporter_name, c.phone AS reporter_phone, c.caller_number "
           "FROM intake.requests r LEFT JOIN intake.contacts c USING (request_no) "
           "WHERE r.property_id = 'HY' AND r.channel = 'phone' "
           "ORDER BY r.registered_at DESC, r.request_no DESC LIMIT 51 OFFSET 0")
    return [r[0] for r in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql).fetchall()]
