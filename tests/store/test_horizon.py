"""``store/horizon.py``: the highest id of a sequence's table below which no row can
still appear. On SQLite the newest id; on PostgreSQL it stops below an id whose
transaction still runs, and passes ids whose transactions rolled back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert

from triggerfish.store.db import Database
from triggerfish.store.horizon import Horizon

_probe = Table("horizon_probe", MetaData(), Column("id", Integer, primary_key=True))


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    async with database.write() as conn:
        await conn.run_sync(_probe.metadata.create_all)
    yield database
    await database.dispose()


async def _add(db: Database, n: int = 1) -> list[int]:
    ids = []
    for _ in range(n):
        async with db.write() as conn:
            ids.append(
                int((await conn.execute(insert(_probe).returning(_probe.c.id))).scalar_one())
            )
    return ids


async def _driver(db: Database) -> asyncpg.Connection:
    return await asyncpg.connect(db.url.set(drivername="postgresql").render_as_string(False))


_INSERT = "INSERT INTO horizon_probe DEFAULT VALUES RETURNING id"


async def test_it_starts_at_the_newest_id_or_at_a_walk_s_position(db: Database) -> None:
    before = await _add(db, 3)
    assert await Horizon(db, _probe.c.id).current() == before[-1]
    walk = Horizon(db, _probe.c.id, step=2)
    assert await walk.current(at_least=before[0]) == before[-1]  # up from the position
    after = await _add(db, 5)
    assert await walk.current(at_least=before[0]) == after[1]  # two ids per look
    assert await walk.current(at_least=after[3]) == after[-1]  # a position moved ahead


async def test_it_stops_below_an_id_whose_transaction_still_runs(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: ids commit in order")
    horizon = Horizon(db, _probe.c.id)
    start = await horizon.current()
    slow = await _driver(db)
    try:
        tx = slow.transaction()
        await tx.start()
        held = await slow.fetchval(_INSERT)
        later = await _add(db, 2)
        assert await horizon.current() == held - 1 == start
        await tx.commit()
        assert await horizon.current() == later[-1]
    finally:
        await slow.close()


async def test_ids_whose_transactions_rolled_back_are_passed_together(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: ids commit in order")
    horizon = Horizon(db, _probe.c.id)
    await horizon.current()
    slow = await _driver(db)
    try:
        for _ in range(3):  # three gaps between committed ids
            tx = slow.transaction()
            await tx.start()
            await slow.fetchval(_INSERT)
            await tx.rollback()
            newest = await _add(db)
        # a first look stops at the first gap; once it has seen that every
        # transaction that took a missing id ended, the next look passes them all
        assert await horizon.current() < newest[-1]
        assert await horizon.current() == newest[-1]
    finally:
        await slow.close()
