"""Claims: what a claimed run looks like, and that limits hold whichever path claims it.

On PostgreSQL an environment that nothing constrains is claimed by one statement
(``store.runs.claim_unconstrained``); everything else by the general path. Both must leave the
same runs, attempts and history, and a limit set between two claims must hold
at the second.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.engine.test_runs_engine import manifest, setup
from triggerfish._domain.states import RunStatus
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.queues import QueueRef
from triggerfish.store import runs as run_store


@pytest.fixture
def one_statement_claims(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many runs each one-statement claim took (None when it deferred)."""
    taken: list[Any] = []
    claim = run_store.claim_unconstrained

    async def counting(fetch: Any, request: run_store.SimpleClaim) -> list[Any] | None:
        rows = await claim(fetch, request)
        taken.append(None if rows is None else len(rows))
        return rows

    monkeypatch.setattr(run_store, "claim_unconstrained", counting)
    return taken


async def test_a_claim_takes_runs_in_fair_order_and_starts_the_first(
    engine: Engine, one_statement_claims: list[Any]
) -> None:
    env_id, worker = await setup(engine)
    low = await engine.enqueue.trigger(env_id, TriggerRequest("t", {"n": 0}))
    high = await engine.enqueue.trigger(env_id, TriggerRequest("t", {"n": 1}, priority=60))
    rest = [await engine.enqueue.trigger(env_id, TriggerRequest("t", {"n": i})) for i in (2, 3)]

    claimed = await engine.dequeue.claim(worker, 3, start=2)

    # the prioritised run jumps the queue; the first two start at once
    assert [r.id for r in claimed] == [high.id, low.id, rest[0].id]
    assert [r.status for r in claimed] == ["EXECUTING", "EXECUTING", "DEQUEUED"]
    assert [r.payload for r in claimed] == [{"n": 1}, {"n": 0}, {"n": 2}]
    assert all(r.attempt_count == 1 and r.worker_id == worker.id for r in claimed)
    assert len({r.current_attempt_id for r in claimed}) == 3
    for row in claimed:
        detail = await engine.runs.retrieve(env_id, row.id)
        assert detail.run.status == row.status
        assert (detail.run.started_at is not None) == (row.status == "EXECUTING")
        events = await engine.runs.events(env_id, row.id)
        steps = [(e.from_status, e.to_status, e.attempt_id) for e in events]
        expected = [(None, "QUEUED", None), ("QUEUED", "DEQUEUED", row.current_attempt_id)]
        if row.status == "EXECUTING":
            expected.append(("DEQUEUED", "EXECUTING", row.current_attempt_id))
        assert steps == expected
    # the started ones finish like any attempt; the unclaimed run is still queued
    await engine.attempts.succeed(high.id, claimed[0].claimed_attempt_id, {"ok": True})
    assert (await engine.runs.retrieve(env_id, high.id)).run.status == RunStatus.COMPLETED
    assert (await engine.runs.retrieve(env_id, rest[1].id)).run.status == RunStatus.QUEUED
    if engine.res.db.dialect == "postgresql":
        assert one_statement_claims == [3]
    else:
        assert one_statement_claims == []


async def test_a_limit_set_between_claims_holds_at_the_next_claim(
    engine: Engine, one_statement_claims: list[Any]
) -> None:
    env_id, worker = await setup(engine, manifest())
    for i in range(6):
        await engine.enqueue.trigger(env_id, TriggerRequest("t", {"i": i}))
    assert len(await engine.dequeue.claim(worker, 2)) == 2

    # two hold slots, the limit is now two: nothing more may start
    await engine.queues.override_limit(env_id, QueueRef("task", "t"), 2)
    assert await engine.dequeue.claim(worker, 10) == []
    await engine.queues.reset_limit(env_id, QueueRef("task", "t"))
    await engine.queues.pause(env_id, QueueRef("task", "t"))
    assert await engine.dequeue.claim(worker, 10) == []
    await engine.queues.resume(env_id, QueueRef("task", "t"))
    await engine.queues.set_environment_limit(env_id, 3)
    assert len(await engine.dequeue.claim(worker, 10)) == 1
    await engine.queues.set_environment_limit(env_id, None)

    # nothing constrains the environment again: the rest are claimed, and once a
    # claim has seen that, the next is one statement again
    assert len(await engine.dequeue.claim(worker, 10)) == 3
    await engine.enqueue.trigger(env_id, TriggerRequest("t", {"i": 6}))
    assert len(await engine.dequeue.claim(worker, 10)) == 1
    if engine.res.db.dialect == "postgresql":
        # the first claim, the one that met the new limit, and the last one
        assert one_statement_claims == [2, None, 1]


async def test_concurrent_claims_take_every_run_once(engine: Engine) -> None:
    env_id, worker = await setup(engine)
    triggered = {
        (await engine.enqueue.trigger(env_id, TriggerRequest("t", {"i": i}))).id for i in range(12)
    }
    batches = await asyncio.gather(*(engine.dequeue.claim(worker, 5, 1) for _ in range(4)))
    claimed = [r.id for batch in batches for r in batch]
    assert len(claimed) == len(set(claimed)) == 12
    assert set(claimed) == triggered
    attempts = [r.current_attempt_id for batch in batches for r in batch]
    assert len(set(attempts)) == 12
