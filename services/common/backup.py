"""Backup and restore of the platform's database (every service's schema), taken while traffic flows.

    python -m services.common.backup dump --database propsvc --out backups/propsvc.dump
    python -m services.common.backup restore --file backups/propsvc.dump --database propsvc_restored
    python -m services.common.backup republish --database propsvc_restored --since 2026-05-01T00:00:00+00:00

Both connect as the Postgres superuser of PG_ADMIN_URL (the convention of services/common/bootstrap.py) and need
pg_dump / pg_restore of at least the server's major version (PG_DUMP / PG_RESTORE name other binaries).

`dump` exports one snapshot, runs `pg_dump --format=custom --snapshot=...` on it and counts every table's rows
in that same snapshot, so the file and its manifest (`<out>.manifest.json`: counts, snapshot time, sha256)
describe one instant: every transaction committed before it, none after. The snapshot is held open until the
dump is written, so the counts cannot drift from the file.

`restore` bootstraps the new database (roles, schemas, grants, search paths: cluster-wide roles are created
there, not taken from the dump), restores into it in one transaction, skipping the dump's CREATE SCHEMA
entries that the bootstrap already made (same owners), then verifies the manifest's row counts and that each
service role owns its schema's tables.

The broker is not in the backup. Events still in an outbox at the snapshot are published by the relays when
the services start. Events that had left the outbox but were not yet consumed (in a queue at the snapshot)
are found by `republish`, which `restore` runs: an event in a producer's timeline that a subscriber's inbox
does not hold is put back in the producer's outbox with its original event id. Consumers that already have it
skip it (inbox); the others apply it. Only events with a request number are in the timeline; see
docs/operations.md, "Backup and restore", for what that leaves out.
"""
from __future__ import annotations

import services.common  # noqa: F401  (sets PSYCOPG_WAIT_FUNC before psycopg is imported)

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from services.common.bootstrap import ROLES, admin_url, bootstrap

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = 1
# Unconsumed events older than this before the snapshot are not republished: an event that old with no inbox
# row was dead-lettered or deliberately ignored long ago, not in flight.
DEFAULT_REPUBLISH_WINDOW = timedelta(hours=24)

_USER_TABLES = """
    SELECT n.nspname AS schema, c.relname AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
    ORDER BY 1, 2
"""


class BackupError(Exception):
    pass


def _binary(name: str) -> str:
    path = os.environ.get(name.upper(), "") or shutil.which(name)
    if not path:
        raise BackupError(f"{name} not found: install postgresql-client (the server's major version or newer)")
    return path


def manifest_path(dump_file: Path) -> Path:
    return dump_file.with_name(dump_file.name + MANIFEST_SUFFIX)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _count_tables(conn: psycopg.Connection[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for schema, name in conn.execute(_USER_TABLES).fetchall():
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema),
                                                                       sql.Identifier(name))).fetchone()
        counts[f"{schema}.{name}"] = int(row[0]) if row else 0
    return counts


# ------------------------------------------------------------------------------------------------------ dump
def dump(database: str, out: Path) -> dict[str, Any]:
    """Write a custom-format dump of `database` and its manifest; returns the manifest."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # Written under a temporary name and renamed at the end: a failed or killed dump never leaves a file that
    # looks like a backup.
    partial = out.with_name(out.name + ".partial")
    with psycopg.connect(admin_url(database), autocommit=True, application_name="backup") as conn:
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace").fetchall()}
        missing = [r for r in ROLES if r not in schemas]
        if missing:
            raise BackupError(f"database {database} lacks the schemas {missing}: not a bootstrapped platform database")
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        # The first statement takes the snapshot: the backup point.
        row = conn.execute("SELECT pg_export_snapshot(), clock_timestamp(), current_setting('server_version')"
                           ).fetchone()
        assert row is not None
        snapshot, snapshot_at, server_version = row
        cmd = [_binary("pg_dump"), "--format=custom", f"--snapshot={snapshot}",
               # Never queue behind a migration's exclusive lock (and make every service queue behind the dump).
               "--lock-wait-timeout=60s", f"--file={partial}", f"--dbname={admin_url(database)}"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # Counted in the exported snapshot while pg_dump copies the same one.
            counts = _count_tables(conn)
        finally:
            _, err = proc.communicate()
        conn.execute("COMMIT")
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed ({proc.returncode}): {err.strip()}")
    partial.replace(out)
    version = subprocess.run([_binary("pg_dump"), "--version"], capture_output=True, text=True).stdout.strip()
    manifest = {
        "format": MANIFEST_FORMAT,
        "database": database,
        "snapshot_at": snapshot_at.astimezone(UTC).isoformat(),
        "seconds": round(time.monotonic() - started, 3),
        "size_bytes": out.stat().st_size,
        "sha256": _sha256(out),
        "pg_dump": version,
        "server_version": server_version,
        "schemas": list(ROLES),
        "rows": sum(counts.values()),
        "tables": counts,
    }
    tmp = manifest_path(out).with_suffix(".partial")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(manifest_path(out))
    return manifest


# --------------------------------------------------------------------------------------------------- restore
_TOC_SCHEMA = re.compile(r"^\d+; \d+ \d+ SCHEMA - (\S+) ")


def _restore_list(dump_file: Path) -> tuple[str, list[str]]:
    """The dump's table of contents without the CREATE SCHEMA entries the bootstrap makes itself."""
    toc = subprocess.run([_binary("pg_restore"), "--list", str(dump_file)], capture_output=True, text=True)
    if toc.returncode != 0:
        raise BackupError(f"not a readable custom-format dump: {toc.stderr.strip()}")
    managed = {*ROLES, "public"}
    kept, skipped = [], []
    for line in toc.stdout.splitlines():
        m = _TOC_SCHEMA.match(line)
        if m and m.group(1) in managed:
            skipped.append(m.group(1))
            kept.append(";" + line)
        else:
            kept.append(line)
    return "\n".join(kept) + "\n", skipped


def _target_state(database: str) -> tuple[bool, int, int]:
    """(exists, tables in the platform's schemas, other sessions connected)."""
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            return False, 0, 0
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                           (database,)).fetchone()
        sessions = int(row[0]) if row else 0
    with psycopg.connect(admin_url(database), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = ANY(%s)", (list(ROLES),)).fetchone()
        return True, int(row[0]) if row else 0, sessions


def verify(database: str, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """Row counts equal to the manifest's, and every table owned by the role of its schema."""
    with psycopg.connect(admin_url(database), autocommit=True) as conn:
        counts = _count_tables(conn)
        wrong_owner = conn.execute(
            "SELECT schemaname || '.' || tablename || ' owned by ' || tableowner FROM pg_tables "
            "WHERE schemaname = ANY(%s) AND tableowner <> schemaname ORDER BY 1", (list(ROLES),)).fetchall()
    problems = [r[0] for r in wrong_owner]
    if manifest is not None:
        expected: dict[str, int] = manifest["tables"]
        for table in sorted(set(expected) | set(counts)):
            if expected.get(table) != counts.get(table):
                problems.append(f"{table}: {counts.get(table)} rows restored, {expected.get(table)} in the backup")
    if problems:
        raise BackupError("restored database does not match the backup:\n  " + "\n  ".join(problems))
    return {"tables": len(counts), "rows": sum(counts.values()), "checked_against_manifest": manifest is not None}


def restore(dump_file: Path, database: str, *, drop: bool = False, republish_events: bool = True,
            window: timedelta = DEFAULT_REPUBLISH_WINDOW) -> dict[str, Any]:
    dump_file = Path(dump_file)
    started = time.monotonic()
    manifest = None
    if manifest_path(dump_file).exists():
        manifest = json.loads(manifest_path(dump_file).read_text(encoding="utf-8"))
        if manifest.get("sha256") != _sha256(dump_file):
            raise BackupError(f"{dump_file} does not match its manifest's sha256: damaged or from another backup")
    exists, tables, sessions = _target_state(database)
    if exists and tables and not drop:
        raise BackupError(f"database {database} already holds {tables} platform tables; restore into a new "
                          "database (or pass --drop to replace it)")
    if exists and sessions:
        raise BackupError(f"{sessions} sessions are connected to {database}: stop the services using it first")
    toc, skipped = _restore_list(dump_file)
    bootstrap(database, drop=drop)
    with tempfile.NamedTemporaryFile("w", suffix=".toc", encoding="utf-8") as fh:
        fh.write(toc)
        fh.flush()
        res = subprocess.run([_binary("pg_restore"), "--exit-on-error", "--single-transaction",
                              f"--use-list={fh.name}", f"--dbname={admin_url(database)}", str(dump_file)],
                             capture_output=True, text=True)
    if res.returncode != 0:
        raise BackupError(f"pg_restore failed ({res.returncode}), nothing restored: {res.stderr.strip()}")
    restored_at = time.monotonic()
    with psycopg.connect(admin_url(database), autocommit=True) as conn:
        for schema in ROLES:
            # A migration lock held at the backup instant belongs to a process that no longer exists: left
            # there, it would stop every service's migrations at start.
            if conn.execute("SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'yoyo_lock'",
                            (schema,)).fetchone():
                conn.execute(sql.SQL("DELETE FROM {}.yoyo_lock").format(sql.Identifier(schema)))
        # pg_restore does not restore planner statistics.
        conn.execute("ANALYZE")
    checked = verify(database, manifest)
    summary: dict[str, Any] = {
        "database": database, "file": str(dump_file), "snapshot_at": manifest and manifest["snapshot_at"],
        "restore_seconds": round(restored_at - started, 3), **checked, "schemas_from_bootstrap": skipped,
    }
    if republish_events:
        since = (datetime.fromisoformat(manifest["snapshot_at"]) if manifest else datetime.now(UTC)) - window
        summary["republished"] = republish(database, since)
    summary["seconds"] = round(time.monotonic() - started, 3)
    return summary


# ------------------------------------------------------------------------------------------------- republish
def republish(database: str, since: datetime) -> dict[str, int]:
    """Put back in each producer's outbox the events (from `since`) that a subscriber has not consumed.

    Idempotent: an event already in the outbox is not added twice, and consumers skip what their inbox holds.
    """
    from services.common import topology
    from services.common.contract.registry import all_specs

    latest: dict[str, int] = {}
    for spec in all_specs():
        latest[spec.event_type] = max(spec.version, latest.get(spec.event_type, 0))
    consumers: dict[str, dict[str, list[str]]] = {}
    for consumer, subs in topology.SUBSCRIPTIONS.items():
        for producer, types in subs.items():
            consumers.setdefault(producer, {})[consumer] = list(types)
    added: dict[str, int] = {}
    with psycopg.connect(admin_url(database)) as conn:
        for producer, by_consumer in sorted(consumers.items()):
            p = sql.Identifier(producer)
            missing: dict[str, tuple[Any, ...]] = {}
            for consumer, types in sorted(by_consumer.items()):
                rows = conn.execute(sql.SQL(
                    "SELECT t.id, t.event_id, t.event_type, t.request_no, t.at, t.data FROM {p}.timeline t "
                    "WHERE t.event_type = ANY(%s) AND t.at >= %s "
                    "AND NOT EXISTS (SELECT 1 FROM {c}.inbox i WHERE i.event_id = t.event_id::text) "
                    "AND NOT EXISTS (SELECT 1 FROM {p}.outbox o WHERE o.event_id = t.event_id)"
                ).format(p=p, c=sql.Identifier(consumer)), (types, since)).fetchall()
                for r in rows:
                    missing[str(r[1])] = r
            ordered = sorted(missing.values(), key=lambda r: (r[4], r[0]))
            for _, event_id, event_type, request_no, at, data in ordered:
                body = {
                    "event_id": str(event_id), "event_type": event_type, "version": latest.get(event_type, 1),
                    "producer": producer, "occurred_at": at.astimezone(UTC).isoformat(),
                    # The original correlation id is not kept in the timeline.
                    "correlation_id": f"restore:{request_no}"[:100], "request_no": request_no, "data": data,
                }
                conn.execute(sql.SQL("INSERT INTO {}.outbox (event_id, exchange, routing_key, body) "
                                     "VALUES (%s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING").format(p),
                             (event_id, f"{producer}.events", event_type, Jsonb(body)))
            added[producer] = len(ordered)
        conn.commit()
    return added


# ------------------------------------------------------------------------------------------------------- cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="consistent backup of a running platform database")
    d.add_argument("--database", default=os.environ.get("PROPSVC_DB", "propsvc"))
    d.add_argument("--out", required=True, type=Path)
    r = sub.add_parser("restore", help="restore a backup into a new database and verify it")
    r.add_argument("--file", required=True, type=Path)
    r.add_argument("--database", required=True)
    r.add_argument("--drop", action="store_true", help="replace the database if it exists (drills and tests)")
    r.add_argument("--no-republish", action="store_true", help="do not put unconsumed events back in the outboxes")
    r.add_argument("--republish-hours", type=float, default=DEFAULT_REPUBLISH_WINDOW.total_seconds() / 3600)
    p = sub.add_parser("republish", help="put events no subscriber consumed back in the outboxes")
    p.add_argument("--database", required=True)
    p.add_argument("--since", required=True, type=datetime.fromisoformat, help="ISO time with offset")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "dump":
            result: Any = dump(args.database, args.out)
            result = {k: v for k, v in result.items() if k != "tables"} | {"manifest": str(manifest_path(args.out))}
        elif args.cmd == "restore":
            result = restore(args.file, args.database, drop=args.drop, republish_events=not args.no_republish,
                             window=timedelta(hours=args.republish_hours))
        else:
            if args.since.tzinfo is None:
                parser.error("--since needs a UTC offset")
            result = {"republished": republish(args.database, args.since)}
    except BackupError as exc:
        print(f"{args.cmd} failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
