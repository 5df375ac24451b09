"""A run's history: the ``run_events`` rows every status change writes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Row,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish.store.tables import run_events


async def list_events(conn: AsyncConnection, run_id: str) -> list[Row[Any]]:
    stmt = select(run_events).where(run_events.c.run_id == run_id).order_by(run_events.c.id)
    return list((await conn.execute(stmt)).all())
