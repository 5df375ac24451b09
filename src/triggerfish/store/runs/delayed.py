"""DELAYED runs: due ones, past their TTL, rescheduled, debounced."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import DueDelayedRun, RunRecord
from triggerfish._domain.states import RunStatus
from triggerfish.store.runs import history
from triggerfish.store.runs.leases import status_in
from triggerfish.store.runs.queries import maybe_run
from triggerfish.store.tables import runs


async def due_delayed(conn: AsyncConnection, now: float, limit: int) -> list[DueDelayedRun]:
    stmt = (
        select(
            runs.c.id,
            runs.c.environment_id,
            runs.c.queue_name,
            runs.c.concurrency_key,
            runs.c.priority,
        )
        .where(runs.c.status == RunStatus.DELAYED.value, runs.c.available_at <= now)
        .limit(limit)
    )
    return [DueDelayedRun(*r) for r in (await conn.execute(stmt)).all()]


async def past_ttl(conn: AsyncConnection, now: float, limit: int) -> list[str]:
    """Ids of QUEUED or DELAYED runs whose TTL passed."""
    stmt = (
        select(runs.c.id)
        .where(
            runs.c.expires_at.is_not(None),
            runs.c.expires_at < now,
            status_in(RunStatus.QUEUED, RunStatus.DELAYED),
        )
        .limit(limit)
    )
    return [r[0] for r in (await conn.execute(stmt)).all()]


async def reschedule_delayed(
    conn: AsyncConnection, env_id: str, run_id: str, until: float, when: datetime, now: datetime
) -> RunRecord | None:
    """Move a DELAYED run's start (and its TTL deadline with it); ``None`` if it is
    not (or no longer) DELAYED."""
    stmt = (
        update(runs)
        .where(
            runs.c.id == run_id,
            runs.c.environment_id == env_id,
            runs.c.status == RunStatus.DELAYED.value,
        )
        .values(
            expires_at=runs.c.expires_at + (until - runs.c.available_at),
            available_at=until,
            delayed_until=when,
            updated_at=now,
        )
        .returning(*runs.c)
    )
    row = maybe_run((await conn.execute(stmt)).first())
    if row is not None:
        delayed = RunStatus.DELAYED.value
        reason = f"rescheduled to {when.isoformat()}Z"
        await history.record(conn, [history.row(run_id, delayed, delayed, at=now, reason=reason)])
    return row


async def find_debounced(
    conn: AsyncConnection, env_id: str, task_id: str, key: str
) -> RunRecord | None:
    """The DELAYED run waiting under a debounce key (``ix_runs_debounce``), row-locked
    on PostgreSQL so concurrent triggers of the burst update it one at a time."""
    stmt = select(runs).where(
        runs.c.environment_id == env_id,
        runs.c.task_identifier == task_id,
        runs.c.debounce_key == key,
        runs.c.status == RunStatus.DELAYED.value,
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return maybe_run((await conn.execute(stmt)).first())


async def update_debounced(
    conn: AsyncConnection,
    run_id: str,
    *,
    payload: Any,
    metadata: Any,
    start: float,
    when: datetime,
    now: datetime,
) -> bool:
    """Give a waiting debounced run the newest payload and start time (still DELAYED)."""
    stmt = (
        update(runs)
        .where(runs.c.id == run_id, runs.c.status == RunStatus.DELAYED.value)
        .values(
            payload=payload,
            run_metadata=metadata,
            expires_at=runs.c.expires_at + (start - runs.c.available_at),
            available_at=start,
            delayed_until=when,
            updated_at=now,
        )
        .returning(runs.c.id)
    )
    return (await conn.execute(stmt)).first() is not None
