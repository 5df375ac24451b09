"""The change feed: each change in the transaction that makes it, reads by run, tag and
batch, wake-ups, and the horizon that never lets a late commit be skipped."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests import support
from tests.engine.test_runs_engine import setup
from triggerfish._domain.records import ChangeRecord
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.resources import ManualClock
from triggerfish.engine.waitpoints import TokenRequest

#: the field of each kind's data the tests compare
SHOWN = {"created": "status", "status": "status", "metadata": "metadata", "tags": "tags"}


def kinds(changes: list[ChangeRecord]) -> list[tuple[str, object]]:
    return [(c.kind, c.data.get(SHOWN.get(c.kind, "message"))) for c in changes]


async def test_a_runs_life_is_in_the_feed_in_order(engine: Engine) -> None:
    env_id, worker = await setup(engine)
    start = await engine.changes.position()
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}, tags=["a"]))
    [claimed] = await engine.dequeue.claim(worker, 1)
    attempt = claimed.claimed_attempt_id
    assert attempt is not None
    await engine.attempts.start(run.id, attempt)
    await engine.metadata.update(env_id, run.id, replace={"progress": 0.5})
    await engine.runs.add_tags(env_id, run.id, ["b"])
    await engine.runs.append_logs(env_id, attempt, [{"message": "hello"}])
    await engine.attempts.succeed(run.id, attempt, {"ok": 1})
    got = await engine.changes.read(env_id, start, run_id=run.id)
    assert kinds(got) == [
        ("created", "QUEUED"),
        ("status", "DEQUEUED"),
        ("status", "EXECUTING"),
        ("metadata", {"progress": 0.5}),
        ("tags", ["a", "b"]),
        ("log", "hello"),
        ("status", "COMPLETED"),
    ]
    assert [c.id for c in got] == sorted(c.id for c in got)
    assert all(c.environment_id == env_id and c.run_id == run.id for c in got)
    assert got[0].data["task"] == "t" and got[1].data["from"] == "QUEUED"
    # resume after any change: exactly the rest
    assert await engine.changes.read(env_id, got[2].id, run_id=run.id) == got[3:]
    # other environments see nothing of it
    other = await engine.environments.by_slug("prod")
    assert await engine.changes.read(other.id, start) == []


async def test_filters_by_tag_and_batch(engine: Engine) -> None:
    env_id, _ = await setup(engine)
    start = await engine.changes.position()
    tagged = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}, tags=["user:1"]))
    await engine.enqueue.trigger(env_id, TriggerRequest("t", {}, tags=["user:2"]))
    batch = await engine.enqueue.trigger_batch(
        env_id, [TriggerRequest("t", {"i": i}) for i in range(2)]
    )
    by_tag = await engine.changes.read(env_id, start, tags=["user:1"])
    assert [(c.run_id, c.kind) for c in by_tag] == [(tagged.id, "created")]
    by_batch = await engine.changes.read(env_id, start, batch_id=batch.id)
    assert sorted(str(c.run_id) for c in by_batch) == sorted(batch.run_ids)
    assert len(await engine.changes.read(env_id, start)) == 4
    assert len(await engine.changes.read(env_id, start, limit=3)) == 3


async def test_wait_wakes_on_a_commit(engine: Engine) -> None:
    env_id, _ = await setup(engine)
    after = await engine.changes.position()
    assert not await engine.changes.wait(after, timeout=0.05)
    waiting = asyncio.create_task(engine.changes.wait(after, timeout=30))
    await asyncio.sleep(0)
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    assert await asyncio.wait_for(waiting, 10)
    [change] = await engine.changes.read(env_id, after)
    assert change.run_id == run.id


async def test_follow_yields_each_change_once(engine: Engine) -> None:
    env_id, _ = await setup(engine)
    after = await engine.changes.position()
    seen: list[str] = []

    async def follow() -> None:
        async for change in engine.changes.follow(env_id, after, kinds=["created"]):
            seen.append(str(change.run_id))
            if len(seen) == 3:
                return

    following = asyncio.create_task(follow())
    ids = [(await engine.enqueue.trigger(env_id, TriggerRequest("t"))).id for _ in range(3)]
    await asyncio.wait_for(following, 10)
    assert seen == ids


async def test_waitpoint_changes(engine: Engine) -> None:
    env_id, _ = await setup(engine)
    start = await engine.changes.position()
    token, _ = await engine.waitpoints.create_token(env_id, TokenRequest())
    await engine.waitpoints.complete_token(env_id, token.id, {"ok": True})
    [change] = await engine.changes.read(env_id, start, kinds=["waitpoint"])
    assert change.data == {"waitpoint": token.id, "kind": "TOKEN", "status": "COMPLETED"}


async def test_changes_on_another_server_wake_this_one(pg_db_url: str, clock: ManualClock) -> None:
    async with (
        support.started_engine(pg_db_url, clock) as a,
        support.started_engine(pg_db_url, clock) as b,
    ):
        env_id, _ = await setup(a)
        after = await b.changes.position()
        # B's notifier must have seen A listening before A's commit sends a NOTIFY
        a.res.notifier._others_until = 0.0  # type: ignore[attr-defined]
        waiting = asyncio.create_task(b.changes.wait(after, timeout=30))
        await asyncio.sleep(0.05)
        run = await a.enqueue.trigger(env_id, TriggerRequest("t"))
        assert await asyncio.wait_for(waiting, 10)
        [change] = await b.changes.read(env_id, after)
        assert change.run_id == run.id


async def test_horizon_waits_for_an_earlier_id_still_uncommitted(
    pg_db_url: str, clock: ManualClock, tmp_path: Path
) -> None:
    """Ids come from a sequence: a transaction holding id N may commit after N+1.
    The feed hands out nothing past N until N commits or rolls back."""
    async with support.started_engine(pg_db_url, clock) as eng:
        env_id, _ = await setup(eng)
        start = await eng.changes.position()
        dsn = pg_db_url.replace("postgresql+asyncpg", "postgresql")
        slow = await asyncpg.connect(dsn)
        try:
            insert = (
                "INSERT INTO changes (environment_id, kind, data, created_at) "
                "VALUES ($1, $2, '{}', 0) RETURNING id"
            )
            tx = slow.transaction()
            await tx.start()
            held = await slow.fetchval(insert, env_id, "status")
            run = await eng.enqueue.trigger(env_id, TriggerRequest("t"))
            assert await eng.changes.read(env_id, start) == []
            assert await eng.changes.position() == held - 1
            await tx.commit()
            got = await eng.changes.read(env_id, start)
            assert got[0].id == held and got[-1].run_id == run.id
            # a rolled-back id is a gap for good: passed once its transaction ended
            tx = slow.transaction()
            await tx.start()
            lost = await slow.fetchval(insert, env_id, "status")
            after = got[-1].id
            second = await eng.enqueue.trigger(env_id, TriggerRequest("t"))
            assert await eng.changes.read(env_id, after) == []
            await tx.rollback()
            got = await eng.changes.read(env_id, after)
            assert [c.run_id for c in got] == [second.id] and got[0].id > lost
        finally:
            await slow.close()


async def test_retention_deletes_the_oldest(engine: Engine) -> None:
    from triggerfish.store import changes as store

    env_id, _ = await setup(engine)
    start = await engine.changes.position()
    for _ in range(3):
        await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    await engine.changes.position()  # the feed has seen them: deleting leaves no gap
    async with engine.res.db.write() as conn:
        assert await store.delete_before(conn, 0.0, 10) == 0
        assert await store.delete_before(conn, 2e10, 2) == 2
    assert len(await engine.changes.read(env_id, start)) == 1


async def test_the_maintenance_sweep_forgets_old_changes(
    engine: Engine, clock: ManualClock
) -> None:
    env_id, _ = await setup(engine)
    start = await engine.changes.position()
    await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    assert (await engine.maintenance.sweep())["changes_forgotten"] == 0
    assert len(await engine.changes.read(env_id, start)) == 1
    clock.advance(engine.res.settings.changes_retention + 60)
    assert (await engine.maintenance.sweep())["changes_forgotten"] >= 1
    assert await engine.changes.read(env_id, start) == []


async def test_live_subscribers_share_one_read_of_the_table(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many subscribers to runs, each reading on from its position after a wake-up:
    one query of the table serves them all, and each gets exactly its run's changes."""
    from triggerfish.store import changes as change_store

    env_id, _ = await setup(engine)
    feed = engine.changes
    runs = [await engine.enqueue.trigger(env_id, TriggerRequest("t", {})) for _ in range(5)]
    start = await feed.position()
    await feed.read_page(env_id, start, run_id=runs[0].id)  # the window starts
    for run in runs:
        await engine.metadata.update(env_id, run.id, replace={"run": run.id})
    shared, own = [], []
    real_all, real_read = change_store.read_all, change_store.read

    async def read_all(*args: Any, **kwargs: Any) -> list[ChangeRecord]:
        shared.append(1)
        return await real_all(*args, **kwargs)

    async def read(*args: Any, **kwargs: Any) -> list[ChangeRecord]:
        own.append(1)
        return await real_read(*args, **kwargs)

    monkeypatch.setattr(change_store, "read_all", read_all)
    monkeypatch.setattr(change_store, "read", read)
    pages = await asyncio.gather(
        *(feed.read_page(env_id, start, run_id=runs[i % 5].id) for i in range(200))
    )
    assert len(shared) == 1 and own == []
    for i, (got, position) in enumerate(pages):
        assert [(c.kind, c.data["metadata"]) for c in got] == [
            ("metadata", {"run": runs[i % 5].id})
        ]
        assert position >= got[-1].id
    # a resume from before the window reads the table itself, and gets the same
    older, _ = await feed.read_page(env_id, 0, run_id=runs[1].id)
    assert own == [1] and [c.kind for c in older] == ["created", "metadata"]


async def test_the_window_in_memory_is_bounded_by_bytes(
    db_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run streaming large chunks does not fill the server's memory: the window
    keeps about ``changes_window_bytes`` of the newest changes, and a resume from
    before them reads the table, losing nothing."""
    from triggerfish.config import ServerSettings
    from triggerfish.store import changes as change_store

    settings = ServerSettings(database_url=db_url, changes_window_bytes=20_000)
    engine = Engine.create(settings, clock=clock)
    await engine.start(background=False)
    await engine.environments.bootstrap()
    try:
        env_id, _ = await setup(engine)
        run = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
        feed = engine.changes
        start = await feed.position()
        await feed.read_page(env_id, start, run_id=run.id)  # the window starts
        chunks = [{"n": n, "text": "x" * 4000} for n in range(20)]  # ~80 kB of chunks
        for n in range(0, 20, 5):
            await engine.streams.append(env_id, run.id, "llm", n, chunks[n : n + 5])
        own: list[int] = []
        real_read = change_store.read

        async def read(*args: Any, **kwargs: Any) -> list[ChangeRecord]:
            own.append(1)
            return await real_read(*args, **kwargs)

        monkeypatch.setattr(change_store, "read", read)
        # from the start: older than the window, so read from the table, all of it
        everything = await feed.read(env_id, start, run_id=run.id)
        assert own == [1]
        assert [c.data["seq"] for c in everything] == list(range(20))
        assert [c.data["chunk"] for c in everything] == chunks
        # the newest chunks are in memory: a live subscriber reads no table
        own.clear()
        newest, _ = await feed.read_page(env_id, everything[-3].id, run_id=run.id)
        assert own == [] and [c.data["seq"] for c in newest] == [18, 19]
        count, size = feed.window
        assert 2 <= count < 20 and size <= 20_000
    finally:
        await engine.close()
