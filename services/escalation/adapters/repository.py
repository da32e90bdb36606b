"""Escalation's SQL, in its own schema. Every statement is keyed or range-scanned on an index: the handlers and
the timer pass never scan all clocks (see migrations/0002_escalation.sql for the indexes each query uses)."""
from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID


from services.common.db import (BatchUnitOfWork, UnitOfWork, any_of_json, batch_state, dumps, insert_many,
                                 json_rows, jsonb, rows_of)

OPEN_STATES = ("running", "paused", "breached")


# -- policy versions ------------------------------------------------------------------------------------------

def lock_policy_table(uow: UnitOfWork) -> None:
    # Several replicas start at once: only one of them may decide "the file differs, save a new version".
    uow.execute("SELECT pg_advisory_xact_lock(hashtext('escalation.policy_versions'))")


def latest_policy(uow: UnitOfWork) -> dict[str, Any] | None:
    return uow.execute("SELECT version, policy, digest, source, created_at FROM policy_versions "
                       "ORDER BY version DESC LIMIT 1").fetchone()


def latest_policy_version(uow: UnitOfWork) -> int | None:
    if (b := _batch(uow)) is not None:
        if b.policy_version is None:
            b.policy_version = _latest_policy_version(uow)
        return b.policy_version
    return _latest_policy_version(uow)


def _latest_policy_version(uow: UnitOfWork) -> int | None:
    row = uow.execute("SELECT max(version) AS v FROM policy_versions").fetchone()
    return row["v"] if row else None


def get_policy(uow: UnitOfWork, version: int) -> dict[str, Any] | None:
    return uow.execute("SELECT version, policy, digest, source, created_at FROM policy_versions WHERE version = %s",
                       (version,)).fetchone()


def list_policy_versions(uow: UnitOfWork) -> list[dict[str, Any]]:
    return uow.execute("SELECT version, digest, source, created_at, policy->>'description' AS description "
                       "FROM policy_versions ORDER BY version").fetchall()


def insert_policy(uow: UnitOfWork, version: int, policy: dict[str, Any], digest: str, source: str) -> None:
    uow.execute("INSERT INTO policy_versions (version, policy, digest, source) VALUES (%s, %s, %s, %s)",
                (version, jsonb(policy), digest, source))


# -- calendar years -------------------------------------------------------------------------------------------

def lock_calendar_table(uow: UnitOfWork) -> None:
    uow.execute("SELECT pg_advisory_xact_lock(hashtext('escalation.calendar_years'))")


def calendar_stamp(uow: UnitOfWork) -> int:
    if (b := _batch(uow)) is not None:
        if b.calendar_stamp is None:
            b.calendar_stamp = _calendar_stamp(uow)
        return b.calendar_stamp
    return _calendar_stamp(uow)


def _calendar_stamp(uow: UnitOfWork) -> int:
    row = uow.execute("SELECT coalesce(max(id), 0) AS id FROM calendar_years").fetchone()
    return int(row["id"]) if row else 0


def calendar_years(uow: UnitOfWork) -> list[dict[str, Any]]:
    return uow.execute("SELECT id, year, version, data, source, loaded_by, loaded_at FROM calendar_years "
                       "ORDER BY year, version").fetchall()


def latest_year_version(uow: UnitOfWork, year: int) -> int:
    row = uow.execute("SELECT coalesce(max(version), 0) AS v FROM calendar_years WHERE year = %s", (year,)).fetchone()
    return int(row["v"]) if row else 0


def insert_year(uow: UnitOfWork, year: int, version: int, data: dict[str, Any], source: str, by: str) -> None:
    uow.execute("INSERT INTO calendar_years (year, version, data, source, loaded_by) VALUES (%s, %s, %s, %s, %s)",
                (year, version, jsonb(data), source, by))


# -- request facts ----------------------------------------------------------------------------------------------

def lock_subject(uow: UnitOfWork, subject: str) -> dict[str, Any]:
    """The subject's facts row, created empty if needed, locked for the rest of the transaction."""
    if (b := _batch(uow)) is not None:
        return b.subject(uow, subject)
    # One round trip: the no-op update takes the row lock on an existing row and returns it either way.
    row = uow.execute("INSERT INTO requests (request_no) VALUES (%s) ON CONFLICT (request_no) "
                      "DO UPDATE SET request_no = EXCLUDED.request_no RETURNING *", (subject,)).fetchone()
    assert row is not None
    return row


REQUEST_COLUMNS = ("registered", "policy_version", "property_id", "building", "unit", "channel", "category",
                   "subcategory", "priority", "emergency", "department", "registered_at", "resolved_at",
                   "reopen_count", "cluster_size", "vip", "compensation_demanded", "facts")


def update_subject(uow: UnitOfWork, subject: str, **values: Any) -> None:
    if not values:
        return
    bad = set(values) - set(REQUEST_COLUMNS)
    if bad:
        raise ValueError(f"unknown request columns {bad}")
    if (b := _batch(uow)) is not None:
        b.subject(uow, subject).update(values)
        b.dirty_subjects.add(subject)
        return
    sets = ", ".join(f"{k} = %s" for k in values)
    params = [(jsonb(v) if k == "facts" else v) for k, v in values.items()]
    uow.execute(f"UPDATE requests SET {sets} WHERE request_no = %s", (*params, subject))


def previous_repair_resolved_at(uow: UnitOfWork, property_id: str, unit: str, subcategory: str,
                                request_no: str, before: datetime) -> datetime | None:
    kept, read, found = None, False, None
    if (b := _batch(uow)) is not None:  # this batch's resolutions are not in the table yet
        kept = max((r["resolved_at"] for no in b.dirty_subjects if no != request_no
                    for r in [b.subjects[no]] if r["property_id"] == property_id and r["unit"] == unit
                    and r["subcategory"] == subcategory and r["resolved_at"] is not None
                    and r["resolved_at"] <= before), default=None)
        read, found = b.previous_repair(uow, (property_id, unit, subcategory, before, request_no))
    if not read:
        row = uow.execute(
            "SELECT max(resolved_at) AS at FROM requests WHERE property_id = %s AND unit = %s AND subcategory = %s "
            "AND resolved_at IS NOT NULL AND resolved_at <= %s AND request_no <> %s",
            (property_id, unit, subcategory, before, request_no)).fetchone()
        found = row["at"] if row else None
    return max((t for t in (found, kept) if t is not None), default=None)


# -- pending facts ----------------------------------------------------------------------------------------------

def add_pending(uow: UnitOfWork, subject: str, clock: str, verb: str, at: datetime, reason: str | None) -> None:
    if (b := _batch(uow)) is not None:
        b.subject(uow, subject)
        b.add_pending(subject, {"clock": clock, "verb": verb, "at": at, "reason": reason})
        return
    uow.execute("INSERT INTO pending_facts (request_no, clock, verb, at, reason) VALUES (%s, %s, %s, %s, %s)",
                (subject, clock, verb, at, reason))


def pending_for(uow: UnitOfWork, subject: str) -> list[dict[str, Any]]:
    if (b := _batch(uow)) is not None:
        b.subject(uow, subject)
        return sorted(b.pending[subject], key=lambda p: (p["at"], p["id"]))
    return uow.execute("SELECT id, clock, verb, at, reason FROM pending_facts WHERE request_no = %s ORDER BY at, id",
                       (subject,)).fetchall()


def delete_pending(uow: UnitOfWork, subject: str, ids: Sequence[int]) -> None:
    """Delete `ids`, pending facts of `subject` (as `pending_for` returned them)."""
    if (b := _batch(uow)) is not None:
        b.delete_pending(subject, ids)
        return
    if ids:
        uow.execute("DELETE FROM pending_facts WHERE id = ANY(%s)", (list(ids),))


# -- clocks ---------------------------------------------------------------------------------------------------

def clocks_of(uow: UnitOfWork, subject: str, lock: bool = True) -> list[dict[str, Any]]:
    if (b := _batch(uow)) is not None:
        b.subject(uow, subject)
        return sorted(b.clocks[subject].values(), key=lambda r: r["started_at"])
    sql = "SELECT clock_id, kind, state, policy_version, data FROM clocks WHERE request_no = %s ORDER BY started_at"
    return uow.execute(sql + (" FOR UPDATE" if lock else ""), (subject,)).fetchall()


def lock_clocks_skip_locked(uow: UnitOfWork, clock_ids: Sequence[UUID]) -> list[dict[str, Any]]:
    return uow.execute("SELECT clock_id, kind, state, policy_version, data FROM clocks WHERE clock_id = ANY(%s) "
                       "FOR UPDATE SKIP LOCKED", (list(clock_ids),)).fetchall()


def clock_row(clock: Any, warn_at: datetime | None) -> dict[str, Any]:
    f = clock.facts
    return {
        "clock_id": clock.clock_id, "request_no": clock.request_no, "kind": clock.kind, "state": str(clock.state),
        "policy_version": clock.policy.version, "rule": clock.rule, "target_seconds": clock.target_seconds,
        "started_at": clock.started_at, "deadline": clock.deadline, "warn_at": warn_at,
        "warned": clock.warned_at is not None, "breached_at": clock.breached_at, "met_at": clock.met_at,
        "elapsed_seconds": clock.elapsed_at_stop, "calendar_fallback": clock.calendar_fallback,
        "category": f.category, "priority": f.priority, "channel": f.channel, "property_id": f.property_id or "",
        "data": jsonb(clock.to_dict()),
    }


CLOCK_COLUMNS = ("clock_id", "request_no", "kind", "state", "policy_version", "rule", "target_seconds", "started_at",
               "deadline", "warn_at", "warned", "breached_at", "met_at", "elapsed_seconds", "calendar_fallback",
               "category", "priority", "channel", "property_id", "data")
# started_at too: a supervisor_answer clock starts again on a new call-in (handlers.STARTS_AGAIN_AFTER_MET).
_CLOCK_UPDATE = ("started_at", "state", "rule", "target_seconds", "deadline", "warn_at", "warned", "breached_at",
                 "met_at", "elapsed_seconds", "calendar_fallback", "category", "priority", "channel", "property_id",
                 "data")


def save_clocks(uow: UnitOfWork, rows: list[dict[str, Any]]) -> None:
    if (b := _batch(uow)) is not None:
        for r in rows:
            b.subject(uow, r["request_no"])
            b.clocks[r["request_no"]][r["clock_id"]] = {
                "clock_id": r["clock_id"], "kind": r["kind"], "state": r["state"],
                "policy_version": r["policy_version"], "data": r["data"].obj, "started_at": r["started_at"]}
            b.clock_rows[r["clock_id"]] = r
        return
    _save_clocks(uow, rows)


def _save_clocks(uow: UnitOfWork, rows: list[dict[str, Any]]) -> None:
    insert_many(uow, f"INSERT INTO clocks ({', '.join(CLOCK_COLUMNS)})", [[r[c] for c in CLOCK_COLUMNS] for r in rows],
                f"ON CONFLICT (clock_id) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in _CLOCK_UPDATE)}, "
                "updated_at = now()")


def replace_timers(uow: UnitOfWork, timers: dict[UUID, list[Any]]) -> None:
    """Pending timers of each clock become exactly `timers[clock_id]` (fired rows stay as history)."""
    if (b := _batch(uow)) is not None:
        b.timers.update(timers)
        return
    _replace_timers(uow, timers)


def _replace_timers(uow: UnitOfWork, timers: dict[UUID, list[Any]], stored: set[UUID] | None = None) -> None:
    """`stored`: the clocks that may have timers already (None: any of them); a clock a fast batch created has
    none, so its timers are only inserted (a registration's three clocks cost no delete probes)."""
    if not timers:
        return
    rows = [(cid, t.kind, t.due_at, t.token) for cid, ts in timers.items() for t in ts]
    old = list(timers) if stored is None else [cid for cid in timers if cid in stored]
    if not old:
        insert_many(uow, f"INSERT INTO deadlines ({_DEADLINE})", rows, "ON CONFLICT (clock_id, token) DO NOTHING")
        return
    # One round trip. The delete and the insert see the same snapshot, so a pending row whose token is kept is
    # deleted and not re-inserted (ON CONFLICT sees it still): keep those rows out of the delete instead.
    # `(fired_at IS NULL) IS TRUE`, not `fired_at IS NULL`: the plain predicate lets the planner add the
    # deadlines_due partial index to the lookup by clock (a BitmapAnd) when its statistics are stale, reading
    # every pending timer's entry per batch (64,000 per statement, 5 ms, after a few minutes at 100/s).
    # Every parameter is JSON (see db.any_of_json): the lists took 2 % of this service at 200/s.
    uow.execute(
        f"WITH k AS MATERIALIZED ({rows_of('deadlines', _DEADLINE)}), "
        f"d AS (DELETE FROM deadlines WHERE clock_id = {any_of_json('::uuid')} "
        "AND (fired_at IS NULL) IS TRUE AND NOT (clock_id, token) = ANY(SELECT clock_id, token FROM k)) "
        f"INSERT INTO deadlines ({_DEADLINE}) SELECT {_DEADLINE} FROM k ON CONFLICT (clock_id, token) DO NOTHING",
        [json_rows(_DEADLINE.split(", "), rows), dumps(old)])


_DEADLINE = "clock_id, kind, due_at, token"


def due_timers(uow: UnitOfWork, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Due, unfired timers, oldest first; rows another instance holds are skipped (deadlines_due index)."""
    return uow.execute(
        "SELECT id, clock_id, kind, token, due_at FROM deadlines WHERE fired_at IS NULL AND due_at <= %s "
        "ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED", (now, limit)).fetchall()


def mark_fired(uow: UnitOfWork, ids: Sequence[int], at: datetime) -> None:
    if ids:
        uow.execute("UPDATE deadlines SET fired_at = %s WHERE id = ANY(%s)", (at, list(ids)))


def timers_due_count(uow: UnitOfWork, now: datetime) -> int:
    row = uow.execute("SELECT count(*) AS n FROM deadlines WHERE fired_at IS NULL AND due_at <= %s",
                      (now,)).fetchone()
    return int(row["n"]) if row else 0


# -- escalations ----------------------------------------------------------------------------------------------

_ESC_COLS = ("escalation_id", "request_no", "clock_id", "clock", "source", "rule", "reason", "rung", "rung_index",
             "climbs", "acknowledged_by", "acknowledged_at", "stopped", "data", "created_at")
_ESC_UPDATE = ("rung", "rung_index", "climbs", "acknowledged_by", "acknowledged_at", "stopped", "data")


def escalation_row(run: Any) -> dict[str, Any]:
    d = run.to_dict()
    return {
        "escalation_id": run.escalation_id, "request_no": run.request_no, "clock_id": run.clock_id,
        "clock": run.clock, "source": run.source, "rule": run.rule, "reason": run.reason, "rung": run.rung or "",
        "rung_index": run.rung_index, "climbs": jsonb(d["climbs"]), "acknowledged_by": run.acknowledged_by,
        "acknowledged_at": run.acknowledged_at, "stopped": run.stopped, "data": jsonb(d),
        "created_at": run.climbs[0].at,
    }


def save_escalations(uow: UnitOfWork, rows: list[dict[str, Any]]) -> None:
    if (b := _batch(uow)) is not None:
        b.escalations.update({r["escalation_id"]: r for r in rows})
        return
    _save_escalations(uow, rows)


def _save_escalations(uow: UnitOfWork, rows: list[dict[str, Any]]) -> None:
    unique = {r["escalation_id"]: r for r in rows}  # one statement may not update a row twice
    insert_many(uow, f"INSERT INTO escalations ({', '.join(_ESC_COLS)})",
                [[r[c] for c in _ESC_COLS] for r in unique.values()],
                f"ON CONFLICT (escalation_id) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in _ESC_UPDATE)}, "
                "updated_at = now()")


def get_escalation(uow: UnitOfWork, escalation_id: UUID) -> dict[str, Any] | None:
    return uow.execute("SELECT * FROM escalations WHERE escalation_id = %s", (escalation_id,)).fetchone()


def lock_escalation(uow: UnitOfWork, escalation_id: UUID) -> dict[str, Any] | None:
    return uow.execute("SELECT * FROM escalations WHERE escalation_id = %s FOR UPDATE", (escalation_id,)).fetchone()


def escalations_of(uow: UnitOfWork, request_no: str) -> list[dict[str, Any]]:
    return uow.execute("SELECT * FROM escalations WHERE request_no = %s ORDER BY created_at",
                       (request_no,)).fetchall()


def fired_conditions(uow: UnitOfWork, request_no: str) -> set[str]:
    if (b := _batch(uow)) is not None:
        b.subject(uow, request_no)
        return set(b.fired[request_no])
    rows = uow.execute("SELECT rule FROM condition_fired WHERE request_no = %s", (request_no,)).fetchall()
    return {r["rule"] for r in rows}


def record_condition(uow: UnitOfWork, request_no: str, rule: str, escalation_id: UUID, at: datetime) -> None:
    if (b := _batch(uow)) is not None:
        b.subject(uow, request_no)
        if rule not in b.fired[request_no]:
            b.fired[request_no].add(rule)
            b.fired_new.append((request_no, rule, escalation_id, at))
        return
    uow.execute("INSERT INTO condition_fired (request_no, rule, escalation_id, fired_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING", (request_no, rule, escalation_id, at))


# -- request timers (time-based condition rules, climbs of condition escalations) -------------------------------

def set_request_timers(uow: UnitOfWork, timers: Sequence[tuple[str, str, str, datetime | None, str | None]]) -> None:
    """Each (request_no, kind, ref) gets exactly the pending timer (due_at, token) given, or none when due_at is
    None. An unchanged token keeps its row; fired rows stay as history. Keyed on request_timers_token."""
    if (b := _batch(uow)) is not None:
        b.request_timers.extend(timers)
        return
    _set_request_timers(uow, timers)


def _set_request_timers(uow: UnitOfWork,
                        timers: Sequence[tuple[str, str, str, datetime | None, str | None]]) -> None:
    if not timers:
        return
    keys = {(r, k, ref): (due, token) for r, k, ref, due, token in timers}  # the last word per key wins
    cols = [[key[0] for key in keys], [key[1] for key in keys], [key[2] for key in keys],
            [token or "" for _, token in keys.values()]]
    uow.execute(
        "DELETE FROM request_timers t USING unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
        "AS k(request_no, kind, ref, token) WHERE t.request_no = k.request_no AND t.kind = k.kind "
        "AND t.ref = k.ref AND (t.fired_at IS NULL) IS TRUE AND t.token <> k.token", cols)  # see _replace_timers
    insert_many(uow, "INSERT INTO request_timers (request_no, kind, ref, due_at, token)",
                [(r, k, ref, due, token) for (r, k, ref), (due, token) in sorted(keys.items())
                 if due is not None and token],
                "ON CONFLICT (request_no, kind, ref, token) DO NOTHING")


def due_request_timers(uow: UnitOfWork, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Due, unfired request timers, oldest first; rows another instance holds are skipped (request_timers_due)."""
    return uow.execute(
        "SELECT id, request_no, kind, ref, token, due_at FROM request_timers WHERE fired_at IS NULL AND due_at <= %s "
        "ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED", (now, limit)).fetchall()


def lock_subjects_skip_locked(uow: UnitOfWork, subjects: Sequence[str]) -> list[dict[str, Any]]:
    return uow.execute("SELECT * FROM requests WHERE request_no = ANY(%s) ORDER BY request_no "
                       "FOR UPDATE SKIP LOCKED", (list(subjects),)).fetchall()


def mark_request_timers_fired(uow: UnitOfWork, ids: Sequence[int], at: datetime) -> None:
    if ids:
        uow.execute("UPDATE request_timers SET fired_at = %s WHERE id = ANY(%s)", (at, list(ids)))


# -- counters (updated in the verdict's transaction; keys sorted so two transactions never deadlock) ----------

SHARDS = 16
LANE_SHARDS = 8  # shards 0-7 belong to the consumer lanes, 8-15 to everything else (timers, API)


def bump_counters(uow: UnitOfWork, verdicts: dict[tuple[str, ...], int], elapsed: dict[tuple[Any, ...], list[float]],
                  escalations: dict[tuple[str, str], int], fallbacks: dict[str, int]) -> None:
    # A consumer lane's batch writes its own shard: two lanes' batches, each holding its counter rows until it
    # commits, never take the same row (they would deadlock, taking them in different orders). Other
    # transactions (timer passes, API) take a random shard of the rest, held only for one short transaction.
    if (b := _batch(uow)) is not None:
        for k, n in verdicts.items():
            b.verdicts[k] = b.verdicts.get(k, 0) + n
        for e, n in escalations.items():
            b.escalation_counts[e] = b.escalation_counts.get(e, 0) + n
        for f, n in fallbacks.items():
            b.fallbacks[f] = b.fallbacks.get(f, 0) + n
        for key, values in elapsed.items():
            b.elapsed.setdefault(key, []).extend(values)
        return
    _bump_counters(uow, verdicts, elapsed, escalations, fallbacks)


def _bump_counters(uow: UnitOfWork, verdicts: dict[tuple[str, ...], int], elapsed: dict[tuple[Any, ...], list[float]],
                   escalations: dict[tuple[str, str], int], fallbacks: dict[str, int]) -> None:
    sh = uow.lane % LANE_SHARDS if uow.lane is not None else random.randrange(LANE_SHARDS, SHARDS)
    insert_many(uow, "INSERT INTO verdict_counts (clock, outcome, category, priority, channel, property_id, shard, n)",
                [(*k, sh, n) for k, n in sorted(verdicts.items())],
                "ON CONFLICT (clock, outcome, category, priority, channel, property_id, shard) "
                "DO UPDATE SET n = verdict_counts.n + EXCLUDED.n")
    insert_many(uow, "INSERT INTO elapsed_buckets (clock, category, priority, channel, property_id, bucket, shard, n, "
                "total_seconds)", [(*k, sh, len(v), float(sum(v))) for k, v in sorted(elapsed.items())],
                "ON CONFLICT (clock, category, priority, channel, property_id, bucket, shard) DO UPDATE SET "
                "n = elapsed_buckets.n + EXCLUDED.n, total_seconds = elapsed_buckets.total_seconds + "
                "EXCLUDED.total_seconds")
    insert_many(uow, "INSERT INTO escalation_counts (rung, reason, shard, n)",
                [(*k, sh, n) for k, n in sorted(escalations.items())],
                "ON CONFLICT (rung, reason, shard) DO UPDATE SET n = escalation_counts.n + EXCLUDED.n")
    insert_many(uow, "INSERT INTO fallback_counts (clock, shard, n)",
                [(k, sh, n) for k, n in sorted(fallbacks.items())],
                "ON CONFLICT (clock, shard) DO UPDATE SET n = fallback_counts.n + EXCLUDED.n")


# -- reading ---------------------------------------------------------------------------------------------------

def clocks_for_view(uow: UnitOfWork, request_no: str) -> list[dict[str, Any]]:
    return clocks_of(uow, request_no, lock=False)


def at_risk(uow: UnitOfWork, now: datetime, property_id: str | None, department: str | None,
            limit: int) -> list[dict[str, Any]]:
    where = ["c.state IN ('running', 'paused', 'breached')",
             "(c.state = 'breached' OR c.warned OR (c.state = 'running' AND (c.warn_at <= %(now)s "
             "OR c.deadline <= %(now)s)))"]
    params: dict[str, Any] = {"now": now, "limit": limit}
    if property_id:
        where.append("c.property_id = %(property_id)s")
        params["property_id"] = property_id
    if department:
        where.append("r.department = %(department)s")
        params["department"] = department
    return uow.execute(
        "SELECT c.clock_id, c.request_no, c.kind, c.state, c.policy_version, c.data, c.property_id, r.department "
        "FROM clocks c LEFT JOIN requests r ON r.request_no = c.request_no "
        f"WHERE {' AND '.join(where)} ORDER BY c.deadline LIMIT %(limit)s", params).fetchall()


def rows(uow: UnitOfWork, sql: str, params: Iterable[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return uow.execute(sql, params).fetchall()


# -- a consumer's fast batch (services.common.db.BatchUnitOfWork): read once, written once ----------------------

class _Batch:
    """Escalation's rows for the requests a fast batch touches: locked and read in one statement per table when
    the batch first needs one of them, changed in memory by the handlers (this module's functions), and written
    in one statement per table when the batch finishes. Per message that leaves the handler's Python and, for a
    registration with a unit, one read of earlier repairs; ~15 round trips per message become ~12 per batch.

    Only this module's functions go through it. A message whose handler fails does not leave its changes here
    for the next one: the whole fast batch is then rolled back and run again with savepoints, without this."""

    def __init__(self, items: Sequence[dict[str, Any]]) -> None:
        self.expected = {s for i in items for s in _subjects_of(i)}
        self.subjects: dict[str, dict[str, Any]] = {}
        self.dirty_subjects: set[str] = set()
        self.clocks: dict[str, dict[UUID, dict[str, Any]]] = {}
        self.pending: dict[str, list[dict[str, Any]]] = {}
        self.pending_new: dict[int, tuple[str, dict[str, Any]]] = {}
        self.pending_gone: list[int] = []
        self.fired: dict[str, set[str]] = {}
        self.fired_new: list[tuple[str, str, UUID, datetime]] = []
        self.clock_rows: dict[UUID, dict[str, Any]] = {}
        self.stored_clocks: set[UUID] = set()  # clocks read from the table (only those can have timers there)
        self.timers: dict[UUID, list[Any]] = {}
        self.escalations: dict[UUID, dict[str, Any]] = {}
        self.request_timers: list[tuple[str, str, str, datetime | None, str | None]] = []
        self.verdicts: dict[tuple[str, ...], int] = {}
        self.elapsed: dict[tuple[Any, ...], list[float]] = {}
        self.escalation_counts: dict[tuple[str, str], int] = {}
        self.fallbacks: dict[str, int] = {}
        self.policy_version: int | None = None
        self.calendar_stamp: int | None = None
        self.repairs: dict[tuple[str, str, str, datetime, str], Any] | None = None
        self.items = list(items)
        self._next_id = 1 << 62  # new pending facts sort after the stored ones, as their ids would

    def subject(self, uow: UnitOfWork, subject: str) -> dict[str, Any]:
        row = self.subjects.get(subject)
        if row is None:
            self.load(uow, sorted({subject, *self.expected} - set(self.subjects)))
            row = self.subjects[subject]
        return row

    def load(self, uow: UnitOfWork, subjects: list[str]) -> None:
        # Sorted, as every multi-row lock here: two transactions never take the same rows in different orders.
        nos = (dumps(subjects),)  # one JSON array (db.any_of_json)
        for r in uow.execute("INSERT INTO requests (request_no) SELECT json_array_elements_text(%s::json) "
                             "ON CONFLICT (request_no) DO UPDATE SET request_no = EXCLUDED.request_no RETURNING *",
                             nos).fetchall():
            self.subjects[r["request_no"]] = r
        for no in subjects:
            self.clocks[no], self.pending[no], self.fired[no] = {}, [], set()
        for r in uow.execute("SELECT clock_id, request_no, kind, state, policy_version, data, started_at FROM clocks "
                             f"WHERE request_no = {any_of_json()} ORDER BY clock_id FOR UPDATE", nos).fetchall():
            self.clocks[r.pop("request_no")][r["clock_id"]] = r
            self.stored_clocks.add(r["clock_id"])
        for r in uow.execute("SELECT id, request_no, clock, verb, at, reason FROM pending_facts "
                             f"WHERE request_no = {any_of_json()}", nos).fetchall():
            self.pending[r.pop("request_no")].append(r)
        for r in uow.execute(f"SELECT request_no, rule FROM condition_fired WHERE request_no = {any_of_json()}",
                             nos).fetchall():
            self.fired[r["request_no"]].add(r["rule"])

    def previous_repair(self, uow: UnitOfWork, key: tuple[str, str, str, datetime, str]) -> tuple[bool, Any]:
        """(read here, the latest earlier repair of the same unit and problem before the registration, from the
        table as the batch found it): one statement for every registration of the batch."""
        if self.repairs is None:
            keys = [k for k in (_repair_key(i) for i in self.items) if k is not None]
            self.repairs = {}
            if keys:
                cols = list(zip(*keys, strict=True))
                for r in uow.execute(
                        "SELECT k.n, (SELECT max(r.resolved_at) FROM requests r WHERE r.property_id = k.p "
                        "AND r.unit = k.u AND r.subcategory = k.s AND r.resolved_at IS NOT NULL "
                        "AND r.resolved_at <= k.b AND r.request_no <> k.no) AS at FROM unnest(%s::int[], %s::text[], "
                        "%s::text[], %s::text[], %s::timestamptz[], %s::text[]) AS k(n, p, u, s, b, no)",
                        (list(range(len(keys))), *[list(c) for c in cols])).fetchall():
                    self.repairs[keys[r["n"]]] = r["at"]
        return key in self.repairs, self.repairs.get(key)

    def add_pending(self, subject: str, fact: dict[str, Any]) -> None:
        self._next_id += 1
        row = {"id": self._next_id, **fact}
        self.pending[subject].append(row)
        self.pending_new[self._next_id] = (subject, row)

    def delete_pending(self, subject: str, ids: Sequence[int]) -> None:
        if not ids:  # every registration asks, with nothing to delete
            return
        gone = set(ids)
        # Only the subject's own list: rebuilding every subject's list per call made a batch of 100
        # registrations quadratic (3.5 % of this service's CPU at 250/s).
        self.pending[subject] = [r for r in self.pending[subject] if r["id"] not in gone]
        for i in gone:
            if self.pending_new.pop(i, None) is None:
                self.pending_gone.append(i)

    def write(self, uow: UnitOfWork) -> None:
        """The batch's changes, one statement per table (the unit of work is still in fast mode: use the SQL)."""
        if self.dirty_subjects:
            cols = ("request_no", *REQUEST_COLUMNS)
            insert_many(uow, f"INSERT INTO requests ({', '.join(cols)})",
                        [[jsonb(row[c]) if c == "facts" else row[c] for c in cols]
                         for row in (self.subjects[no] for no in sorted(self.dirty_subjects))],
                        f"ON CONFLICT (request_no) DO UPDATE SET "
                        f"{', '.join(f'{c} = EXCLUDED.{c}' for c in REQUEST_COLUMNS)}")
        _save_clocks(uow, list(self.clock_rows.values()))
        _replace_timers(uow, self.timers, stored=self.stored_clocks)
        _save_escalations(uow, list(self.escalations.values()))
        _set_request_timers(uow, self.request_timers)
        if self.pending_gone:
            uow.execute("DELETE FROM pending_facts WHERE id = ANY(%s)", (self.pending_gone,))
        insert_many(uow, "INSERT INTO pending_facts (request_no, clock, verb, at, reason)",
                    [(no, r["clock"], r["verb"], r["at"], r["reason"]) for no, r in self.pending_new.values()])
        insert_many(uow, "INSERT INTO condition_fired (request_no, rule, escalation_id, fired_at)", self.fired_new,
                    "ON CONFLICT DO NOTHING")
        _bump_counters(uow, self.verdicts, self.elapsed, self.escalation_counts, self.fallbacks)


def _subjects_of(item: dict[str, Any]) -> list[str]:
    """The requests a message will touch, as far as can be told before handling it (a miss costs one more load)."""
    data: dict[str, Any] = item["data"] if isinstance(item.get("data"), dict) else {}
    out = [str(v) for v in (item.get("request_no"), data.get("request_no")) if v]
    if item.get("event_type") == "IncidentClustered" and data.get("request_nos"):
        out.append(str(data["request_nos"][0]))
    return out


def _repair_key(item: dict[str, Any]) -> tuple[str, str, str, datetime, str] | None:
    """What a registration will ask `previous_repair_resolved_at`, as handlers._register asks it."""
    data = item.get("data")
    if item.get("event_type") != "RequestRegistered" or not isinstance(data, dict):
        return None
    if not (data.get("unit") and data.get("subcategory") and data.get("request_no")):
        return None
    return (data["property_id"], data["unit"], data["subcategory"], data["registered_at"], str(data["request_no"]))


def _begin(uow: BatchUnitOfWork) -> _Batch:
    b = _Batch(uow.items)
    uow.on_finish(b.write)
    return b


def _batch(uow: UnitOfWork) -> _Batch | None:
    return batch_state(uow, "escalation", _begin)
