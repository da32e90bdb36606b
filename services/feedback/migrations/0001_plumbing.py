"""Outbox, inbox and timeline tables (shared DDL: services/common/schema.py)."""
from yoyo import step

from services.common.schema import PLUMBING_SQL

steps = [step(sql) for sql in PLUMBING_SQL]
