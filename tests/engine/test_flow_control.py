"""Queues, per-key concurrency, the environment limit, rate limits, pause, fair
dequeue and the reasons a waiting run gives, on the real store (both backends)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests import support
from tests.engine.test_report_batches import BOOM
from tests.engine.test_runs_engine import NO_DELAY, manifest, setup
from triggerfish._domain.states import RunStatus
from triggerfish.engine import Engine
from triggerfish.engine.attempts import Report
from triggerfish.engine.dequeue import WorkerIdentity
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.queues import QueueRef
from triggerfish.engine.resources import ManualClock
from triggerfish.engine.waitpoints import WaitSpec


def shared(task_id: str, name: str = "emails", **queue: Any) -> dict[str, Any]:
    m = manifest(task_id)
    m["queue"] = {"name": name, **queue}
    return m


async def finish(engine: Engine, rows: list[Any]) -> None:
    for row in rows:
        await engine.attempts.start(row.id, row.current_attempt_id)
        await engine.attempts.succeed(row.id, row.current_attempt_id, None)


async def reason(engine: Engine, env_id: str, run_id: str) -> str:
    detail = await engine.runs.retrieve(env_id, run_id)
    return (await engine.queues.explain(env_id, [detail.run]))[run_id].code


async def test_a_queue_limit_is_shared_by_its_tasks(engine: Engine) -> None:
    env_id, worker = await setup(
        engine, shared("a", concurrency_limit=2), shared("b", concurrency_limit=2)
    )
    ids = [(await engine.enqueue.trigger(env_id, TriggerRequest(t))).id for t in "abab"]
    claimed = await engine.dequeue.claim(worker, 10)
    assert len(claimed) == 2
    waiting = [i for i in ids if i not in {r.id for r in claimed}]
    assert await reason(engine, env_id, waiting[0]) == "QUEUE_LIMIT"
    await finish(engine, claimed[:1])
    assert len(await engine.dequeue.claim(worker, 10)) == 1


async def test_paused_queue_accepts_runs_and_starts_none(engine: Engine) -> None:
    env_id, worker = await setup(engine)
    await engine.queues.pause(env_id, QueueRef("task", "t"))
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    assert await engine.dequeue.claim(worker, 5) == []
    assert await reason(engine, env_id, run.id) == "QUEUE_PAUSED"
    info = await engine.queues.retrieve(env_id, QueueRef("task", "t"))
    assert info.queue.paused and info.queued == 1 and info.running == 0
    await engine.queues.resume(env_id, QueueRef("custom", "task/t"))
    [claimed] = await engine.dequeue.claim(worker, 5)
    assert claimed.id == run.id


async def test_limit_override_wins_until_reset(engine: Engine) -> None:
    env_id, worker = await setup(engine, manifest("t", limit=1))
    for _ in range(4):
        await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    ref = QueueRef("task", "t")
    info = await engine.queues.override_limit(env_id, ref, 3)
    assert info.limit == 3 and info.queue.concurrency_limit == 1
    assert len(await engine.dequeue.claim(worker, 10)) == 3
    # a worker registering again with the declared limit leaves the override alone
    await engine.workers.register(
        env_id, version="v1", name="again", concurrency=1, tasks=[manifest("t", limit=1)]
    )
    assert (await engine.queues.retrieve(env_id, ref)).limit == 3
    info = await engine.queues.reset_limit(env_id, ref)
    assert info.limit == 1 and info.running == 3
    assert await engine.dequeue.claim(worker, 10) == []


async def test_each_concurrency_key_gets_its_own_slots(engine: Engine) -> None:
    env_id, worker = await setup(engine, shared("t", concurrency_limit=3, concurrency_key_limit=1))
    a = [
        (await engine.enqueue.trigger(env_id, TriggerRequest("t", concurrency_key="A"))).id
        for _ in range(5)
    ]
    b = (await engine.enqueue.trigger(env_id, TriggerRequest("t", concurrency_key="B"))).id
    claimed = await engine.dequeue.claim(worker, 10)
    assert sorted(r.concurrency_key or "" for r in claimed) == ["A", "B"]
    assert b in {r.id for r in claimed}
    assert await reason(engine, env_id, a[1]) == "CONCURRENCY_KEY_LIMIT"


async def test_keys_share_the_queue_limit(engine: Engine) -> None:
    env_id, worker = await setup(engine, shared("t", concurrency_limit=2, concurrency_key_limit=2))
    for key in ["A", "A", "B", "B", "C"]:
        await engine.enqueue.trigger(env_id, TriggerRequest("t", concurrency_key=key))
    assert len(await engine.dequeue.claim(worker, 10)) == 2
    assert await engine.dequeue.claim(worker, 10) == []


async def test_environment_limit_caps_every_queue(engine: Engine) -> None:
    env_id, worker = await setup(engine, manifest("a"), manifest("b"))
    await engine.queues.set_environment_limit(env_id, 3)
    ids = [(await engine.enqueue.trigger(env_id, TriggerRequest(t))).id for t in "ababab"]
    assert len(await engine.dequeue.claim(worker, 10)) == 3
    waiting = [i for i in ids if await reason_or_none(engine, env_id, i)]
    assert len(waiting) == 3
    assert await reason(engine, env_id, waiting[0]) == "ENVIRONMENT_LIMIT"
    assert (await engine.queues.environment_limit(env_id)) == (3, 3)
    await engine.queues.set_environment_limit(env_id, None)
    assert len(await engine.dequeue.claim(worker, 10)) == 3


async def reason_or_none(engine: Engine, env_id: str, run_id: str) -> str | None:
    detail = await engine.runs.retrieve(env_id, run_id)
    found = await engine.queues.explain(env_id, [detail.run])
    return found[run_id].code if run_id in found else None


async def test_rate_limit_holds_starts_until_the_window_moves(
    engine: Engine, clock: ManualClock
) -> None:
    env_id, worker = await setup(engine, shared("t", name="llm", rate_limit=[2, 60.0]))
    ids = [(await engine.enqueue.trigger(env_id, TriggerRequest("t"))).id for _ in range(5)]
    first = await engine.dequeue.claim(worker, 10)
    assert len(first) == 2
    await finish(engine, first)  # finishing frees no rate budget
    assert await engine.dequeue.claim(worker, 10) == []
    detail = await engine.runs.retrieve(env_id, ids[2])
    why = (await engine.queues.explain(env_id, [detail.run]))[ids[2]]
    assert why.code == "RATE_LIMITED" and why.until == clock.now() + 60
    clock.advance(30)
    assert await engine.dequeue.claim(worker, 10) == []
    clock.advance(31)
    assert len(await engine.dequeue.claim(worker, 10)) == 2
    assert await engine.dequeue.claim(worker, 10) == []
    await engine.maintenance.sweep()  # old window records are dropped, new ones kept
    assert await engine.dequeue.claim(worker, 10) == []


async def test_rate_limit_set_at_run_time(engine: Engine, clock: ManualClock) -> None:
    env_id, worker = await setup(engine)
    await engine.queues.set_rate_limit(env_id, QueueRef("task", "t"), 1, 10.0)
    for _ in range(3):
        await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    assert len(await engine.dequeue.claim(worker, 10)) == 1
    assert await engine.dequeue.claim(worker, 10) == []
    await engine.queues.set_rate_limit(env_id, QueueRef("task", "t"), None, None)
    assert len(await engine.dequeue.claim(worker, 10)) == 2


async def drain_one_at_a_time(
    engine: Engine, worker: WorkerIdentity, until: set[str], most: int
) -> int:
    """Claim and finish one run at a time until every run in ``until`` finished."""
    left = set(until)
    for n in range(1, most + 1):
        rows = await engine.dequeue.claim(worker, 1)
        assert rows, "nothing claimable while runs wait"
        await finish(engine, rows)
        left.discard(rows[0].id)
        if not left:
            return n
    raise AssertionError(f"{len(left)} run(s) still waiting after {most} claims")


async def test_a_late_key_is_not_starved_by_a_backlog(engine: Engine, clock: ManualClock) -> None:
    env_id, worker = await setup(engine, shared("t", concurrency_limit=2))
    for _ in range(1000):
        await engine.enqueue.trigger(env_id, TriggerRequest("t", concurrency_key="A"))
    clock.advance(1)
    b = {
        (await engine.enqueue.trigger(env_id, TriggerRequest("t", concurrency_key="B"))).id
        for _ in range(10)
    }
    # B's ten runs finish within ~2x ten claims, while A still has ~980 waiting
    assert await drain_one_at_a_time(engine, worker, b, most=25) <= 25


async def test_a_key_arriving_mid_drain_interleaves(engine: Engine, clock: ManualClock) -> None:
    env_id, worker = await setup(engine, shared("t", concurrency_limit=1))
    for _ in range(200):
        await engine.enqueue.trigger(env_id, TriggerRequest("t", concurrency_key="A"))
    for _ in range(50):
        await finish(engine, await engine.dequeue.claim(worker, 1))
        clock.advance(10)  # A is served much slower than it was triggered
    b = {
        (await engine.enqueue.trigger(env_id, TriggerRequest("t", concurrency_key="B"))).id
        for _ in range(5)
    }
    assert await drain_one_at_a_time(engine, worker, b, most=12) <= 12


async def test_queues_are_served_fairly(engine: Engine, clock: ManualClock) -> None:
    env_id, worker = await setup(engine, manifest("x"), manifest("y"))
    for _ in range(300):
        await engine.enqueue.trigger(env_id, TriggerRequest("x"))
    clock.advance(5)
    y = {(await engine.enqueue.trigger(env_id, TriggerRequest("y"))).id for _ in range(5)}
    assert await drain_one_at_a_time(engine, worker, y, most=12) <= 12


async def test_a_blocked_key_backlog_does_not_hide_other_keys(engine: Engine) -> None:
    env_id, worker = await setup(engine, shared("t", concurrency_limit=10, concurrency_key_limit=1))
    for _ in range(100):
        await engine.enqueue.trigger(env_id, TriggerRequest("t", concurrency_key="A"))
    b = (await engine.enqueue.trigger(env_id, TriggerRequest("t", concurrency_key="B"))).id
    first = await engine.dequeue.claim(worker, 1)
    assert first[0].concurrency_key == "A"
    # A holds its one slot; the next claims must find B behind A's backlog
    [second] = await engine.dequeue.claim(worker, 1)
    assert second.id == b


async def test_waiting_reasons(engine: Engine, clock: ManualClock) -> None:
    env_id, _worker = await setup(engine, manifest("t"))
    delayed = await engine.enqueue.trigger(
        env_id, TriggerRequest("t", delay_until=clock.now() + 3600)
    )
    assert await reason(engine, env_id, delayed.id) == "DELAYED"
    queued = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    assert await reason(engine, env_id, queued.id) == "WAITING_FOR_SLOT"
    clock.advance(engine.res.settings.heartbeat_timeout + 1)  # the worker looks gone
    assert await reason(engine, env_id, queued.id) == "WAITING_FOR_WORKER"
    doctor = await engine.queues.doctor(env_id)
    assert doctor["oldestQueuedRun"]["id"] == queued.id
    assert doctor["oldestQueuedRun"]["reason"]["code"] == "WAITING_FOR_WORKER"
    assert doctor["waiting"] == {"QUEUED": 1, "DELAYED": 1}
    assert [q["name"] for q in doctor["queues"]] == ["task/t"]
    assert doctor["workers"] == []
    assert RunStatus.QUEUED  # statuses stay the public names


async def test_a_trigger_may_choose_another_queue(engine: Engine) -> None:
    env_id, worker = await setup(engine)
    for _ in range(3):
        await engine.enqueue.trigger(env_id, TriggerRequest("t", queue="bulk"))
    await engine.queues.override_limit(env_id, QueueRef("custom", "bulk"), 1)
    [claimed] = await engine.dequeue.claim(worker, 10)
    assert claimed.queue_name == "bulk"
    assert await engine.dequeue.claim(worker, 10) == []
    own = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    [claimed] = await engine.dequeue.claim(worker, 10)
    assert claimed.id == own.id and claimed.queue_name == "task/t"


async def _free_the_slot(engine: Engine, env_id: str, row: Any, how: str) -> None:
    """End the claimed ``row``'s hold on its slot the way a worker or a user would."""
    attempt = row.claimed_attempt_id
    if how == "complete":
        await engine.attempts.report_many([], [Report(row.id, attempt, "done")], env_id)
    elif how == "fail":  # its last attempt: the run fails for good
        await engine.attempts.report_many([], [Report(row.id, attempt, None, BOOM)], env_id)
    elif how == "cancel":
        await engine.runs.cancel(env_id, row.id)
    else:  # the run waits (an hour): a waiting run holds no slot
        spec = WaitSpec("duration", due_at=engine.res.clock.now() + 3600)
        answer = await engine.waitpoints.wait_from_task(
            env_id, row.id, attempt, seq=0, kind="wait.for", name="hour", spec=spec
        )
        assert answer["status"] == "suspended"


@pytest.mark.parametrize("how", ["complete", "fail", "cancel", "suspend"])
async def test_a_claim_parked_behind_a_limit_takes_the_next_run_as_its_slot_frees(
    db_url: str, clock: ManualClock, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A serial queue does not stall between runs: a worker's claim waiting on a
    full queue is woken by the run that frees the slot, not by its periodic
    re-check (a minute here; a second by default, which capped a queue with a
    limit of one at about a run a second)."""
    async with support.started_engine(db_url, clock, maintenance_interval=60) as engine:
        serial = shared("t", concurrency_limit=1)
        serial["retry"] = {**NO_DELAY, "max_attempts": 1}
        env_id, worker = await setup(engine, serial)
        first, second = [
            (await engine.enqueue.trigger(env_id, TriggerRequest("t"))).id for _ in "12"
        ]
        [held] = await engine.dequeue.claim(worker, 4)
        assert held.id == first
        await engine.attempts.start(held.id, held.claimed_attempt_id)

        parked = asyncio.Event()
        wait = engine.res.notifier.wait

        async def waiting(event: asyncio.Event, timeout: float) -> bool:
            parked.set()  # the claim looked, found the queue full, and waits
            return await wait(event, timeout)

        monkeypatch.setattr(engine.res.notifier, "wait", waiting)
        claim = asyncio.create_task(engine.dequeue.claim_or_wait(worker, 4, 30))
        await asyncio.wait_for(parked.wait(), 10)
        assert not claim.done()
        await _free_the_slot(engine, env_id, held, how)
        [taken] = await asyncio.wait_for(claim, 5)
        assert taken.id == second
