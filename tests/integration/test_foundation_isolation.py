"""Each service's role owns its schema and nothing else (issue 2, item 3)."""
from __future__ import annotations

import itertools
import os

import psycopg
import pytest

from services.common.bootstrap import ROLES, bootstrap
from services.common.db import migrate
from services.common.config import REPO_ROOT
from tests.support import admin_conn, db, db_url


@pytest.fixture(scope="module")
def migrated(infra: None) -> None:
    for role in ROLES:
        migrate(db_url(role), REPO_ROOT / "services" / role / "migrations", role)


@pytest.mark.parametrize("role,other", list(itertools.permutations(ROLES, 2)))
def test_a_service_role_is_refused_on_every_other_services_tables(migrated: None, role: str, other: str) -> None:
    with db(role) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT count(*) FROM {other}.outbox")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"CREATE TABLE {other}.intruder (x int)")


@pytest.mark.parametrize("role", ROLES)
def test_a_service_role_reads_its_own_schema_but_cannot_create_in_public(migrated: None, role: str) -> None:
    with db(role) as conn:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() is not None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.intruder (x int)")


def test_service_roles_are_not_superusers_and_own_only_their_schema(migrated: None) -> None:
    with admin_conn() as conn:
        rows = conn.execute(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = ANY(%s)",
            (list(ROLES),)).fetchall()
        assert {r[0] for r in rows} == set(ROLES)
        assert all(not (r[1] or r[2] or r[3]) for r in rows)
        owners = dict(conn.execute(
            "SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = ANY(%s)",
            (list(ROLES),)).fetchall())
        assert owners == {r: r for r in ROLES}


def test_bootstrap_and_migrations_are_safe_to_run_twice(migrated: None) -> None:
    bootstrap(os.environ["PROPSVC_DB"])
    for role in ROLES:
        assert migrate(db_url(role), REPO_ROOT / "services" / role / "migrations", role) == []
