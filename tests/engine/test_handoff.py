"""Hand-offs: a trigger gives its run straight to a worker's parked claim.

On PostgreSQL a plain trigger that finds a claim of its task parked on the
server stores the run already claimed for it, in one statement, when the claim
would have taken that run first anyway. The claim must come back with exactly
what a claim returns; a hand-off must never overtake an older queued run nor
pass a limit; and a run handed to a claim that stopped waiting goes back to
the queue. On SQLite no claim is parked for hand-offs: the same calls give the
same results through the claim.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import support
from tests.engine.test_runs_engine import setup
from tests.support import started_engine
from triggerfish._domain.filters import RunFilter
from triggerfish._domain.states import RunStatus
from triggerfish.engine import Engine
from triggerfish.engine.dequeue import WorkerIdentity
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.queues import QueueRef
from triggerfish.engine.resources import ManualClock
from triggerfish.store import runs as run_store

T = TypeVar("T")


@pytest.fixture
async def engine(db_url: str, clock: ManualClock) -> AsyncIterator[Engine]:
    """An engine whose parked claims wait for a wake-up, not a periodic re-check."""
    async with started_engine(db_url, clock, maintenance_interval=30) as eng:
        yield eng


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """For each trigger that tried a hand-off: the run handed over, or None if only queued."""
    outcomes: list[str | None] = []
    insert = run_store.insert_and_hand_off_alone

    async def spy(db: Any, new: Any, **kw: Any) -> tuple[float, Any]:
        order_key, claimed = await insert(db, new, **kw)
        outcomes.append(None if claimed is None else claimed.id)
        return order_key, claimed

    monkeypatch.setattr(run_store, "insert_and_hand_off_alone", spy)
    return outcomes


async def _parked_claim(
    engine: Engine, worker: WorkerIdentity, start: int = 1, **kw: Any
) -> asyncio.Task[list[Any]]:
    """A long-polling claim, once it waits (parked for hand-offs on PostgreSQL)."""
    before = engine.handoffs.parked_count(worker.environment_id)
    claims = support.claims_counted(engine)
    looked = claims.finished
    task = asyncio.create_task(engine.dequeue.claim_or_wait(worker, 4, 10, start=start, **kw))
    if engine.res.db.dialect == "postgresql":
        parked = before + 1
        await support.wait_for_async(
            lambda: engine.handoffs.parked_count(worker.environment_id) == parked, 5
        )
    else:  # SQLite has no hand-off: the claim waits for a wake-up once it has looked
        await support.wait_for_async(lambda: claims.finished > looked, 5)
    return task


def _postgresql(engine: Engine) -> bool:
    return engine.res.db.dialect == "postgresql"


async def _history(engine: Engine, env_id: str, run_id: str) -> list[tuple[Any, ...]]:
    events = await engine.runs.events(env_id, run_id)
    return [(e.from_status, e.to_status, e.attempt_id, e.reason) for e in events]


async def test_a_trigger_hands_its_run_to_the_parked_claim(
    engine: Engine, handed: list[str | None]
) -> None:
    env_id, worker = await setup(engine)
    await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))  # learns task and queue
    [warmup] = await engine.dequeue.claim(worker, 1)
    claim = await _parked_claim(engine, worker, start=1)

    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", {"n": 1}, tags=["x"]))
    [row] = await asyncio.wait_for(claim, 5)

    assert handed == ([run.id] if _postgresql(engine) else [])
    assert row.id == run.id and row.status == RunStatus.EXECUTING
    assert row.payload == {"n": 1} and row.attempt_count == 1 and row.worker_id == worker.id
    detail = await engine.runs.retrieve(env_id, run.id)
    assert detail.run.status == RunStatus.EXECUTING and detail.run.started_at is not None
    assert detail.tags == ["x"]
    assert [(a.id, a.status) for a in detail.attempts] == [(row.current_attempt_id, "EXECUTING")]
    attempt = row.current_attempt_id
    assert await _history(engine, env_id, run.id) == [
        (None, "QUEUED", None, "triggered"),
        ("QUEUED", "DEQUEUED", attempt, f"claimed by {worker.id}"),
        ("DEQUEUED", "EXECUTING", attempt, "attempt started"),
    ]
    # a handed-over run is an ordinary attempt from here on
    await engine.attempts.succeed(run.id, attempt, {"ok": True})
    assert (await engine.runs.retrieve(env_id, run.id)).run.status == RunStatus.COMPLETED
    # and it took its place in fair order after the run before it
    first = (await engine.runs.retrieve(env_id, warmup.id)).run
    assert first.order_key < detail.run.order_key


async def test_the_claim_has_its_run_before_the_trigger_answers(
    engine: Engine, handed: list[str | None]
) -> None:
    if not _postgresql(engine):
        pytest.skip("no claim is parked for hand-offs on SQLite (the claim is woken instead)")
    env_id, worker = await setup(engine)
    await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    await engine.dequeue.claim(worker, 1)
    claim = await _parked_claim(engine, worker)

    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))

    # the worker's answer went out first: the run, not the trigger's answer, is what
    # someone waits for
    assert claim.done() and [r.id for r in claim.result()] == [run.id] == handed


async def test_a_claim_without_a_free_slot_gets_its_run_dequeued(
    engine: Engine, handed: list[str | None]
) -> None:
    env_id, worker = await setup(engine)
    await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    await engine.dequeue.claim(worker, 1)
    claim = await _parked_claim(engine, worker, start=0)

    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    [row] = await asyncio.wait_for(claim, 5)

    assert handed == ([run.id] if _postgresql(engine) else [])
    assert row.status == RunStatus.DEQUEUED
    detail = await engine.runs.retrieve(env_id, run.id)
    assert detail.run.started_at is None
    assert [a.status for a in detail.attempts] == ["PENDING"]
    await engine.attempts.start(run.id, row.current_attempt_id)
    assert (await engine.runs.retrieve(env_id, run.id)).run.status == RunStatus.EXECUTING


async def test_a_hand_off_never_overtakes_an_older_queued_run(
    engine: Engine, handed: list[str | None]
) -> None:
    env_id, worker = await setup(engine)
    await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    await engine.dequeue.claim(worker, 1)
    claim = await _parked_claim(engine, worker)
    # a run queued without waking anyone (as by a server that sends no NOTIFY yet)
    older_request = TriggerRequest("t", {}, idempotency_key="k")
    older = await _silently(engine, engine.enqueue.trigger(env_id, older_request))

    newer = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    rows = await asyncio.wait_for(claim, 5)

    assert handed == ([None] if _postgresql(engine) else [])
    assert [r.id for r in rows] == [older.id, newer.id]  # woken, it claims in fair order
    assert [r.status for r in rows] == ["EXECUTING", "DEQUEUED"]


@pytest.mark.parametrize("constraint", ["limit", "pause", "environment"])
async def test_a_hand_off_never_passes_a_limit(
    engine: Engine, handed: list[str | None], constraint: str
) -> None:
    env_id, worker = await setup(engine)
    await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    [held] = await engine.dequeue.claim(worker, 1, start=1)  # holds the queue's one slot
    claim = await _parked_claim(engine, worker)
    # set after the claim parked (as by another server): the trigger's statement sees it
    queue = QueueRef("task", "t")
    if constraint == "limit":
        await engine.queues.override_limit(env_id, queue, 1)
    elif constraint == "pause":
        await engine.queues.pause(env_id, queue)
    else:
        await engine.queues.set_environment_limit(env_id, 1)

    looked = support.claims_counted(engine).finished
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    # the woken claim looks again, and must find nothing it may take
    await support.wait_for_async(lambda: support.claims_counted(engine).finished > looked, 5)
    assert not claim.done()
    assert handed == ([None] if _postgresql(engine) else [])
    assert (await engine.runs.retrieve(env_id, run.id)).run.status == RunStatus.QUEUED

    await engine.attempts.succeed(held.id, held.claimed_attempt_id, {})
    if constraint == "pause":
        await engine.queues.resume(env_id, queue)
    await engine.res.notifier.notify(env_id)
    [row] = await asyncio.wait_for(claim, 5)
    assert row.id == run.id


async def test_a_run_handed_to_a_claim_that_left_goes_back_to_the_queue(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_id, worker = await setup(engine)
    if not _postgresql(engine):
        pytest.skip("no claim is parked for hand-offs on SQLite (the claim is woken instead)")
    await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    await engine.dequeue.claim(worker, 1)
    claim = await _parked_claim(engine, worker)
    insert = run_store.insert_and_hand_off_alone

    async def caller_hangs_up_meanwhile(*args: Any, **kw: Any) -> tuple[float, Any]:
        claim.cancel()  # the worker's connection closes while the run is being stored
        return await insert(*args, **kw)

    monkeypatch.setattr(run_store, "insert_and_hand_off_alone", caller_hangs_up_meanwhile)
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    with pytest.raises(asyncio.CancelledError):
        await claim

    detail = await engine.runs.retrieve(env_id, run.id)
    assert detail.run.status == RunStatus.QUEUED and detail.run.worker_id is None
    events = await _history(engine, env_id, run.id)
    assert events[-1][:2] == ("EXECUTING", "QUEUED")
    assert events[-1][3] == "handed to a claim that had stopped waiting"
    # nothing was lost: the next claim takes it, and no retry was spent
    [row] = await engine.dequeue.claim(worker, 1, start=1)
    assert row.id == run.id and row.attempt_count == 2
    assert engine.handoffs.parked_count(env_id) == 0


async def test_a_run_handed_to_a_worker_that_hung_up_goes_back_to_the_queue(
    engine: Engine, handed: list[str | None]
) -> None:
    env_id, worker = await setup(engine)
    await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    await engine.dequeue.claim(worker, 1)
    hung_up = False

    async def gone() -> bool:
        return hung_up

    claim = await _parked_claim(engine, worker, gone=gone)
    hung_up = True
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    assert await asyncio.wait_for(claim, 5) == []
    assert (await engine.runs.retrieve(env_id, run.id)).run.status == RunStatus.QUEUED
    assert handed == ([run.id] if _postgresql(engine) else [])


async def test_a_hand_off_goes_only_to_a_claim_of_the_task(
    engine: Engine, handed: list[str | None]
) -> None:
    env_id, worker = await setup(engine)
    other = await engine.workers.register(
        env_id,
        version="v1",
        name="o",
        concurrency=1,
        tasks=[{"id": "other", "queue": {"name": "task/other"}}],
    )
    await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    await engine.dequeue.claim(worker, 1)
    elsewhere = await _parked_claim(engine, other)

    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))

    assert handed == []  # no claim of task "t" was parked
    assert not elsewhere.done()
    [row] = await engine.dequeue.claim(worker, 1)
    assert row.id == run.id
    elsewhere.cancel()
    await asyncio.gather(elsewhere, return_exceptions=True)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(
        st.sampled_from(["park", "trigger", "quiet", "limit", "unlimit", "finish"]),
        min_size=1,
        max_size=14,
    )
)
async def test_claims_and_hand_offs_take_every_run_once_in_fair_order(
    engine: Engine, steps: list[str]
) -> None:
    """Whatever mix of parked claims, triggers (woken or not), limits and finished
    runs: every run is claimed at most once, a queue's limit holds, and every claim
    takes the oldest runs it may take."""
    env = await engine.environments.by_slug("dev")
    worker = await engine.workers.register(
        env.id,
        version="v1",
        name="w",
        concurrency=4,
        tasks=[{"id": "t", "queue": {"name": "task/t"}}],
    )
    env_id, queue = env.id, QueueRef("task", "t")
    await engine.queues.reset_limit(env_id, queue)
    await _drain(engine, env_id, worker)
    await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))  # learn the task and queue
    claims: list[asyncio.Task[list[Any]]] = []
    running: list[Any] = []
    limit: int | None = None
    seen: set[str] = set()
    stopping = _Flag()
    for step in steps:
        if step == "park":  # it claims at once, parks, or (limited) waits for a wake-up
            claim = engine.dequeue.claim_or_wait(worker, 4, 10, start=1, gone=stopping.is_set)
            claims.append(asyncio.create_task(claim))
        elif step == "trigger":
            await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
        elif step == "quiet":  # queued without waking anyone, and not by the plain path
            keyed = TriggerRequest("t", {}, idempotency_key=uuid.uuid4().hex)
            await _silently(engine, engine.enqueue.trigger(env_id, keyed))
        elif step == "limit":
            limit = max(1, len(running))
            await engine.queues.override_limit(env_id, queue, limit)
        elif step == "unlimit":
            limit = None
            await engine.queues.reset_limit(env_id, queue)
            await engine.res.notifier.notify(env_id)
        elif running:
            row = running.pop(0)
            if row.status == RunStatus.DEQUEUED:
                await engine.attempts.start(row.id, row.current_attempt_id)
            await engine.attempts.succeed(row.id, row.current_attempt_id, {})
            await engine.res.notifier.notify(env_id)
        await asyncio.sleep(0.01)  # let claims look or park: any interleaving must hold
        for task in [c for c in claims if c.done()]:
            claims.remove(task)
            rows = task.result()
            await _check_fair(engine, env_id, rows)
            for row in rows:
                assert row.id not in seen, "a run was claimed twice"
                seen.add(row.id)
            running.extend(rows)
        if limit is not None:
            active = await _active(engine, env_id)
            assert active <= max(limit, len(running)), "a hand-off passed the queue's limit"
    # the claims still waiting end the way a stopping worker's do: woken, they see
    # their caller gone (cancelling one inside its transaction could leave SQLite's
    # write lock to the next example)
    stopping.set()
    await engine.res.notifier.notify(env_id)
    await asyncio.wait_for(asyncio.gather(*claims), 10)
    await _drain(engine, env_id, worker)


class _Flag:
    """A caller's "have I gone?" answer for ``claim_or_wait``."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    async def is_set(self) -> bool:
        return self._set


async def _silently(engine: Engine, call: Awaitable[T]) -> T:
    """Await ``call`` with wake-ups suppressed."""
    notifier = engine.res.notifier
    notify = notifier.notify

    async def nothing(env_id: str) -> None:
        return None

    notifier.notify = nothing  # type: ignore[method-assign]
    try:
        return await call
    finally:
        notifier.notify = notify  # type: ignore[method-assign]


async def _runs(engine: Engine, env_id: str, *statuses: str) -> list[Any]:
    rows, _, _ = await engine.runs.page(
        env_id, RunFilter(statuses=statuses), size=100, after=None, before=None
    )
    return rows


async def _check_fair(engine: Engine, env_id: str, rows: list[Any]) -> None:
    """No run still queued sorts before a run this claim took."""
    if not rows:
        return
    latest = max(r.order_key for r in rows)
    waiting = await _runs(engine, env_id, "QUEUED")
    assert all(w.order_key > latest for w in waiting), "a claim overtook an older queued run"


async def _active(engine: Engine, env_id: str) -> int:
    return len(await _runs(engine, env_id, "DEQUEUED", "EXECUTING"))


async def _drain(engine: Engine, env_id: str, worker: WorkerIdentity) -> None:
    """Finish everything (hypothesis reuses the engine between examples)."""
    for row in await engine.dequeue.claim(worker, 100, start=100):
        await engine.attempts.succeed(row.id, row.claimed_attempt_id, {})
    for run in await _runs(engine, env_id, "DEQUEUED", "EXECUTING"):
        if run.status == RunStatus.DEQUEUED:
            await engine.attempts.start(run.id, run.current_attempt_id)
        await engine.attempts.succeed(run.id, run.current_attempt_id, {})
