"""``fetch_on_driver``'s rule, checked by the code: on PostgreSQL a write sent as
its transaction's first statement commits on its own, so nothing may follow it
in that transaction; a read (``read_only``) may, and so may everything on SQLite,
where the statement joins the transaction ``BEGIN IMMEDIATE`` opened."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from triggerfish.store.db import Database, fetch_on_driver
from triggerfish.store.errors import DuplicateKey, NotLastStatement


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    async with database.write() as conn:
        await conn.execute(text("CREATE TABLE driver_probe (id int PRIMARY KEY)"))
    yield database
    await database.dispose()


def _insert(db: Database) -> str:
    mark = "$1" if db.dialect == "postgresql" else "?"
    return f"INSERT INTO driver_probe VALUES ({mark})"


async def _ids(db: Database) -> list[int]:
    async with db.read() as conn:
        rows = await conn.execute(text("SELECT id FROM driver_probe ORDER BY id"))
        return [r[0] for r in rows]


async def test_a_statement_after_a_lone_first_write_is_refused(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("on SQLite the write joins the transaction: nothing runs alone")
    with pytest.raises(NotLastStatement, match="INSERT INTO driver_probe"):
        async with db.write() as conn:
            await fetch_on_driver(conn, _insert(db), [1])
            await conn.execute(text("SELECT 1"))
    # the lone write had committed before the refusal: it stays
    assert await _ids(db) == [1]


async def test_a_second_driver_statement_after_a_lone_first_write_is_refused(
    db: Database,
) -> None:
    if db.dialect != "postgresql":
        pytest.skip("on SQLite the write joins the transaction: nothing runs alone")
    with pytest.raises(NotLastStatement):
        async with db.write() as conn:
            await fetch_on_driver(conn, _insert(db), [1])
            await fetch_on_driver(conn, _insert(db), [2])
    assert await _ids(db) == [1]


async def test_a_write_after_the_first_statement_joins_the_transaction(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(text("SELECT 1"))
        await fetch_on_driver(conn, _insert(db), [1])
        await conn.execute(text("INSERT INTO driver_probe VALUES (2)"))
    assert await _ids(db) == [1, 2]


async def test_a_read_may_come_first(db: Database) -> None:
    select = "SELECT count(*) FROM driver_probe"
    async with db.write() as conn:
        rows = await fetch_on_driver(conn, select, [], read_only=True)
        await conn.execute(text("INSERT INTO driver_probe VALUES (1)"))
        await fetch_on_driver(conn, _insert(db), [rows[0][0] + 2])
    assert await _ids(db) == [1, 2]


async def test_the_next_transaction_on_the_connection_is_not_refused(db: Database) -> None:
    async with db.write() as conn:
        await fetch_on_driver(conn, _insert(db), [1])  # alone and last: fine
    for _ in range(3):  # whichever pooled connection comes back
        async with db.write() as conn:
            await conn.execute(text("SELECT 1"))
            await fetch_on_driver(conn, _insert(db), [len(await _ids(db)) + 1])
    assert await _ids(db) == [1, 2, 3, 4]


async def test_a_taken_key_raises_the_stores_duplicate_key(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO driver_probe VALUES (1)"))
    with pytest.raises(DuplicateKey):
        async with db.write() as conn:
            await conn.execute(text("SELECT 1"))
            await fetch_on_driver(conn, _insert(db), [1])
    with pytest.raises(DuplicateKey):
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO driver_probe VALUES (1)"))
