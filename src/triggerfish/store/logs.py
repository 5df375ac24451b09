"""Log lines of runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import LogRecord, NewLogLine
from triggerfish.store.tables import run_logs
from triggerfish.store.values import column_values


async def append(conn: AsyncConnection, lines: Sequence[NewLogLine]) -> None:
    if lines:
        await conn.execute(insert(run_logs), [column_values(line) for line in lines])


async def read(
    conn: AsyncConnection, run_id: str, *, after_id: int = 0, limit: int = 1000
) -> list[LogRecord]:
    stmt = (
        select(run_logs)
        .where(run_logs.c.run_id == run_id, run_logs.c.id > after_id)
        .order_by(run_logs.c.id)
        .limit(limit)
    )
    return [log_from_row(r) for r in (await conn.execute(stmt)).all()]


def log_from_row(row: Row[Any]) -> LogRecord:
    """The record of a row holding every column of ``run_logs``, in order."""
    return LogRecord(*row)
