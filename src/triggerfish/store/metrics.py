"""Queries behind ``/metrics``: what happened since the last look (the history's new
rows) and how things stand now (queues, slots, waits, workers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish.store.tables import (
    attempts,
    environments,
    queues,
    run_events,
    runs,
    waitpoint_waiters,
    waitpoints,
    workers,
)


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """A status change, with what the metrics label it by and time it with."""

    id: int
    from_status: str | None
    to_status: str
    env: str
    task: str
    queue: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt_number: int | None
    attempt_started_at: datetime | None
    attempt_finished_at: datetime | None
    env_id: str


async def history_since(
    conn: AsyncConnection, after_id: int, upto: int, limit: int
) -> list[HistoryRow]:
    """The status changes after history row ``after_id`` and up to ``upto`` (a walk of
    its primary key, up to its horizon: ``cursors.history_horizon``)."""
    stmt = (
        select(
            run_events.c.id,
            run_events.c.from_status,
            run_events.c.to_status,
            environments.c.slug,
            runs.c.task_identifier,
            runs.c.queue_name,
            runs.c.created_at,
            runs.c.started_at,
            runs.c.finished_at,
            attempts.c.number,
            attempts.c.started_at,
            attempts.c.finished_at,
            runs.c.environment_id,
        )
        .select_from(run_events)
        .join(runs, runs.c.id == run_events.c.run_id)
        .join(environments, environments.c.id == runs.c.environment_id)
        .outerjoin(attempts, attempts.c.id == run_events.c.attempt_id)
        .where(run_events.c.id > after_id, run_events.c.id <= upto)
        .order_by(run_events.c.id)
        .limit(limit)
    )
    return [HistoryRow(*r) for r in (await conn.execute(stmt)).all()]


async def queue_depths(conn: AsyncConnection) -> list[tuple[str, str, int, datetime | None]]:
    """(environment slug, queue, queued runs, the oldest one's creation) per queue."""
    stmt = (
        select(
            environments.c.slug,
            runs.c.queue_name,
            func.count(),
            func.min(runs.c.created_at),
        )
        .join(environments, environments.c.id == runs.c.environment_id)
        .where(runs.c.status == "QUEUED")
        .group_by(environments.c.slug, runs.c.queue_name)
    )
    return [(r[0], r[1], int(r[2]), r[3]) for r in (await conn.execute(stmt)).all()]


async def slots_in_use(conn: AsyncConnection) -> list[tuple[str, str, int, int | None]]:
    """(environment slug, queue, runs holding a slot, the queue's limit or None)."""
    active = (
        select(runs.c.environment_id, runs.c.queue_name, func.count().label("n"))
        .where(runs.c.status.in_(["DEQUEUED", "EXECUTING"]))
        .group_by(runs.c.environment_id, runs.c.queue_name)
        .subquery()
    )
    limit = func.coalesce(queues.c.concurrency_limit_override, queues.c.concurrency_limit)
    stmt = (
        select(environments.c.slug, active.c.queue_name, active.c.n, limit)
        .select_from(active)
        .join(environments, environments.c.id == active.c.environment_id)
        .outerjoin(
            queues,
            and_(
                queues.c.environment_id == active.c.environment_id,
                queues.c.name == active.c.queue_name,
            ),
        )
    )
    return [(r[0], r[1], int(r[2]), r[3]) for r in (await conn.execute(stmt)).all()]


async def waiting_by_kind(conn: AsyncConnection) -> list[tuple[str, str, int]]:
    """(environment slug, waitpoint kind, waiting runs) of pending waits."""
    stmt = (
        select(
            environments.c.slug,
            waitpoints.c.kind,
            func.count(func.distinct(waitpoint_waiters.c.run_id)),
        )
        .select_from(waitpoints)
        .join(waitpoint_waiters, waitpoint_waiters.c.waitpoint_id == waitpoints.c.id)
        .join(environments, environments.c.id == waitpoints.c.environment_id)
        .where(waitpoints.c.status == "PENDING")
        .group_by(environments.c.slug, waitpoints.c.kind)
    )
    return [(r[0], r[1], int(r[2])) for r in (await conn.execute(stmt)).all()]


async def workers_online(conn: AsyncConnection, seen_after: float) -> list[tuple[str, int]]:
    """(environment slug, workers) that have been heard from since ``seen_after``."""
    stmt = (
        select(environments.c.slug, func.count())
        .select_from(workers)
        .join(environments, environments.c.id == workers.c.environment_id)
        .where(workers.c.stopped_at.is_(None), workers.c.last_seen_at >= seen_after)
        .group_by(environments.c.slug)
    )
    return [(r[0], int(r[1])) for r in (await conn.execute(stmt)).all()]
