"""``Database.fetch_alone``: single statements on PostgreSQL connections held out of
the pool. However it is used, it must answer every statement, hold no more
connections than it may, keep a connection the database merely refused a
statement on, and drop one that is lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.exc import IntegrityError

from triggerfish.store.db import Database


@pytest.fixture
async def db(pg_db_url: str) -> AsyncIterator[Database]:
    database = Database(pg_db_url)
    await database.fetch_alone("CREATE TABLE held_probe (id int PRIMARY KEY)", [])
    yield database
    await database.dispose()


async def _backend(db: Database) -> int:
    return int((await db.fetch_alone("SELECT pg_backend_pid()", []))[0][0])


async def test_many_concurrent_statements_share_a_few_held_connections(db: Database) -> None:
    calls = [db.fetch_alone("SELECT pg_sleep(0.02), $1::int", [i]) for i in range(12)]
    answers = await asyncio.gather(*calls)
    assert [rows[0][1] for rows in answers] == list(range(12))
    # the statements beyond the held ones took pool connections and gave them back
    assert db._held == Database.HELD_CONNECTIONS == len(db._idle)
    assert db.engine.pool.checkedout() == Database.HELD_CONNECTIONS  # type: ignore[attr-defined]


async def test_each_statement_is_its_own_transaction(db: Database) -> None:
    await db.fetch_alone("INSERT INTO held_probe VALUES (1)", [])
    with pytest.raises(IntegrityError):
        await db.fetch_alone("INSERT INTO held_probe VALUES ($1), (1)", [2])
    # the refused statement wrote nothing, the earlier one stays
    rows = await db.fetch_alone("SELECT id FROM held_probe ORDER BY id", [])
    assert [r[0] for r in rows] == [1]


async def test_a_refused_statement_keeps_its_connection(db: Database) -> None:
    before = await _backend(db)
    with pytest.raises(asyncpg.PostgresError):
        await db.fetch_alone("SELECT 1 / 0", [])
    assert await _backend(db) == before
    assert db._held == 1


async def test_a_lost_connection_is_dropped_and_replaced(
    db: Database, pg_db_url: str
) -> None:
    lost = await _backend(db)
    other = Database(pg_db_url)
    try:
        await other.fetch_alone("SELECT pg_terminate_backend($1)", [lost])
    finally:
        await other.dispose()
    # the statement on the lost connection fails (it may have run: the caller
    # decides whether to retry), and the connection is dropped
    with pytest.raises(Exception):  # noqa: B017 - asyncpg's error depends on timing
        await _backend(db)
    assert db._held == 0
    assert await _backend(db) != lost
    assert db._held == 1


async def test_dispose_closes_the_held_connections(pg_db_url: str) -> None:
    database = Database(pg_db_url)
    pids = {pid[0][0] for pid in await asyncio.gather(*(
        database.fetch_alone("SELECT pg_backend_pid(), pg_sleep(0.02)", []) for _ in range(3)
    ))}
    await database.dispose()
    assert database._held == 0
    watcher = Database(pg_db_url)
    try:
        alive = await watcher.fetch_alone(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", [sorted(pids)]
        )
        assert alive[0][0] == 0
    finally:
        await watcher.dispose()
