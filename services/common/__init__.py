"""Plumbing shared by every service: config, unit of work, outbox relay, event contract, messaging, metrics.

psycopg's C wait blocks eventlet's hub (a `pg_sleep(1)` froze every green thread, see
shared/notes/platform-traps.md). psycopg reads PSYCOPG_WAIT_FUNC once, when it is first imported, so it
is defaulted here: every module that touches psycopg imports this package first.
"""
import os

os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")
