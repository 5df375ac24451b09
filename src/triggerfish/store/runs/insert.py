"""New runs: inserted with their tags and "triggered" history row."""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    insert,
    select,
)
from sqlalchemy.engine import Dialect as SQLDialect
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import NewRun
from triggerfish.store import queues as queue_store
from triggerfish.store.db import Database, bind_processors, fetch_on_driver
from triggerfish.store.runs import history
from triggerfish.store.tables import run_tags, runs

# The hottest statements are built once and reused with bound parameters:
# building a statement and its cache key costs more than running it.
_INSERT_RUN = insert(runs)
_INSERT_TAGS = insert(run_tags)

#: every column a new run sets, in ``NewRun``'s order
NEW_RUN_COLUMNS = tuple(f.name for f in dataclasses.fields(NewRun))
#: the columns a queued run is stored with: its ``order_key`` comes from its fair tag
QUEUED_COLUMNS = tuple(c for c in NEW_RUN_COLUMNS if c != "order_key")
# read once per trigger: an attribute getter, not reflection over the dataclass
_all_values = operator.attrgetter(*NEW_RUN_COLUMNS)
_queued_values = operator.attrgetter(*QUEUED_COLUMNS)


def new_run_values(new: NewRun) -> dict[str, Any]:
    """``new`` as the column values SQLAlchemy inserts."""
    return dict(zip(NEW_RUN_COLUMNS, _all_values(new), strict=True))


def queued_row(dialect: SQLDialect, new: NewRun) -> list[Any]:
    """The ``QUEUED_COLUMNS`` of ``new``, in order, as SQLAlchemy would store them."""
    row = list(_queued_values(new))
    for i, process in bind_processors(runs, dialect, QUEUED_COLUMNS):
        row[i] = process(row[i])
    return row


def new_run_params(dialect: SQLDialect, new: NewRun, now: float, quantum: float) -> list[Any]:
    """The parameters of ``_pg_statement(QUEUED_COLUMNS)``: the fair bucket, the tags,
    then the run's columns from ``$7`` on."""
    params = [new.environment_id, new.queue_name, new.concurrency_key or "", now, quantum]
    params.append(new.tags)
    params += queued_row(dialect, new)
    return params


async def insert_run(conn: AsyncConnection, new: NewRun) -> None:
    await conn.execute(_INSERT_RUN, new_run_values(new))
    if new.tags:
        await conn.execute(
            _INSERT_TAGS,
            [{"run_id": new.id, "tag": t, "environment_id": new.environment_id} for t in new.tags],
        )
    await history.record(conn, [history.triggered(new.id, new.status, new.created_at)])


async def insert_runs(conn: AsyncConnection, news: Sequence[NewRun]) -> None:
    """Insert many runs with their tags and first history rows: three statements."""
    if not news:
        return
    await conn.execute(insert(runs), [new_run_values(r) for r in news])
    tag_rows = [
        {"run_id": r.id, "tag": t, "environment_id": r.environment_id} for r in news for t in r.tags
    ]
    if tag_rows:
        await conn.execute(insert(run_tags), tag_rows)
    events = [
        history.triggered(r.id, r.status, r.created_at, history.TRIGGERED_IN_A_BATCH) for r in news
    ]
    await history.record(conn, events)


async def insert_queued_run(
    conn: AsyncConnection, new: NewRun, *, now: float, quantum: float
) -> float:
    """Insert a new QUEUED run with the next fair tag of its bucket; returns its order key.

    ``new.order_key`` is ignored: the key comes from the tag and ``new.priority``.
    On PostgreSQL it must be the last statement of its transaction (see
    ``db.fetch_on_driver``).
    """
    if conn.dialect.name == "postgresql":
        fetch = functools.partial(fetch_on_driver, conn)
        return await _insert_postgresql(fetch, conn.dialect, new, now, quantum)
    return await _insert_sqlite(conn, new, now, quantum)


async def insert_queued_run_alone(
    db: Database, new: NewRun, *, now: float, quantum: float
) -> float:
    """``insert_queued_run`` as a transaction of its own, on PostgreSQL: the whole of
    a plain trigger whose task and queue are known (``Database.fetch_alone``)."""
    return await _insert_postgresql(db.fetch_alone, db.engine.dialect, new, now, quantum)


async def _insert_postgresql(
    fetch: Callable[[str, Sequence[Any]], Awaitable[list[Any]]],
    dialect: SQLDialect,
    new: NewRun,
    now: float,
    quantum: float,
) -> float:
    params = new_run_params(dialect, new, now, quantum)
    return float((await fetch(_pg_statement(QUEUED_COLUMNS), params))[0][0])


async def _insert_sqlite(conn: AsyncConnection, new: NewRun, now: float, quantum: float) -> float:
    run = {"run": new.id, "env": new.environment_id}
    bucket: dict[str, Any] = {"env": run["env"], "queue": new.queue_name, "now": now}
    bucket.update(key=new.concurrency_key or "", step=quantum)
    next_tag = (await fetch_on_driver(conn, queue_store.take_tags_sql("sqlite"), bucket))[0][0]
    order_key = float(next_tag) - quantum - float(new.priority)
    row = queued_row(conn.dialect, new)
    await fetch_on_driver(conn, _sqlite_insert(QUEUED_COLUMNS), [*row, order_key])
    stored = dict(zip(QUEUED_COLUMNS, row, strict=True))
    if new.tags:
        await fetch_on_driver(conn, _SQLITE_TAGS, {**run, "tags": stored["tags"]})
    event = {**run, "status": new.status, "at": stored["created_at"]}
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


async def run_by_request_key(conn: AsyncConnection, env_id: str, key: str) -> str | None:
    """The run a trigger call with request key ``key`` made, if any (``ix_runs_request_key``)."""
    stmt = select(runs.c.id).where(runs.c.environment_id == env_id, runs.c.request_key == key)
    found = (await conn.execute(stmt)).scalar()
    return None if found is None else str(found)
