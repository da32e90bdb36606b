"""Reading a service's part of a request's timeline (written by UnitOfWork.publish)."""
from __future__ import annotations

from typing import Any

from services.common.db import UnitOfWork


def read(uow: UnitOfWork, request_no: str) -> list[dict[str, Any]]:
    with uow:
        rows = uow.execute(
            "SELECT at, event_type, data FROM timeline WHERE request_no = %s ORDER BY at, id", (request_no,)
        ).fetchall()
    return [{"at": r["at"].isoformat(), "event_type": r["event_type"], "data": r["data"]} for r in rows]
