"""Create the platform's database, one login role and one schema per service, as the Postgres superuser.

Each role owns exactly its schema, has no privilege on the others' and cannot CREATE in `public`.
Safe to run twice. Services then migrate their own schema, as their own role, when they start.

    python -m services.common.bootstrap            # PG_ADMIN_URL, PROPSVC_DB, <SERVICE>_DB_PASSWORD
"""
from __future__ import annotations

import services.common  # noqa: F401

import argparse
import os

import psycopg
from psycopg import sql

ROLES = ("gateway", "intake", "dispatch", "escalation", "feedback")
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url(database: str | None = None) -> str:
    url = os.environ.get("PG_ADMIN_URL", DEFAULT_ADMIN_URL)
    if database:
        base, _, _ = url.rpartition("/")
        url = f"{base}/{database}"
    return url


def bootstrap(database: str, *, drop: bool = False) -> None:
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        for role in ROLES:
            password = os.environ.get(f"{role.upper()}_DB_PASSWORD", role)
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL(
                "{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD {}"
            ).format(sql.SQL(verb), sql.Identifier(role), sql.Literal(password)))
        if drop:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    with psycopg.connect(admin_url(database), autocommit=True) as conn:
        db = sql.Identifier(database)
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        for role in ROLES:
            r = sql.Identifier(role)
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, r))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(r, r))
            conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(r))
            conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}").format(r, db, r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", default=os.environ.get("PROPSVC_DB", "propsvc"))
    parser.add_argument("--drop", action="store_true", help="drop the database first (tests only)")
    args = parser.parse_args()
    bootstrap(args.database, drop=args.drop)
    print(f"database {args.database}: roles and schemas ready")


if __name__ == "__main__":
    main()
