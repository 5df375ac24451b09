"""``Database.fetch_alone``: single statements on PostgreSQL connections held out of
the pool. However it is used, it must answer every statement, hold no more
connections than it may, keep a connection the database merely refused a
statement on, and drop one that is lost. Connections PostgreSQL closes (a
restart) are replaced without failing the caller, in the pool as well."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from tests.support import wait_for_async
from triggerfish.errors import StoreUnavailable
from triggerfish.store.db import Database
from triggerfish.store.dialects.postgresql import HeldConnections
from triggerfish.store.errors import DuplicateKey


@pytest.fixture
async def db(pg_db_url: str) -> AsyncIterator[Database]:
    database = Database(pg_db_url)
    await database.fetch_alone("CREATE TABLE held_probe (id int PRIMARY KEY)", [])
    yield database
    await database.dispose()


async def _backend(db: Database) -> int:
    return int((await db.fetch_alone("SELECT pg_backend_pid()", []))[0][0])


def _held(db: Database) -> HeldConnections:
    assert db._held_connections is not None  # PostgreSQL
    return db._held_connections


async def test_many_concurrent_statements_share_a_few_held_connections(db: Database) -> None:
    calls = [db.fetch_alone("SELECT pg_sleep(0.02), $1::int", [i]) for i in range(12)]
    answers = await asyncio.gather(*calls)
    assert [rows[0][1] for rows in answers] == list(range(12))
    # the statements beyond the held ones took pool connections and gave them back
    assert _held(db)._held == HeldConnections.LIMIT == len(_held(db)._idle)
    assert db.engine.pool.checkedout() == HeldConnections.LIMIT  # type: ignore[attr-defined]


async def test_each_statement_is_its_own_transaction(db: Database) -> None:
    await db.fetch_alone("INSERT INTO held_probe VALUES (1)", [])
    with pytest.raises(DuplicateKey):
        await db.fetch_alone("INSERT INTO held_probe VALUES ($1), (1)", [2])
    # the refused statement wrote nothing, the earlier one stays
    rows = await db.fetch_alone("SELECT id FROM held_probe ORDER BY id", [])
    assert [r[0] for r in rows] == [1]


async def test_a_refused_statement_keeps_its_connection(db: Database) -> None:
    before = await _backend(db)
    with pytest.raises(asyncpg.PostgresError):
        await db.fetch_alone("SELECT 1 / 0", [])
    assert await _backend(db) == before
    assert _held(db)._held == 1


async def _terminate(pg_db_url: str, pids: list[int]) -> None:
    """End backends from PostgreSQL's side, as a restart would."""
    other = Database(pg_db_url)
    try:
        ended = "SELECT pg_terminate_backend(p) FROM unnest($1::int[]) AS p"
        await other.fetch_alone(ended, [pids])
    finally:
        await other.dispose()


async def test_a_held_connection_postgresql_closed_is_replaced_unused(
    db: Database, pg_db_url: str
) -> None:
    lost = await _backend(db)
    await _terminate(pg_db_url, [lost])
    await wait_for_async(
        lambda: _held(db)._idle[0][1].is_closed(), what="the client to see the connection end"
    )
    assert await _backend(db) != lost  # no error: a fresh connection ran it
    assert _held(db)._held == 1


async def test_a_connection_lost_during_a_statement_is_a_retryable_error(
    db: Database, pg_db_url: str
) -> None:
    waiting = asyncio.create_task(db.fetch_alone("SELECT pg_sleep(30) /* lost */", []))
    watcher = Database(pg_db_url)
    try:
        pid = None
        async with asyncio.timeout(10):
            while pid is None:
                rows = await watcher.fetch_alone(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE '%/* lost */' "
                    "AND pid <> pg_backend_pid()",
                    [],
                )
                pid = rows[0][0] if rows else None
        await watcher.fetch_alone("SELECT pg_terminate_backend($1)", [pid])
    finally:
        await watcher.dispose()
    # it may have run: the caller decides whether to retry, and the error says so
    with pytest.raises(StoreUnavailable, match="retry"):
        await waiting
    assert _held(db)._held == 0
    assert await _backend(db) != pid


async def test_pooled_connections_postgresql_closed_are_replaced(
    db: Database, pg_db_url: str
) -> None:
    async def pooled_pid() -> int:
        async with db.write() as conn:
            return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())

    drivers: list[Any] = []

    async def three_at_once() -> set[int]:
        async def hold() -> int:
            async with db.read() as conn:
                drivers.append((await conn.get_raw_connection()).driver_connection)
                await conn.execute(text("SELECT pg_sleep(0.05)"))
                return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())

        return set(await asyncio.gather(hold(), hold(), hold()))

    pooled = await three_at_once()
    assert len(pooled) == 3
    await _terminate(pg_db_url, sorted(pooled))
    await wait_for_async(
        lambda: all(d.is_closed() for d in drivers), what="the client to see the connections end"
    )
    # every transaction gets a live connection; none fails
    assert not {await pooled_pid() for _ in range(3)} & pooled
    assert not await three_at_once() & pooled


async def test_dispose_closes_the_held_connections(pg_db_url: str) -> None:
    database = Database(pg_db_url)
    pids = {
        pid[0][0]
        for pid in await asyncio.gather(
            *(database.fetch_alone("SELECT pg_backend_pid(), pg_sleep(0.02)", []) for _ in range(3))
        )
    }
    await database.dispose()
    assert _held(database)._held == 0
    watcher = Database(pg_db_url)
    try:
        alive = await watcher.fetch_alone(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", [sorted(pids)]
        )
        assert alive[0][0] == 0
    finally:
        await watcher.dispose()
