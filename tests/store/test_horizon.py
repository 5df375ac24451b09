"""``store/horizon.py``: the highest id of a sequence's table below which no row can
still appear. On SQLite the newest id (a look reused while this process commits
nothing); on PostgreSQL it stops below an id whose transaction still runs, and
passes ids whose transactions rolled back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, Table, insert

from tests import support
from triggerfish.store.db import Database
from triggerfish.store.horizon import QUIET_REUSE, Horizon

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


def _statements(db: Database) -> list[float]:
    """Every statement ``db`` sends from now on (one entry each)."""
    sent: list[float] = []
    db.time_statements(sent.append)
    return sent


async def test_sqlite_reuses_a_look_until_this_process_commits(db: Database) -> None:
    """A live subscriber's wake-ups ask the horizon several times in a row: on
    SQLite those after the first cost no read until this process writes again,
    and a write of ours shows at once."""
    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL's writers run side by side: every look reads")
    horizon = Horizon(db, _probe.c.id)
    first = await _add(db, 2)
    sent = _statements(db)
    assert await horizon.current() == first[-1]
    reads = len(sent)
    for _ in range(5):
        assert await horizon.current() == first[-1]
    assert len(sent) == reads, "a look was not reused though nothing was written"
    (newest,) = await _add(db)
    assert await horizon.current() == newest


async def test_sqlite_shows_another_process_s_writes_after_quiet_reuse(
    db: Database, db_url: str
) -> None:
    """Writes this process did not make (a CLI command's, another server's on the
    same file) show within ``QUIET_REUSE`` seconds."""
    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL's writers run side by side: every look reads")
    horizon = Horizon(db, _probe.c.id)
    start = await horizon.current()
    other = Database(db_url)  # its commits are not this Database's
    try:
        (theirs,) = await _add(other)
        assert theirs > start
        await support.wait_for_async(
            lambda: _at_least(horizon, theirs), timeout=QUIET_REUSE * 20, what="their id"
        )
    finally:
        await other.dispose()


async def _at_least(horizon: Horizon, wanted: int) -> bool:
    return await horizon.current() >= wanted


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("write"), st.integers(1, 4)),
            st.tuples(st.just("look"), st.integers(0, 3)),
        ),
        min_size=1,
        max_size=12,
    ),
    step=st.integers(1, 5),
)
async def test_a_reused_look_agrees_with_a_fresh_one(
    db: Database, steps: list[tuple[str, int]], step: int
) -> None:
    """Whatever mix of this process's writes and looks (with walks' positions, and
    looks of a few ids at a time): the horizon that reuses looks says what one
    that reads every time says (on PostgreSQL neither reuses)."""
    fast = Horizon(db, _probe.c.id, step=step)
    general = Horizon(db, _probe.c.id, step=step, quiet_reuse=0.0)
    written: list[int] = []
    for kind, n in steps:
        if kind == "write":
            written += await _add(db, n)
            continue
        position = written[-n] if written and n and n <= len(written) else None
        assert await fast.current(at_least=position) == await general.current(at_least=position)
