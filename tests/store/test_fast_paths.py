"""Each one-statement fast path leaves what its general operation leaves.

Two environments of one database get the same runs at the same clock times;
in one the operation takes its one-statement path, in the other the general
path (the engine is told the environment is constrained). Their runs, attempts
and history must agree, once ids (run, attempt, worker) are read as positions,
for every outcome: claimed and started, claimed only, not claimable, stale
report, nothing left to claim, a run handed to a parked claim or only queued.
The fast paths are PostgreSQL only, so the comparison runs there; on SQLite the
new run's insert has a driver-level variant of its own, compared likewise.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.engine.test_runs_engine import manifest
from tests.support import started_engine
from tests.support.positions import named_events, named_run
from triggerfish.engine import Engine
from triggerfish.engine.attempts import Report
from triggerfish.engine.dequeue import WorkerIdentity
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.resources import ManualClock
from triggerfish.store import runs as run_store

FAST = ("claim_unconstrained", "claim_unconstrained_after", "insert_and_hand_off_alone")
IGNORED = {"id", "environment_id", "current_attempt_id", "worker_id", "batch_id"}


@pytest.fixture(autouse=True)
def _manifests_stay_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trigger's fast path needs the task's manifest cached (1 s of real time):
    on a loaded machine a test's setup can outlast that and send the fast world's
    trigger down the general path, which is not what these tests compare."""
    monkeypatch.setattr("triggerfish.engine.manifests.LATEST_TTL", 3600.0)


class World:
    """One environment with its worker and the runs triggered in it, in order."""

    def __init__(self, engine: Engine, env_id: str, worker: WorkerIdentity, fast: bool) -> None:
        self.engine, self.env_id, self.worker, self.fast = engine, env_id, worker, fast
        self.run_ids: list[str] = []

    def path(self) -> None:
        """Send this environment's next claims down its own path."""
        constrained = self.engine.res.constrained
        if self.fast:
            constrained.discard(self.env_id)
        else:
            constrained.add(self.env_id)

    async def trigger(self, n: int, **kw: Any) -> None:
        for i in range(n):
            req = TriggerRequest("t", {"i": i}, **kw)
            self.run_ids.append((await self.engine.enqueue.trigger(self.env_id, req)).id)

    async def snapshot(self) -> list[Any]:
        """Every run as stored, with ids read as positions."""
        names = {self.worker.id: "worker"}
        out = []
        async with self.engine.res.db.read() as conn:
            for n, run_id in enumerate(self.run_ids):
                names[run_id] = f"run{n}"
                row = await run_store.get_by_id(conn, run_id)
                assert row is not None
                for a in await run_store.list_attempts(conn, run_id):
                    names[a.id] = f"run{n}/attempt{a.number}"
                attempts = [
                    (a.number, a.status, a.version, a.created_at, a.started_at, a.finished_at)
                    for a in await run_store.list_attempts(conn, run_id)
                ]
                events = await named_events(conn, run_id, names)
                run = named_run(row, names, IGNORED)
                out.append((run, attempts, events))
        return out

    def named(self, rows: list[Any] | None) -> list[Any] | None:
        if rows is None:
            return None
        return [(self.run_ids.index(r.id), r.status, r.attempt_count) for r in rows]


async def _worlds(engine: Engine) -> tuple[World, World]:
    worlds = []
    for slug, fast in (("dev", True), ("prod", False)):
        env = await engine.environments.by_slug(slug)
        worker = await engine.workers.register(
            env.id, version="v1", name="w", concurrency=8, tasks=[manifest()]
        )
        worlds.append(World(engine, env.id, worker, fast))
    return worlds[0], worlds[1]


@pytest.fixture(autouse=True)
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The one-statement variants called, by name, in order."""
    calls: list[str] = []
    for name in FAST:
        original = getattr(run_store, name)

        async def spy(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            calls.append(_name)
            return await _original(*args, **kw)

        monkeypatch.setattr(run_store, name, spy)
    return calls


async def _both(
    fast: World, general: World, op: Any, calls: list[str], expect: str
) -> tuple[Any, Any]:
    """``op`` on each world at the same clock time; what each returned. Only the
    fast world's ``op`` takes the one-statement variant ``expect``."""
    results = []
    for world in (fast, general):
        world.path()
        calls.clear()
        results.append(await op(world))
        assert (expect in calls) == world.fast, (world.fast, calls)
    assert await fast.snapshot() == await general.snapshot()
    return results[0], results[1]


async def test_the_one_statement_claim_leaves_what_the_general_claim_leaves(
    pg_db_url: str, clock: ManualClock, fast_calls: list[str]
) -> None:
    async with started_engine(pg_db_url, clock) as engine:
        fast, general = await _worlds(engine)
        for world in (fast, general):
            await world.trigger(5)
            await world.trigger(1, delay_until=clock.now() + 3600)  # DELAYED: not claimable
            await world.trigger(1, priority=30)  # jumps the queue
        for limit, start in ((3, 1), (1, 0), (4, 4), (2, 2)):  # the last finds nothing
            clock.advance(1)

            async def claim(w: World, limit: int = limit, start: int = start) -> Any:
                return await w.engine.dequeue.claim(w.worker, limit, start)

            a, b = await _both(fast, general, claim, fast_calls, "claim_unconstrained")
            assert fast.named(a) == general.named(b)
        assert [r for r, _, _ in await fast.snapshot() if r["status"] == "QUEUED"] == []


async def test_the_one_statement_report_and_claim_leaves_what_the_general_path_leaves(
    pg_db_url: str, clock: ManualClock, fast_calls: list[str]
) -> None:
    async with started_engine(pg_db_url, clock) as engine:
        fast, general = await _worlds(engine)
        claimed: dict[str, list[Any]] = {}
        for world in (fast, general):
            await world.trigger(6)
            world.engine.res.constrained.add(world.env_id)  # same setup for both
            claimed[world.env_id] = await world.engine.dequeue.claim(world.worker, 3, 2)
        clock.advance(1)

        def reports(world: World) -> list[Report]:
            first, second, third = claimed[world.env_id]
            return [
                Report(first.id, first.current_attempt_id, {"ok": 1}),  # current: completes
                Report(second.id, "attempt_reclaimed_long_ago", {"ok": 2}),  # stale
                Report(third.id, third.current_attempt_id, {"ok": 3}),  # DEQUEUED: refused
            ]

        async def op(world: World) -> Any:
            return await world.engine.dequeue.report_and_claim(
                [], reports(world), world.worker, 2, 1
            )

        (_, done_a, rows_a), (_, done_b, rows_b) = await _both(
            fast, general, op, fast_calls, "claim_unconstrained_after"
        )
        assert [o and o.status for o in done_a] == [o and o.status for o in done_b]
        assert [o and o.status for o in done_a] == ["COMPLETED", None, None]
        assert fast.named(rows_a) == general.named(rows_b)


async def _until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


async def test_a_run_handed_to_a_parked_claim_is_stored_as_the_general_claim_stores_it(
    pg_db_url: str, clock: ManualClock, fast_calls: list[str]
) -> None:
    async with started_engine(pg_db_url, clock, maintenance_interval=30) as engine:
        fast, general = await _worlds(engine)
        for world in (fast, general):
            await world.trigger(1)  # the engine learns the task and queue
            world.engine.res.constrained.add(world.env_id)
            await world.engine.dequeue.claim(world.worker, 1, 1)
        clock.advance(1)

        async def handed(world: World) -> Any:
            if not world.fast:  # the general path: the trigger queues, the claim takes it
                await world.trigger(1, tags=["x"])
                return await world.engine.dequeue.claim(world.worker, 4, 1)
            handoffs = world.engine.handoffs
            parked = asyncio.create_task(
                world.engine.dequeue.claim_or_wait(world.worker, 4, 10, start=1)
            )
            await _until(lambda: handoffs.parked_count(world.env_id) == 1)
            await world.trigger(1, tags=["x"])
            return await asyncio.wait_for(parked, 5)

        a, b = await _both(fast, general, handed, fast_calls, "insert_and_hand_off_alone")
        assert fast.named(a) == general.named(b) == [(1, "EXECUTING", 1)]
