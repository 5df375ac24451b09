"""A plain trigger whose task and queue are known is one statement on PostgreSQL;
every other trigger takes the full path. Both must store the same run."""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine.test_runs_engine import setup
from triggerfish._domain.records import NewRun
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.store import runs as run_store


@pytest.fixture
def alone(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ids of the runs inserted by one-statement triggers."""
    ids: list[str] = []
    insert = run_store.insert_queued_run_alone

    async def spy(db: Any, new: NewRun, **kw: Any) -> float:
        order_key = await insert(db, new, **kw)
        ids.append(new.id)
        return order_key

    monkeypatch.setattr(run_store, "insert_queued_run_alone", spy)
    return ids


async def _stored(engine: Engine, env_id: str, run_id: str) -> tuple[Any, ...]:
    detail = await engine.runs.retrieve(env_id, run_id)
    run = detail.run
    history = await engine.runs.events(env_id, run_id)
    events = [(e.from_status, e.to_status, e.reason) for e in history]
    return (run.status, run.payload, sorted(run.tags), run.queue_name, run.priority, events)


async def test_both_paths_store_the_same_run(engine: Engine, alone: list[str]) -> None:
    env_id, _ = await setup(engine)
    request = TriggerRequest("t", {"n": 1}, tags=["b", "a"], metadata={"m": 1}, priority=2)
    first = await engine.enqueue.trigger(env_id, request)  # learns the task and its queue
    second = await engine.enqueue.trigger(env_id, request)
    postgresql = engine.res.db.dialect == "postgresql"
    assert alone == ([second.id] if postgresql else [])
    assert await _stored(engine, env_id, first.id) == await _stored(engine, env_id, second.id)
    a = (await engine.runs.retrieve(env_id, first.id)).run
    b = (await engine.runs.retrieve(env_id, second.id)).run
    assert a.order_key < b.order_key  # fair order: the second comes after the first
    assert b.run_metadata == {"m": 1}


async def test_keys_delays_and_new_queues_take_the_full_path(
    engine: Engine, alone: list[str]
) -> None:
    env_id, _ = await setup(engine)
    await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    keyed = TriggerRequest("t", {}, idempotency_key="k")
    first = await engine.enqueue.trigger(env_id, keyed)
    again = await engine.enqueue.trigger(env_id, keyed)
    assert again.id == first.id and again.is_cached
    later = engine.res.clock.now() + 3600
    delayed = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}, delay_until=later))
    elsewhere = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}, queue="other"))
    assert (await engine.runs.retrieve(env_id, delayed.id)).run.status == "DELAYED"
    assert (await engine.runs.retrieve(env_id, elsewhere.id)).run.queue_name == "other"
    assert alone == []
    # the new queue is known now: the next plain trigger into it is one statement
    last = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}, queue="other"))
    assert alone == ([last.id] if engine.res.db.dialect == "postgresql" else [])
