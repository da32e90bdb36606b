"""Create, list and revoke API keys. The plaintext key is printed once, at creation, and never stored.

    python -m services.gateway.keys create --client callcentre --scopes submit,read
    python -m services.gateway.keys revoke <key_id>
    python -m services.gateway.keys list
"""
from __future__ import annotations

import services.common  # noqa: F401

import argparse
import json
import os
import sys

import psycopg

from services.common.db import dsn_for_psycopg, migrate
from services.common.runner import process_specs
from services.gateway.adapters import keys as repo
from services.gateway.domain import keys
from services.common.config import REPO_ROOT


def database_url() -> str:
    if "DATABASE_URL" in os.environ:
        return os.environ["DATABASE_URL"]
    return next(s for s in process_specs() if s.name == "gateway").environment["DATABASE_URL"]


def create_key(client: str, scopes: list[str], url: str | None = None) -> tuple[str, str]:
    url = url or database_url()
    migrate(url, REPO_ROOT / "services" / "gateway" / "migrations", "gateway")
    new = keys.generate()
    with psycopg.connect(dsn_for_psycopg(url), options="-c search_path=gateway") as conn:
        repo.insert(conn, new, client, keys.validate_scopes(scopes))
    return new.key_id, new.plaintext


def revoke_key(key_id: str, url: str | None = None) -> bool:
    with psycopg.connect(dsn_for_psycopg(url or database_url()), options="-c search_path=gateway") as conn:
        return repo.revoke(conn, key_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("--client", required=True)
    c.add_argument("--scopes", required=True, help=f"comma-separated: {', '.join(keys.SCOPES)}")
    r = sub.add_parser("revoke")
    r.add_argument("key_id")
    sub.add_parser("list")
    args = parser.parse_args(argv)
    if args.cmd == "create":
        key_id, plaintext = create_key(args.client, [s.strip() for s in args.scopes.split(",") if s.strip()])
        print(json.dumps({"key_id": key_id, "key": plaintext, "note": "shown once; store it now"}))
    elif args.cmd == "revoke":
        if not revoke_key(args.key_id):
            print(f"no active key {args.key_id}", file=sys.stderr)
            return 1
        print(json.dumps({"revoked": args.key_id}))
    else:
        with psycopg.connect(dsn_for_psycopg(database_url()), options="-c search_path=gateway") as conn:
            print(json.dumps(repo.list_keys(conn), default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
