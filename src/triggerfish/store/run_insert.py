"""A new queued run with its fair tag, tags and history row, in as few statements as
each database allows, sent straight to the driver connection.

Every trigger does this, and going through SQLAlchemy's execution machinery
costs more than the database takes to run these statements. On PostgreSQL the
fair-bucket upsert (with the service clock), the run, its tags and its history
row are data-modifying CTEs of one statement, prepared once per connection by
asyncpg: one round trip, and no ``BEGIN``/``COMMIT`` when it is the
transaction's only statement. SQLite cannot write two tables in one statement:
there it is the tag, the run, the history row (and the tags, if any), one hop
each to aiosqlite's thread.

The fair tag is ``queues.take_tags``'s: the bucket's next tag becomes
``max(next, clock) + quantum``; the run's order key is its tag minus its
priority.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish.store import queues as queue_store
from triggerfish.store import run_claim
from triggerfish.store.db import Database, fetch_on_driver, stored_row
from triggerfish.store.tables import runs


async def insert_queued_run(
    conn: AsyncConnection, values: dict[str, Any], *, now: float, quantum: float
) -> float:
    """Insert a new QUEUED run with the next fair tag of its bucket; returns its order key.

    ``values`` holds the run's columns (``order_key`` is ignored: it comes from the
    tag and ``values["priority"]``) and ``tags`` its sorted tags. On PostgreSQL it
    must be the last statement of its transaction (see ``db.fetch_on_driver``).
    """
    columns = tuple(k for k in values if k != "order_key")
    row = stored_row(runs, conn.dialect, columns, values)
    if conn.dialect.name == "postgresql":
        fetch = functools.partial(fetch_on_driver, conn)
        return await _insert_postgresql(fetch, values, columns, row, now, quantum)
    return await _insert_sqlite(conn, values, columns, row, now, quantum)


async def insert_queued_run_alone(
    db: Database, values: dict[str, Any], *, now: float, quantum: float
) -> float:
    """``insert_queued_run`` as a transaction of its own, on PostgreSQL: the whole of
    a plain trigger whose task and queue are known (``Database.fetch_alone``)."""
    columns = tuple(k for k in values if k != "order_key")
    row = stored_row(runs, db.engine.dialect, columns, values)
    return await _insert_postgresql(db.fetch_alone, values, columns, row, now, quantum)


@dataclass(frozen=True)
class HandOff:
    """The claim a new run is stored under when the database allows it: a worker's
    claim parked on this server (see ``engine/handoff.py``)."""

    #: the worker's tasks and version: an older queued run of these comes first
    task_ids: Sequence[str]
    version: str
    worker_id: str
    attempt_id: str
    lease_expires_at: float
    #: EXECUTING at once (the worker has a free slot), or DEQUEUED
    start: bool
    #: the claim's time as stored, and its history reason
    now_at: Any
    reason: str


async def insert_and_hand_off_alone(
    db: Database, values: dict[str, Any], *, now: float, quantum: float, hand_off: HandOff
) -> tuple[float, Any | None]:
    """``insert_queued_run_alone``, with the run claimed for ``hand_off`` in the same
    statement when nothing constrains the environment and no older run is queued
    for the worker (exactly when its claim would take this run first).

    Returns the order key and the claimed run (a ``run_claim.ClaimedRun``), or
    None when the run was only queued. PostgreSQL only.
    """
    columns = tuple(k for k in values if k != "order_key")
    row = stored_row(runs, db.engine.dialect, columns, values)
    key = values["concurrency_key"] or ""
    params = [values["environment_id"], values["queue_name"], key, now, quantum]
    params += [values["tags"], *row]
    params += [
        list(hand_off.task_ids),
        hand_off.version,
        hand_off.attempt_id,
        hand_off.worker_id,
        hand_off.lease_expires_at,
        "EXECUTING" if hand_off.start else "DEQUEUED",
        hand_off.now_at,
        hand_off.reason,
    ]
    first = (await db.fetch_alone(_pg_hand_off_statement(columns), params))[0]
    claimed = run_claim.ClaimedRun(*first[1:]) if first["handed"] else None
    return float(first["order_key"]), claimed


async def _insert_postgresql(
    fetch: Callable[[str, Sequence[Any]], Awaitable[list[Any]]],
    values: dict[str, Any],
    columns: tuple[str, ...],
    row: list[Any],
    now: float,
    quantum: float,
) -> float:
    key = values["concurrency_key"] or ""
    params = [values["environment_id"], values["queue_name"], key, now, quantum]
    params += [values["tags"], *row]
    return float((await fetch(_pg_statement(columns), params))[0][0])


async def _insert_sqlite(
    conn: AsyncConnection,
    values: dict[str, Any],
    columns: tuple[str, ...],
    row: list[Any],
    now: float,
    quantum: float,
) -> float:
    run = {"run": values["id"], "env": values["environment_id"]}
    bucket = {"env": run["env"], "queue": values["queue_name"], "key": values["concurrency_key"]}
    bucket.update(key=bucket["key"] or "", now=now, step=quantum)
    next_tag = (await fetch_on_driver(conn, queue_store.take_tags_sql("sqlite"), bucket))[0][0]
    order_key = float(next_tag) - quantum - float(values["priority"])
    await fetch_on_driver(conn, _sqlite_insert(columns), [*row, order_key])
    stored = dict(zip(columns, row, strict=True))
    if values["tags"]:
        await fetch_on_driver(conn, _SQLITE_TAGS, {**run, "tags": stored["tags"]})
    event = {**run, "status": values["status"], "at": stored["created_at"]}
    await fetch_on_driver(conn, _SQLITE_EVENT, event)
    return order_key


# $1 env, $2 queue, $3 concurrency key ('' for none), $4 now, $5 quantum,
# $6 tags; the run's columns follow from $7 on
_PG_FAIR_TAG = """
clock AS (
  SELECT {clock} AS at
), tag AS (
  INSERT INTO fair_buckets AS b (environment_id, queue_name, concurrency_key, next_tag)
  VALUES ($1, $2, $3, (SELECT at FROM clock) + $5::float8)
  ON CONFLICT (environment_id, queue_name, concurrency_key)
  DO UPDATE SET next_tag = greatest(b.next_tag, (SELECT at FROM clock)) + $5::float8
  RETURNING next_tag
)"""


@functools.lru_cache(maxsize=16)
def _pg_statement(columns: tuple[str, ...]) -> str:
    # keyed by the columns a trigger sets, which are the same on every call
    placeholders = [
        f"${i}{'::json' if isinstance(runs.c[name].type, JSON) else ''}"
        for i, name in enumerate(columns, start=7)
    ]
    priority = placeholders[columns.index("priority")]
    clock = queue_store.service_clock_sql().replace(":env", "$1").replace(":now", "$4::float8")
    return f"""WITH {_PG_FAIR_TAG.format(clock=clock)}, run AS (
  INSERT INTO runs ({", ".join(columns)}, order_key)
  VALUES ({", ".join(placeholders)}, (SELECT next_tag FROM tag) - $5::float8 - {priority}::float8)
  RETURNING id, environment_id, status, created_at, order_key
), tagged AS (
  INSERT INTO run_tags (run_id, tag, environment_id)
  SELECT run.id, t, run.environment_id FROM run, unnest($6::varchar[]) AS t
)
INSERT INTO run_events (run_id, from_status, to_status, reason, at)
SELECT id, NULL, status, 'triggered', created_at FROM run
RETURNING (SELECT order_key FROM run)"""


@functools.lru_cache(maxsize=16)
def _pg_hand_off_statement(columns: tuple[str, ...]) -> str:
    # the parameters of _pg_statement, then the claim's: n+1 the worker's task ids,
    # n+2 its version, n+3 the attempt id, n+4 the worker id, n+5 the lease expiry,
    # n+6 the claimed status, n+7 the claim's time, n+8 its history reason
    n = 6 + len(columns)
    kinds = ["varchar[]", "varchar", "varchar", "varchar", "float8", "varchar", "timestamp", "text"]
    tasks, version, attempt, worker, lease, claimed, at, reason = (
        f"${n + i}::{kind}" for i, kind in enumerate(kinds, start=1)
    )
    placeholders = [
        f"${i}{'::json' if isinstance(runs.c[name].type, JSON) else ''}"
        for i, name in enumerate(columns, start=7)
    ]
    priority = placeholders[columns.index("priority")]
    status = f"{placeholders[columns.index('status')]}::varchar"
    go = "(SELECT go FROM gate)"
    placeholders[columns.index("status")] = f"CASE WHEN {go} THEN {claimed} ELSE {status} END"
    clock = queue_store.service_clock_sql().replace(":env", "$1").replace(":now", "$4::float8")
    return f"""WITH {_PG_FAIR_TAG.format(clock=clock)}, {run_claim.BLOCKED}, gate AS (
  SELECT NOT EXISTS (SELECT 1 FROM blocked) AND NOT EXISTS (
    SELECT 1 FROM runs
    WHERE environment_id = $1 AND status = 'QUEUED' AND available_at <= $4::float8
      AND task_identifier = ANY({tasks})
      AND (locked_version IS NULL OR locked_version = {version})
  ) AS go
), c AS (
  INSERT INTO runs ({", ".join(columns)}, order_key, previous_status, attempt_count,
                    current_attempt_id, worker_id, lease_expires_at, started_at)
  VALUES ({", ".join(placeholders)},
          (SELECT next_tag FROM tag) - $5::float8 - {priority}::float8,
          CASE WHEN {go} THEN {status} END,
          CASE WHEN {go} THEN 1 ELSE 0 END,
          CASE WHEN {go} THEN {attempt} END,
          CASE WHEN {go} THEN {worker} END,
          CASE WHEN {go} THEN {lease} END,
          CASE WHEN {go} AND {claimed} = 'EXECUTING' THEN {at} END)
  RETURNING *
), tagged AS (
  INSERT INTO run_tags (run_id, tag, environment_id)
  SELECT c.id, t, c.environment_id FROM c, unnest($6::varchar[]) AS t
), attempted AS (
  INSERT INTO attempts (id, run_id, number, status, worker_id, version, created_at, started_at)
  SELECT current_attempt_id, id, 1,
         CASE WHEN status = 'EXECUTING' THEN 'EXECUTING' ELSE 'PENDING' END,
         worker_id, {version}, {at}, started_at
  FROM c WHERE current_attempt_id IS NOT NULL
), logged AS (
  -- one insert, in order: the history reads triggered, claimed, started
  INSERT INTO run_events (run_id, from_status, to_status, attempt_id, reason, at)
  SELECT c.id, e.from_status, e.to_status, CASE WHEN e.k > 0 THEN c.current_attempt_id END,
         coalesce(e.reason, {reason}), c.created_at
  FROM c
  CROSS JOIN (VALUES (0, NULL, {status}, 'triggered'),
                     (1, {status}, 'DEQUEUED', NULL),
                     (2, 'DEQUEUED', 'EXECUTING', 'attempt started'))
       AS e(k, from_status, to_status, reason)
  WHERE e.k = 0 OR (c.current_attempt_id IS NOT NULL AND (e.k = 1 OR c.status = 'EXECUTING'))
  ORDER BY e.k
)
SELECT c.current_attempt_id IS NOT NULL AS handed, {run_claim.COLUMNS} FROM c"""


@functools.lru_cache(maxsize=16)
def _sqlite_insert(columns: tuple[str, ...]) -> str:
    marks = ", ".join("?" for _ in range(len(columns) + 1))
    return f"INSERT INTO runs ({', '.join(columns)}, order_key) VALUES ({marks})"


_SQLITE_TAGS = (
    "INSERT INTO run_tags (run_id, tag, environment_id) "
    "SELECT :run, value, :env FROM json_each(:tags)"
)
_SQLITE_EVENT = (
    "INSERT INTO run_events (run_id, from_status, to_status, reason, at) "
    "VALUES (:run, NULL, :status, 'triggered', :at)"
)


async def idempotent_run(
    conn: AsyncConnection, env_id: str, task_id: str, key: str
) -> tuple[str, float | None] | None:
    """(id, key expiry) of the run an idempotency key names, if any (``ix_runs_idempotency``).

    A read, so on PostgreSQL it may be the transaction's first statement on the
    driver (it then runs on its own): the unique index, not this read, is what
    refuses a second run with the key.
    """
    sql = _PG_IDEMPOTENT if conn.dialect.name == "postgresql" else _SQLITE_IDEMPOTENT
    rows = await fetch_on_driver(conn, sql, [env_id, task_id, key], read_only=True)
    if not rows:
        return None
    run_id, expires_at = rows[0]
    return str(run_id), None if expires_at is None else float(expires_at)


_IDEMPOTENT = (
    "SELECT id, idempotency_key_expires_at FROM runs "
    "WHERE environment_id = {} AND task_identifier = {} AND idempotency_key = {}"
)
_PG_IDEMPOTENT = _IDEMPOTENT.format("$1", "$2", "$3")
_SQLITE_IDEMPOTENT = _IDEMPOTENT.format("?", "?", "?")
