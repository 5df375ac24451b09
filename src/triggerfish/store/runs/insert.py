"""New runs: inserted with their tags and "triggered" history row."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    insert,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish.store import queues as queue_store
from triggerfish.store.db import Database, fetch_on_driver, stored_row
from triggerfish.store.runs import history
from triggerfish.store.tables import run_tags, runs

# The hottest statements are built once and reused with bound parameters:
# building a statement and its cache key costs more than running it.
_INSERT_RUN = insert(runs)
_INSERT_TAGS = insert(run_tags)


async def insert_run(conn: AsyncConnection, values: dict[str, Any], tags: Sequence[str]) -> None:
    await conn.execute(_INSERT_RUN, values)
    if tags:
        await conn.execute(
            _INSERT_TAGS,
            [
                {"run_id": values["id"], "tag": t, "environment_id": values["environment_id"]}
                for t in tags
            ],
        )
    await history.record(
        conn, [history.triggered(values["id"], values["status"], values["created_at"])]
    )


async def insert_runs(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many runs with their tags and first history rows: three statements."""
    if not rows:
        return
    await conn.execute(insert(runs), list(rows))
    tag_rows = [
        {"run_id": r["id"], "tag": t, "environment_id": r["environment_id"]}
        for r in rows
        for t in r["tags"]
    ]
    if tag_rows:
        await conn.execute(insert(run_tags), tag_rows)
    events = [
        history.triggered(r["id"], r["status"], r["created_at"], history.TRIGGERED_IN_A_BATCH)
        for r in rows
    ]
    await history.record(conn, events)


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


_PG_TRIGGERED = history.triggered_insert_sql("id", "status", "created_at", source="run")


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
{_PG_TRIGGERED}
RETURNING (SELECT order_key FROM run)"""


@functools.lru_cache(maxsize=16)
def _sqlite_insert(columns: tuple[str, ...]) -> str:
    marks = ", ".join("?" for _ in range(len(columns) + 1))
    return f"INSERT INTO runs ({', '.join(columns)}, order_key) VALUES ({marks})"


_SQLITE_TAGS = (
    "INSERT INTO run_tags (run_id, tag, environment_id) "
    "SELECT :run, value, :env FROM json_each(:tags)"
)
_SQLITE_EVENT = history.triggered_insert_sql(":run", ":status", ":at")


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
