"""Retention: deleting finished runs, and everything that hangs off them, once an
environment's retention has passed; and old events, webhook deliveries and alert
deliveries, by their age under the same retention.

The maintenance loop calls :func:`purge_runs` with a bounded batch each sweep,
per environment (``environments.retention_days``, else the server's default).
It walks ``ix_runs_retention`` (environment, finished_at): only runs in a final
status have ``finished_at``, and a run is deleted with its rows in
:data:`RUN_TABLES` in one transaction.

A table keyed by a run joins the purge by adding itself to :data:`RUN_TABLES`
(``(table, its column naming the run)``), children before parents where a
foreign key asks for it. Example, for a table of stream chunks::

    RUN_TABLES.append((stream_chunks, "run_id"))

A table of an environment's records that go by age (``environment_id`` and
``created_at``, an ``id`` key, an index on the first two) joins
:data:`AGED_TABLES` and :func:`purge_aged` deletes its old rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Table, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.states import FINAL, WaitpointStatus
from triggerfish.store.tables import (
    alert_deliveries,
    attempts,
    changes,
    environments,
    events,
    run_events,
    run_journal,
    run_journal_blobs,
    run_logs,
    run_spans,
    run_stream_chunks,
    run_tags,
    runs,
    waitpoint_waiters,
    waitpoints,
    webhook_deliveries,
)

#: rows deleted with their run: (table, the column naming the run)
RUN_TABLES: list[tuple[Table, str]] = [
    (run_tags, "run_id"),
    (attempts, "run_id"),
    (run_events, "run_id"),
    (run_logs, "run_id"),
    (run_journal_blobs, "run_id"),
    (run_journal, "run_id"),
    (waitpoint_waiters, "run_id"),
    (changes, "run_id"),
    (run_stream_chunks, "run_id"),
    (run_spans, "run_id"),
]

#: an environment's rows deleted once older than its retention, each table on its
#: (environment_id, created_at) index; events go by :func:`purge_events`
AGED_TABLES: list[Table] = [webhook_deliveries, alert_deliveries]

_FINAL = sorted(s.value for s in FINAL)


async def retention_days(conn: AsyncConnection) -> list[tuple[str, int | None]]:
    """Every environment's id and its own retention in days (None: the default)."""
    rows = await conn.execute(select(environments.c.id, environments.c.retention_days))
    return [(str(r.id), r.retention_days) for r in rows]


async def set_retention_days(conn: AsyncConnection, env_id: str, days: int | None) -> None:
    await conn.execute(
        environments.update().where(environments.c.id == env_id).values(retention_days=days)
    )


async def purge_runs(conn: AsyncConnection, env_id: str, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` runs of ``env_id`` that finished before ``before``,
    with their rows in :data:`RUN_TABLES` and the tokens they own; how many runs."""
    ids = list(
        (
            await conn.execute(
                select(runs.c.id)
                .where(
                    runs.c.environment_id == env_id,
                    runs.c.finished_at < before,
                    runs.c.status.in_(_FINAL),
                )
                .order_by(runs.c.finished_at)
                .limit(limit)
            )
        ).scalars()
    )
    if not ids:
        return 0
    for table, column in RUN_TABLES:
        await conn.execute(delete(table).where(_col(table, column).in_(ids)))
    await conn.execute(
        delete(waitpoints).where(
            waitpoints.c.owner_run_id.in_(ids) | waitpoints.c.child_run_id.in_(ids),
            waitpoints.c.status != WaitpointStatus.PENDING.value,
        )
    )
    await conn.execute(delete(runs).where(runs.c.id.in_(ids)))
    return len(ids)


async def purge_events(conn: AsyncConnection, env_id: str, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` events of ``env_id`` sent before ``before``; how many."""
    keys = (
        await conn.execute(
            select(events.c.environment_id, events.c.id)
            .where(events.c.environment_id == env_id, events.c.created_at < before)
            .limit(limit)
        )
    ).all()
    if not keys:
        return 0
    pk = tuple_(events.c.environment_id, events.c.id)
    await conn.execute(delete(events).where(pk.in_([tuple(k) for k in keys])))
    return len(keys)


async def purge_aged(
    conn: AsyncConnection, table: Table, env_id: str, before: datetime, limit: int
) -> int:
    """Delete up to ``limit`` rows of ``table`` (one of :data:`AGED_TABLES`) made
    for ``env_id`` before ``before``, oldest first; how many."""
    ids = list(
        (
            await conn.execute(
                select(table.c.id)
                .where(table.c.environment_id == env_id, table.c.created_at < before)
                .order_by(table.c.created_at)
                .limit(limit)
            )
        ).scalars()
    )
    if ids:
        await conn.execute(delete(table).where(table.c.id.in_(ids)))
    return len(ids)


def _col(table: Table, name: str) -> Column[str]:
    column: Column[str] = table.c[name]
    return column
