"""A new run in one statement on PostgreSQL: fair tag, run row, tags and history row.

A plain trigger used to cost four statements (service clock, fair-bucket
upsert, run insert, history insert) plus ``BEGIN`` and ``COMMIT``, each a round
trip and each through SQLAlchemy's execution machinery, which costs more than
PostgreSQL takes to run them. Here the four are data-modifying CTEs of one
statement, prepared once per connection by asyncpg. The fair tag follows
``queues.take_tags``: the bucket's next tag becomes ``max(next, clock) +
quantum`` where the clock is the newest order key holding a slot, else the
oldest one waiting, else now; the run's order key is its tag minus its
priority.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from sqlalchemy import JSON
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish.engine.states import RunStatus
from triggerfish.store.db import fetchrow_on_driver
from triggerfish.store.tables import runs

_ACTIVE = ", ".join(f"'{s.value}'" for s in (RunStatus.DEQUEUED, RunStatus.EXECUTING))

# $1 env, $2 queue, $3 concurrency key ('' for none), $4 now, $5 quantum,
# $6 tags; the run's columns follow from $7 on
_FAIR_TAG = f"""
clock AS (
  SELECT coalesce(
    (SELECT max(order_key) FROM runs
      WHERE environment_id = $1 AND status IN ({_ACTIVE})),
    (SELECT min(order_key) FROM runs
      WHERE environment_id = $1 AND status = '{RunStatus.QUEUED.value}'),
    $4::float8) AS at
), tag AS (
  INSERT INTO fair_buckets AS b (environment_id, queue_name, concurrency_key, next_tag)
  VALUES ($1, $2, $3, (SELECT at FROM clock) + $5::float8)
  ON CONFLICT (environment_id, queue_name, concurrency_key)
  DO UPDATE SET next_tag = greatest(b.next_tag, (SELECT at FROM clock)) + $5::float8
  RETURNING next_tag
),"""

_FIRST_COLUMN = 7


async def insert_queued_run(
    conn: AsyncConnection, values: dict[str, Any], *, now: float, quantum: float
) -> float:
    """Insert a new QUEUED run with the next fair tag of its bucket; returns its order key.

    ``values["order_key"]`` is ignored (the statement computes it from the tag and
    ``values["priority"]``). It must be the last statement of its transaction or
    the transaction's only one (see ``db.fetchrow_on_driver``).
    """
    columns = tuple(k for k in values if k != "order_key")
    args = [
        values["environment_id"],
        values["queue_name"],
        values["concurrency_key"] or "",
        now,
        quantum,
        values["tags"],
        *(_bind(name, values[name]) for name in columns),
    ]
    row = await fetchrow_on_driver(conn, _statement(columns), *args)
    assert row is not None  # the run CTE always returns its row
    return float(row[0])


def _bind(name: str, value: Any) -> Any:
    # SQLAlchemy's JSON type stores None as JSON null, not SQL NULL; so do we
    return json.dumps(value) if isinstance(runs.c[name].type, JSON) else value


@functools.lru_cache(maxsize=16)
def _statement(columns: tuple[str, ...]) -> str:
    # keyed by the columns a trigger sets, which are the same on every call
    placeholders = []
    for i, name in enumerate(columns, start=_FIRST_COLUMN):
        cast = "::json" if isinstance(runs.c[name].type, JSON) else ""
        placeholders.append(f"${i}{cast}")
    priority = placeholders[columns.index("priority")]
    return (
        f"WITH {_FAIR_TAG} run AS ("
        f"  INSERT INTO runs ({', '.join(columns)}, order_key)"
        f"  VALUES ({', '.join(placeholders)},"
        f"          (SELECT next_tag FROM tag) - $5::float8 - {priority}::float8)"
        "  RETURNING id, environment_id, status, created_at, order_key"
        "), tagged AS ("
        "  INSERT INTO run_tags (run_id, tag, environment_id)"
        "  SELECT run.id, t, run.environment_id FROM run, unnest($6::varchar[]) AS t"
        ") "
        "INSERT INTO run_events (run_id, from_status, to_status, reason, at)"
        " SELECT id, NULL, status, 'triggered', created_at FROM run"
        " RETURNING (SELECT order_key FROM run)"
    )
