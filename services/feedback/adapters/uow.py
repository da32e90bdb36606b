"""Workaround for a plumbing bug: UnitOfWork sets `row_factory = dict_row` on a pooled connection and returns it to
the pool that way, so the outbox relay (which unpacks tuples) and the outbox metrics collector (row[0]) later fail
on that connection with TypeError / KeyError. This unit of work puts the default row factory back before the
connection returns to the pool. Remove once services/common/db.py resets it itself."""
from __future__ import annotations

from psycopg.rows import tuple_row

from services.common.db import UnitOfWork


class ResettingUnitOfWork(UnitOfWork):
    def __exit__(self, *exc: object) -> None:
        try:
            if not self.conn.closed:
                self.conn.row_factory = tuple_row  # type: ignore[assignment]
        finally:
            super().__exit__(*exc)


def resetting(uow: UnitOfWork) -> ResettingUnitOfWork:
    return ResettingUnitOfWork(uow.pool, uow.service, on_commit=uow._on_commit)
