"""Batches: one row per batch trigger; its runs carry ``batch_id`` and ``batch_index``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import BatchRecord, NewBatch
from triggerfish.store.tables import batches, runs
from triggerfish.store.values import column_values


def _maybe(row: Row[Any] | None) -> BatchRecord | None:
    return None if row is None else BatchRecord(*row)


async def insert_batch(conn: AsyncConnection, new: NewBatch) -> None:
    await conn.execute(insert(batches).values(column_values(new)))


async def get(conn: AsyncConnection, env_id: str, batch_id: str) -> BatchRecord | None:
    stmt = select(batches).where(batches.c.id == batch_id, batches.c.environment_id == env_id)
    return _maybe((await conn.execute(stmt)).first())


async def get_for_update(conn: AsyncConnection, env_id: str, batch_id: str) -> BatchRecord | None:
    """The batch, row-locked on PostgreSQL so concurrent item streams add runs in turn."""
    stmt = select(batches).where(batches.c.id == batch_id, batches.c.environment_id == env_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return _maybe((await conn.execute(stmt)).first())


async def find_idempotent(conn: AsyncConnection, env_id: str, key: str) -> BatchRecord | None:
    stmt = select(batches).where(
        batches.c.environment_id == env_id, batches.c.idempotency_key == key
    )
    return _maybe((await conn.execute(stmt)).first())


async def seal(conn: AsyncConnection, batch_id: str, now: datetime) -> None:
    await conn.execute(
        update(batches).where(batches.c.id == batch_id).values(sealed_at=now, updated_at=now)
    )


async def add_errors(conn: AsyncConnection, batch_id: str, errors: list[dict[str, Any]]) -> None:
    """Append refused items to the batch's errors (the caller holds the batch row)."""
    current = (
        await conn.execute(select(batches.c.errors).where(batches.c.id == batch_id))
    ).scalar()
    merged = sorted([*(current or []), *errors], key=lambda e: int(e["index"]))
    await conn.execute(update(batches).where(batches.c.id == batch_id).values(errors=merged))


async def indexes(conn: AsyncConnection, batch_id: str) -> list[int]:
    stmt = select(runs.c.batch_index).where(runs.c.batch_id == batch_id)
    return [int(i) for (i,) in await conn.execute(stmt)]


async def run_ids(conn: AsyncConnection, batch_id: str) -> list[str]:
    """The batch's runs in item order (``ix_runs_batch``)."""
    stmt = select(runs.c.id).where(runs.c.batch_id == batch_id).order_by(runs.c.batch_index)
    return [str(i) for (i,) in await conn.execute(stmt)]


async def status_counts(conn: AsyncConnection, batch_id: str) -> dict[str, int]:
    stmt = (
        select(runs.c.status, func.count())
        .where(runs.c.batch_id == batch_id)
        .group_by(runs.c.status)
    )
    return {s: int(n) for s, n in await conn.execute(stmt)}


async def by_request_key(conn: AsyncConnection, env_id: str, key: str) -> BatchRecord | None:
    """The batch a call with request key ``key`` made, if any (``ix_batches_request_key``)."""
    stmt = select(batches).where(batches.c.environment_id == env_id, batches.c.request_key == key)
    return _maybe((await conn.execute(stmt)).first())
