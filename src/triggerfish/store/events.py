"""Queries on sent events and on the key-value store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import EventRecord, KvEntryRecord
from triggerfish.store.tables import events, kv_entries
from triggerfish.store.values import column_values


async def get_event(
    conn: AsyncConnection, env_id: str, name: str, event_id: str
) -> EventRecord | None:
    stmt = select(events).where(
        events.c.environment_id == env_id, events.c.name == name, events.c.id == event_id
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else EventRecord(*row)


async def insert_event(conn: AsyncConnection, event: EventRecord) -> bool:
    """Record an event; False if its name and id were recorded already (a concurrent
    send won)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(events).values(column_values(event)).on_conflict_do_nothing()
    result = await conn.execute(stmt)
    return bool(result.rowcount)


async def list_events(
    conn: AsyncConnection, env_id: str, name: str | None, limit: int
) -> list[EventRecord]:
    stmt = select(events).where(events.c.environment_id == env_id)
    if name:
        stmt = stmt.where(events.c.name == name)
    stmt = stmt.order_by(events.c.created_at.desc()).limit(limit)
    return [EventRecord(*r) for r in (await conn.execute(stmt)).all()]


# -- key-value store ----------------------------------------------------------------


async def kv_get(conn: AsyncConnection, env_id: str, key: str, now: float) -> KvEntryRecord | None:
    """The entry of ``key``, unless it has expired."""
    stmt = select(kv_entries).where(
        kv_entries.c.environment_id == env_id,
        kv_entries.c.key == key,
        or_(kv_entries.c.expires_at.is_(None), kv_entries.c.expires_at > now),
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else KvEntryRecord(*row)


async def kv_set(
    conn: AsyncConnection,
    env_id: str,
    key: str,
    value: Any,
    expires_at: float | None,
    now: datetime,
) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(kv_entries).values(
        environment_id=env_id, key=key, value=value, expires_at=expires_at, updated_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[kv_entries.c.environment_id, kv_entries.c.key],
        set_={
            "value": stmt.excluded.value,
            "expires_at": stmt.excluded.expires_at,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    await conn.execute(stmt)


async def kv_delete(conn: AsyncConnection, env_id: str, key: str) -> bool:
    stmt = delete(kv_entries).where(kv_entries.c.environment_id == env_id, kv_entries.c.key == key)
    return bool((await conn.execute(stmt)).rowcount)


async def kv_purge_expired(conn: AsyncConnection, now: float, limit: int) -> int:
    """Delete up to ``limit`` expired entries (oldest expiry first); how many went."""
    expired = (
        select(kv_entries.c.environment_id, kv_entries.c.key)
        .where(kv_entries.c.expires_at <= now)
        .order_by(kv_entries.c.expires_at)
        .limit(limit)
    )
    rows = (await conn.execute(expired)).all()
    for env_id, key in rows:
        await kv_delete(conn, env_id, key)
    return len(rows)
