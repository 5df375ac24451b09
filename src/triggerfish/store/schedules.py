"""Cron schedules: the rows, the due-slot scan and the guarded slot claim."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import ScheduleRecord
from triggerfish.store.tables import schedules
from triggerfish.store.values import column_values


def schedule_from_row(row: Row[Any]) -> ScheduleRecord:
    """The record of a row holding every column of ``schedules``, in order."""
    return ScheduleRecord(*row)


def _maybe(row: Row[Any] | None) -> ScheduleRecord | None:
    return None if row is None else ScheduleRecord(*row)


def _all(rows: Sequence[Row[Any]]) -> list[ScheduleRecord]:
    return [ScheduleRecord(*r) for r in rows]


async def insert_schedule(conn: AsyncConnection, schedule: ScheduleRecord) -> None:
    await conn.execute(insert(schedules).values(column_values(schedule)))


async def get_schedule(conn: AsyncConnection, env_id: str, ref: str) -> ScheduleRecord | None:
    """By id, or by deduplication key (the API accepts either in its paths)."""
    stmt = select(schedules).where(
        schedules.c.environment_id == env_id,
        or_(schedules.c.id == ref, schedules.c.deduplication_key == ref),
    )
    rows = _all((await conn.execute(stmt)).all())
    # an id always wins over a deduplication key that happens to look like one
    return next((r for r in rows if r.id == ref), rows[0] if rows else None)


async def by_deduplication_key(
    conn: AsyncConnection, env_id: str, key: str
) -> ScheduleRecord | None:
    stmt = select(schedules).where(
        schedules.c.environment_id == env_id, schedules.c.deduplication_key == key
    )
    return _maybe((await conn.execute(stmt)).first())


async def declarative_for_task(
    conn: AsyncConnection, env_id: str, task_id: str
) -> ScheduleRecord | None:
    stmt = select(schedules).where(
        schedules.c.environment_id == env_id,
        schedules.c.task_identifier == task_id,
        schedules.c.type == "DECLARATIVE",
    )
    return _maybe((await conn.execute(stmt)).first())


async def declarative_schedules(conn: AsyncConnection, env_id: str) -> list[ScheduleRecord]:
    stmt = select(schedules).where(
        schedules.c.environment_id == env_id, schedules.c.type == "DECLARATIVE"
    )
    return _all((await conn.execute(stmt)).all())


async def update_schedule(
    conn: AsyncConnection, schedule_id: str, values: dict[str, Any]
) -> ScheduleRecord | None:
    stmt = (
        update(schedules).where(schedules.c.id == schedule_id).values(**values).returning(schedules)
    )
    return _maybe((await conn.execute(stmt)).first())


async def delete_schedule(conn: AsyncConnection, schedule_id: str) -> bool:
    result = await conn.execute(delete(schedules).where(schedules.c.id == schedule_id))
    return bool(result.rowcount)


async def page(
    conn: AsyncConnection, env_id: str, *, offset: int, limit: int, task_id: str | None = None
) -> tuple[list[ScheduleRecord], int]:
    """One page of the environment's schedules, oldest first, and the total count."""
    where = [schedules.c.environment_id == env_id]
    if task_id is not None:
        where.append(schedules.c.task_identifier == task_id)
    total = (await conn.execute(select(func.count()).select_from(schedules).where(*where))).scalar()
    stmt = select(schedules).where(*where).order_by(schedules.c.id).offset(offset).limit(limit)
    return _all((await conn.execute(stmt)).all()), int(total or 0)


async def due(conn: AsyncConnection, now: float, limit: int) -> list[ScheduleRecord]:
    """Active schedules whose next slot has come, earliest first."""
    stmt = (
        select(schedules)
        .where(schedules.c.next_fire_at.is_not(None), schedules.c.next_fire_at <= now)
        .order_by(schedules.c.next_fire_at)
        .limit(limit)
    )
    return _all((await conn.execute(stmt)).all())


async def claim_slot(
    conn: AsyncConnection,
    schedule_id: str,
    *,
    expected_next: float,
    fired_slot: float | None,
    new_next: float | None,
    now: datetime,
) -> bool:
    """Move the schedule past ``expected_next``; False if another replica already did.

    The ``WHERE next_fire_at = :expected`` is the lock: of several replicas that
    read the same due row, exactly one matches.
    """
    stmt = (
        update(schedules)
        .where(
            schedules.c.id == schedule_id,
            schedules.c.active.is_(True),
            schedules.c.next_fire_at == expected_next,
        )
        .values(next_fire_at=new_next, last_fired_at=fired_slot, updated_at=now)
    )
    return bool((await conn.execute(stmt)).rowcount)
