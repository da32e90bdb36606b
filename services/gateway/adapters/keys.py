"""API keys in the gateway's own schema."""
from __future__ import annotations

from typing import Any

from services.gateway.domain.keys import ApiKey, NewKey


def find(conn: Any, key_id: str) -> ApiKey | None:
    row = conn.execute(
        "SELECT key_id, client, secret_sha256, scopes, revoked_at FROM api_keys WHERE key_id = %s", (key_id,)
    ).fetchone()
    if row is None:
        return None
    if isinstance(row, dict):
        row = (row["key_id"], row["client"], row["secret_sha256"], row["scopes"], row["revoked_at"])
    return ApiKey(row[0], row[1], bytes(row[2]), tuple(row[3]), row[4] is not None)


def insert(conn: Any, key: NewKey, client: str, scopes: list[str]) -> None:
    conn.execute("INSERT INTO api_keys (key_id, client, secret_sha256, scopes) VALUES (%s, %s, %s, %s)",
                 (key.key_id, client, key.secret_sha256, scopes))


def revoke(conn: Any, key_id: str) -> bool:
    cur = conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL", (key_id,))
    return cur.rowcount == 1


def list_keys(conn: Any) -> list[dict[str, Any]]:
    columns = ("key_id", "client", "scopes", "created_at", "revoked_at")
    rows = conn.execute(f"SELECT {', '.join(columns)} FROM api_keys ORDER BY created_at").fetchall()
    return [r if isinstance(r, dict) else dict(zip(columns, r, strict=True)) for r in rows]
