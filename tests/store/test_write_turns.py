"""``Database.write``: where writers cannot write side by side (SQLite), this
process's writers take turns on an asyncio lock rather than on SQLite's busy
handler, which sleeps between tries; on PostgreSQL they still run side by side."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, event, func, insert, select

from tests import support
from triggerfish.store.db import Database

_rows = Table("write_turns_probe", MetaData(), Column("id", Integer, primary_key=True))
WRITERS = 20


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    async with database.write() as conn:
        await conn.run_sync(_rows.metadata.create_all)
    yield database
    await database.dispose()


def _no_busy_wait(db: Database) -> None:
    """Make SQLite refuse a locked write at once instead of sleeping and trying again."""

    @event.listens_for(db.engine.sync_engine, "connect")
    def _connected(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=0")


async def _write_slowly(db: Database, inside: list[int], most: list[int]) -> None:
    async with db.write() as conn:
        inside.append(1)
        most[0] = max(most[0], len(inside))
        await conn.execute(insert(_rows))
        await asyncio.sleep(0.005)  # other writers arrive meanwhile
        inside.pop()


async def _count(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(_rows))).scalar_one())


async def test_writers_of_one_process_take_turns_on_sqlite_and_not_on_postgresql(
    db: Database,
) -> None:
    """Twenty writers at once, each holding its transaction across an await: on
    SQLite (with its own wait for the lock turned off) every one commits, one at a
    time; on PostgreSQL they overlap."""
    if db.dialect == "sqlite":
        await db.dispose()  # connections made from here on skip SQLite's busy wait
        _no_busy_wait(db)
    inside: list[int] = []
    most = [0]
    await asyncio.gather(*(_write_slowly(db, inside, most) for _ in range(WRITERS)))
    assert await _count(db) == WRITERS
    if db.dialect == "sqlite":
        assert most[0] == 1
    else:
        assert most[0] > 1, "PostgreSQL's writers should not wait for one another"


def test_the_turns_hold_in_each_event_loop_a_database_is_used_in(tmp_path: Path) -> None:
    """A Database used from one ``asyncio.run`` and then another (a CLI command's
    steps) still lets its writers take turns in the second loop."""
    db = Database(support.new_sqlite_database(tmp_path / "store.db"))

    async def round_of_writes() -> None:
        async with db.write() as conn:
            await conn.run_sync(_rows.metadata.create_all)
        await asyncio.gather(*(_write_slowly(db, [], [0]) for _ in range(5)))
        await db.dispose()

    asyncio.run(round_of_writes())
    _no_busy_wait(db)
    asyncio.run(round_of_writes())
    assert asyncio.run(_count(db)) == 10
