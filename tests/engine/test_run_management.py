"""Delay, TTL, reschedule, replay, debounce, metadata, tags and batch trigger on the
real store (both backends), driven with a manual clock."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from tests.engine.test_runs_engine import manifest, setup, status
from triggerfish._domain.states import RunStatus
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import BatchEntry, Debounce, TriggerRequest
from triggerfish.engine.metadata import apply_operations
from triggerfish.engine.queues import QueueRef
from triggerfish.engine.resources import ManualClock
from triggerfish.errors import (
    RunNotReschedulable,
    StaleTransition,
    UserError,
)


async def test_reschedule_moves_a_delayed_run(engine: Engine, clock: ManualClock) -> None:
    env_id, worker = await setup(engine)
    run = await engine.enqueue.trigger(
        env_id, TriggerRequest("t", delay_until=clock.now() + 3600, ttl=600, ttl_text="10m")
    )
    row = await engine.runs.reschedule(env_id, run.id, clock.now() + 60)
    assert row.status == RunStatus.DELAYED and row.expires_at == clock.now() + 660
    clock.advance(61)
    assert (await engine.maintenance.sweep())["promoted"] == 1
    [claimed] = await engine.dequeue.claim(worker, 1)
    assert claimed.id == run.id
    with pytest.raises(RunNotReschedulable):
        await engine.runs.reschedule(env_id, run.id, clock.now() + 60)


async def test_ttl_expires_a_run_that_could_not_start(engine: Engine, clock: ManualClock) -> None:
    env_id, worker = await setup(engine)
    await engine.queues.pause(env_id, QueueRef("task", "t"))
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", ttl=30, ttl_text="30s"))
    clock.advance(31)
    assert (await engine.maintenance.sweep())["expired"] == 1
    await engine.queues.resume(env_id, QueueRef("task", "t"))
    assert await engine.dequeue.claim(worker, 5) == []
    assert await status(engine, env_id, run.id) is RunStatus.EXPIRED


async def test_replay_copies_payload_and_options_and_links(engine: Engine) -> None:
    env_id, _worker = await setup(engine)
    original = await engine.enqueue.trigger(
        env_id,
        TriggerRequest(
            "t",
            {"n": 1},
            tags=["x"],
            metadata={"m": 1},
            machine="large-1x",
            max_attempts=5,
            concurrency_key="k",
            priority=3,
        ),
    )
    replay_id = await engine.replays.replay(env_id, original.id)
    row = (await engine.runs.retrieve(env_id, replay_id)).run
    assert replay_id != original.id and row.replay_of == original.id
    assert row.payload == {"n": 1} and row.tags == ["x"] and row.run_metadata == {"m": 1}
    assert (row.machine, row.max_attempts, row.concurrency_key, row.priority) == (
        "large-1x",
        5,
        "k",
        3,
    )
    changed = await engine.replays.replay(env_id, original.id, None, {"payload": {"n": 2}})
    assert (await engine.runs.retrieve(env_id, changed)).run.payload == {"n": 2}
    with pytest.raises(UserError):
        await engine.replays.replay(env_id, original.id, None, {"nope": 1})


async def test_debounce_trailing_collapses_a_burst(engine: Engine, clock: ManualClock) -> None:
    env_id, worker = await setup(engine)
    deb = Debounce("user_42", 5.0)
    first = await engine.enqueue.trigger(env_id, TriggerRequest("t", {"n": 1}, debounce=deb))
    clock.advance(3)
    second = await engine.enqueue.trigger(env_id, TriggerRequest("t", {"n": 2}, debounce=deb))
    clock.advance(3)
    third = await engine.enqueue.trigger(env_id, TriggerRequest("t", {"n": 3}, debounce=deb))
    assert first.id == second.id == third.id and third.debounced and not first.debounced
    clock.advance(4)  # 4 s after the last trigger: still quiet-waiting
    await engine.maintenance.sweep()
    assert await status(engine, env_id, first.id) is RunStatus.DELAYED
    clock.advance(1.5)
    await engine.maintenance.sweep()
    [claimed] = await engine.dequeue.claim(worker, 5)
    assert claimed.id == first.id and claimed.payload == {"n": 3}
    # the burst is over: the same key starts a new run
    nxt = await engine.enqueue.trigger(env_id, TriggerRequest("t", {"n": 4}, debounce=deb))
    assert nxt.id != first.id


async def test_debounce_leading_waits_from_the_first_trigger(
    engine: Engine, clock: ManualClock
) -> None:
    env_id, _worker = await setup(engine)
    deb = Debounce("k", 5.0, mode="leading")
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", {"n": 1}, debounce=deb))
    clock.advance(4)
    await engine.enqueue.trigger(env_id, TriggerRequest("t", {"n": 2}, debounce=deb))
    clock.advance(1.5)
    await engine.maintenance.sweep()
    row = (await engine.runs.retrieve(env_id, run.id)).run
    assert row.status == RunStatus.QUEUED and row.payload == {"n": 2}


async def test_debounce_max_delay_bounds_a_long_burst(engine: Engine, clock: ManualClock) -> None:
    env_id, _worker = await setup(engine)
    deb = Debounce("k", 5.0, max_delay=8.0)
    start = clock.now()
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", debounce=deb))
    for _ in range(5):
        clock.advance(2)
        await engine.enqueue.trigger(env_id, TriggerRequest("t", debounce=deb))
    assert (await engine.runs.retrieve(env_id, run.id)).run.available_at == start + 8
    detail = await engine.runs.retrieve(env_id, run.id)
    assert (await engine.queues.explain(env_id, [detail.run]))[run.id].code == "DEBOUNCED"


def test_metadata_operations() -> None:
    doc = apply_operations(
        {"a": 1, "list": ["x"]},
        [
            {"type": "set", "key": "b", "value": {"deep": True}},
            {"type": "increment", "key": "a", "value": 2},
            {"type": "increment", "key": "fresh", "value": 1.5},
            {"type": "append", "key": "list", "value": "y"},
            {"type": "append", "key": "new", "value": 1},
            {"type": "remove", "key": "list", "value": "x"},
            {"type": "delete", "key": "b"},
            {"type": "update", "value": {"c": 3}},
        ],
    )
    assert doc == {"a": 3, "fresh": 1.5, "list": ["y"], "new": [1], "c": 3}
    with pytest.raises(UserError, match=r"operations\[0\]\.type"):
        apply_operations({}, [{"type": "explode"}])
    with pytest.raises(UserError, match="not a number"):
        apply_operations({"s": "x"}, [{"type": "increment", "key": "s", "value": 1}])


async def test_metadata_from_outside_and_from_an_attempt(engine: Engine) -> None:
    env_id, worker = await setup(engine)
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", metadata={"p": 0}))
    doc = await engine.metadata.update(
        env_id, run.id, operations=[{"type": "set", "key": "p", "value": 0.5}]
    )
    assert doc == {"p": 0.5}
    [claimed] = await engine.dequeue.claim(worker, 1)
    doc = await engine.metadata.update_from_attempt(
        env_id, claimed.claimed_attempt_id, [{"type": "increment", "key": "tokens", "value": 7}]
    )
    assert doc == {"p": 0.5, "tokens": 7}
    assert await engine.metadata.get(env_id, run.id) == doc
    # an attempt that has ended (here: its run was canceled) writes nothing more
    await engine.runs.cancel(env_id, run.id)
    with pytest.raises(StaleTransition):
        await engine.metadata.update_from_attempt(
            env_id, claimed.claimed_attempt_id, [{"type": "set", "key": "late", "value": 1}]
        )
    assert "late" not in (await engine.metadata.get(env_id, run.id) or {})
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    with pytest.raises(UserError, match="limit"):
        await engine.metadata.update(env_id, run.id, replace={"big": "x" * 300_000})


async def test_tags_are_added_up_to_ten(engine: Engine) -> None:
    env_id, _worker = await setup(engine)
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", tags=["a"]))
    assert await engine.runs.add_tags(env_id, run.id, ["b", "a"]) == ["a", "b"]
    with pytest.raises(UserError, match="at most 10"):
        await engine.runs.add_tags(env_id, run.id, [f"t{i}" for i in range(9)])
    assert (await engine.runs.retrieve(env_id, run.id)).tags == ["a", "b"]


async def test_batch_of_a_thousand_is_a_few_statements(engine: Engine) -> None:
    env_id, worker = await setup(engine, manifest("a"), manifest("b"))
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine.res.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        requests = [
            TriggerRequest("a" if i % 2 else "b", {"i": i}, tags=["bulk"]) for i in range(1000)
        ]
        result = await engine.enqueue.trigger_batch(env_id, requests)
    finally:
        event.remove(engine.res.db.engine.sync_engine, "before_cursor_execute", count)
    assert len(result.run_ids) == 1000 and len(set(result.run_ids)) == 1000
    assert len(statements) < 30, statements
    detail = await engine.batches.retrieve(env_id, result.id)
    assert detail.run_ids == result.run_ids and detail.status == "PROCESSING"
    assert detail.counts == {"QUEUED": 1000}
    # both tasks' runs are claimable, in fair order
    claimed = await engine.dequeue.claim(worker, 10)
    assert {r.task_identifier for r in claimed} == {"a", "b"}


async def test_batch_refuses_a_bad_item_naming_it_and_creates_the_others(
    engine: Engine, clock: ManualClock
) -> None:
    schema = {"type": "object", "required": ["email"]}
    env_id, worker = await setup(engine, manifest("t", payload_schema=schema))
    requests: list[BatchEntry] = [
        TriggerRequest("t", {"email": "x"}),
        TriggerRequest("t", {}),
        TriggerRequest("nope", {}),
    ]
    result = await engine.enqueue.trigger_batch(env_id, requests)
    assert len(result.run_ids) == 1
    assert [(e.index, e.code) for e in result.errors] == [
        (1, "PAYLOAD_INVALID"),
        (2, "TASK_NOT_FOUND"),
    ]
    assert "items[1].payload.email" in result.errors[0].message
    detail = await engine.batches.retrieve(env_id, result.id)
    assert detail.status == "PROCESSING" and len(detail.errors) == 2
    (claimed,) = await engine.dequeue.claim(worker, 5)
    await engine.attempts.start(claimed.id, claimed.claimed_attempt_id)
    await engine.attempts.succeed(claimed.id, claimed.claimed_attempt_id, None)
    assert (await engine.batches.retrieve(env_id, result.id)).status == "PARTIAL_FAILED"
    with pytest.raises(UserError, match="at most 1000"):
        await engine.enqueue.trigger_batch(env_id, [TriggerRequest("t", {"email": "x"})] * 1001)


async def test_batch_items_are_idempotent_and_streams_dedupe_by_index(engine: Engine) -> None:
    env_id, _worker = await setup(engine)
    single = await engine.enqueue.trigger(env_id, TriggerRequest("t", idempotency_key="k"))
    result = await engine.enqueue.trigger_batch(
        env_id, [TriggerRequest("t", idempotency_key="k"), TriggerRequest("t")]
    )
    assert result.run_ids[0] == single.id
    again = await engine.enqueue.trigger_batch(
        env_id, [TriggerRequest("t")], idempotency_key="batch-1"
    )
    cached = await engine.enqueue.trigger_batch(
        env_id, [TriggerRequest("t")], idempotency_key="batch-1"
    )
    assert cached.is_cached and cached.id == again.id and cached.run_ids == again.run_ids

    batch = await engine.enqueue.create_batch(env_id, 3)
    items = [(i, TriggerRequest("t", {"i": i})) for i in range(2)]
    assert await engine.enqueue.add_batch_items(env_id, batch.id, items) == (2, 0, False)
    assert (await engine.batches.retrieve(env_id, batch.id)).status == "PENDING"
    items.append((2, TriggerRequest("t", {"i": 2})))
    assert await engine.enqueue.add_batch_items(env_id, batch.id, items) == (1, 2, True)
    detail = await engine.batches.retrieve(env_id, batch.id)
    assert len(detail.run_ids) == 3 and detail.status == "PROCESSING"
    for run_id in detail.run_ids:
        await engine.runs.cancel(env_id, run_id)
    assert (await engine.batches.retrieve(env_id, batch.id)).status == "COMPLETED"
