"""Engine behaviour on the real store (SQLite and PostgreSQL), driven directly."""

from __future__ import annotations

from typing import Any

import pytest

from triggerfish._domain.states import RunStatus
from triggerfish.engine import Engine
from triggerfish.engine.attempts import Failure
from triggerfish.engine.dequeue import WorkerIdentity
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.resources import ManualClock
from triggerfish.errors import (
    PayloadTooLarge,
    PayloadValidationError,
    StaleTransition,
    TaskNotFound,
)

NO_DELAY = {"max_attempts": 3, "factor": 1, "min_delay": 0, "max_delay": 0, "jitter": 0}


def manifest(task_id: str = "t", *, limit: int | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": task_id,
        "retry": extra.pop("retry", NO_DELAY),
        "machine": "small-1x",
        "queue": {"name": extra.pop("queue", f"task/{task_id}"), "concurrency_limit": limit},
        "payload_schema": extra.pop("payload_schema", None),
        "max_duration": None,
    }


async def setup(engine: Engine, *manifests: dict[str, Any]) -> tuple[str, WorkerIdentity]:
    env = await engine.environments.by_slug("dev")
    worker = await engine.workers.register(
        env.id, version="v1", name="w", concurrency=4, tasks=list(manifests) or [manifest()]
    )
    return env.id, worker


async def status(engine: Engine, env_id: str, run_id: str) -> RunStatus:
    return RunStatus((await engine.runs.retrieve(env_id, run_id)).run.status)


async def test_trigger_claim_start_complete(engine: Engine) -> None:
    env_id, worker = await setup(engine)
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", {"n": 1}, tags=["b", "a"]))
    [claimed] = await engine.dequeue.claim(worker, 10)
    assert claimed.id == run.id and claimed.status == RunStatus.DEQUEUED
    await engine.attempts.start(run.id, claimed.claimed_attempt_id)
    await engine.attempts.succeed(run.id, claimed.claimed_attempt_id, {"ok": 1})
    detail = await engine.runs.retrieve(env_id, run.id)
    assert detail.run.status == RunStatus.COMPLETED
    assert detail.run.output == {"ok": 1}
    assert detail.tags == ["a", "b"]
    assert [a.status for a in detail.attempts] == ["COMPLETED"]
    history = [(e.from_status, e.to_status) for e in await engine.runs.events(env_id, run.id)]
    assert history == [
        (None, "QUEUED"),
        ("QUEUED", "DEQUEUED"),
        ("DEQUEUED", "EXECUTING"),
        ("EXECUTING", "COMPLETED"),
    ]


async def test_duplicate_completion_is_refused(engine: Engine) -> None:
    env_id, worker = await setup(engine)
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    [claimed] = await engine.dequeue.claim(worker, 1)
    await engine.attempts.start(run.id, claimed.claimed_attempt_id)
    await engine.attempts.succeed(run.id, claimed.claimed_attempt_id, 1)
    with pytest.raises(StaleTransition):
        await engine.attempts.succeed(run.id, claimed.claimed_attempt_id, 2)
    assert (await engine.runs.retrieve(env_id, run.id)).run.output == 1


async def test_late_completion_after_reclaim_is_refused(engine: Engine, clock: ManualClock) -> None:
    env_id, worker = await setup(engine)
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    [first] = await engine.dequeue.claim(worker, 1)
    await engine.attempts.start(run.id, first.claimed_attempt_id)
    clock.advance(31)  # past the heartbeat timeout
    assert (await engine.maintenance.sweep())["reclaimed"] == 1
    assert await status(engine, env_id, run.id) is RunStatus.QUEUED
    [second] = await engine.dequeue.claim(worker, 1)
    assert second.attempt_count == 2
    with pytest.raises(StaleTransition):
        await engine.attempts.succeed(run.id, first.claimed_attempt_id, "late")
    await engine.attempts.start(run.id, second.claimed_attempt_id)
    await engine.attempts.succeed(run.id, second.claimed_attempt_id, "fresh")
    assert (await engine.runs.retrieve(env_id, run.id)).run.output == "fresh"


async def test_heartbeats_keep_a_run_alive(engine: Engine, clock: ManualClock) -> None:
    env_id, worker = await setup(engine)
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    [claimed] = await engine.dequeue.claim(worker, 1)
    await engine.attempts.start(run.id, claimed.claimed_attempt_id)
    for _ in range(5):
        clock.advance(20)
        assert await engine.attempts.heartbeat(worker.id, [claimed.claimed_attempt_id]) == []
        assert (await engine.maintenance.sweep())["reclaimed"] == 0
    assert await status(engine, env_id, run.id) is RunStatus.EXECUTING


async def test_lost_worker_without_attempts_left_crashes_the_run(
    engine: Engine, clock: ManualClock
) -> None:
    env_id, worker = await setup(engine, manifest(retry={**NO_DELAY, "max_attempts": 1}))
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    [claimed] = await engine.dequeue.claim(worker, 1)
    await engine.attempts.start(run.id, claimed.claimed_attempt_id)
    clock.advance(31)
    await engine.maintenance.sweep()
    detail = await engine.runs.retrieve(env_id, run.id)
    assert detail.run.status == RunStatus.CRASHED
    assert detail.run.error is not None and "heartbeats" in detail.run.error["message"]


async def test_claimed_but_never_started_run_is_released_without_spending_a_retry(
    engine: Engine, clock: ManualClock
) -> None:
    env_id, worker = await setup(engine, manifest(retry={**NO_DELAY, "max_attempts": 1}))
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    await engine.dequeue.claim(worker, 1)
    clock.advance(31)
    await engine.maintenance.sweep()
    detail = await engine.runs.retrieve(env_id, run.id)
    assert detail.run.status == RunStatus.QUEUED and detail.run.failure_count == 0


async def test_retry_with_backoff_then_final_failure(engine: Engine, clock: ManualClock) -> None:
    policy = {"max_attempts": 2, "factor": 2, "min_delay": 10, "max_delay": 60, "jitter": 0}
    env_id, worker = await setup(engine, manifest(retry=policy))
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    [a1] = await engine.dequeue.claim(worker, 1)
    await engine.attempts.start(run.id, a1.claimed_attempt_id)
    outcome = await engine.attempts.fail(
        run.id, a1.claimed_attempt_id, Failure("USER", {"name": "E", "message": "boom"})
    )
    assert outcome.status is RunStatus.QUEUED
    assert outcome.retry_at == pytest.approx(clock.now() + 10)
    assert await engine.dequeue.claim(worker, 1) == []  # backoff not over
    clock.advance(10)
    [a2] = await engine.dequeue.claim(worker, 1)
    await engine.attempts.start(run.id, a2.claimed_attempt_id)
    outcome = await engine.attempts.fail(
        run.id, a2.claimed_attempt_id, Failure("USER", {"name": "E", "message": "again"})
    )
    assert outcome.status is RunStatus.FAILED
    detail = await engine.runs.retrieve(env_id, run.id)
    assert detail.run.error is not None and detail.run.error["message"] == "again"
    assert [a.status for a in detail.attempts] == ["FAILED", "FAILED"]


@pytest.mark.parametrize(
    ("kind", "final"),
    [("ABORT", RunStatus.FAILED), ("TIMEOUT", RunStatus.TIMED_OUT)],
)
async def test_failures_that_are_never_retried(engine: Engine, kind: str, final: RunStatus) -> None:
    env_id, worker = await setup(engine)
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    [a] = await engine.dequeue.claim(worker, 1)
    await engine.attempts.start(run.id, a.claimed_attempt_id)
    outcome = await engine.attempts.fail(run.id, a.current_attempt_id, Failure(kind, {}))  # type: ignore[arg-type]
    assert outcome.status is final


async def test_catch_error_decision_fail_skips_retries(engine: Engine) -> None:
    env_id, worker = await setup(engine)
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    [a] = await engine.dequeue.claim(worker, 1)
    await engine.attempts.start(run.id, a.claimed_attempt_id)
    outcome = await engine.attempts.fail(
        run.id, a.claimed_attempt_id, Failure("USER", {}, decision={"action": "fail"})
    )
    assert outcome.status is RunStatus.FAILED


async def test_trigger_override_of_max_attempts(engine: Engine) -> None:
    env_id, worker = await setup(engine)
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", max_attempts=1))
    [a] = await engine.dequeue.claim(worker, 1)
    await engine.attempts.start(run.id, a.claimed_attempt_id)
    outcome = await engine.attempts.fail(run.id, a.claimed_attempt_id, Failure("USER", {}))
    assert outcome.status is RunStatus.FAILED


async def test_queue_concurrency_limit_holds_at_claim(engine: Engine) -> None:
    env_id, worker = await setup(engine, manifest("a", limit=2), manifest("b"))
    for _ in range(5):
        await engine.enqueue.trigger(env_id, TriggerRequest("a"))
    await engine.enqueue.trigger(env_id, TriggerRequest("b"))
    claimed = await engine.dequeue.claim(worker, 10)
    assert sorted(r.task_identifier for r in claimed) == ["a", "a", "b"]
    assert await engine.dequeue.claim(worker, 10) == []


async def test_priority_is_a_head_start(engine: Engine, clock: ManualClock) -> None:
    env_id, worker = await setup(engine)
    first = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    clock.advance(5)
    urgent = await engine.enqueue.trigger(env_id, TriggerRequest("t", priority=10))
    [claimed] = await engine.dequeue.claim(worker, 1)
    assert claimed.id == urgent.id
    [claimed] = await engine.dequeue.claim(worker, 1)
    assert claimed.id == first.id


async def test_claims_only_tasks_the_worker_has(engine: Engine) -> None:
    env_id, worker = await setup(engine, manifest("a"))
    env = await engine.environments.by_slug("dev")
    await engine.workers.register(
        env.id, version="v1", name="o", concurrency=1, tasks=[manifest("other")]
    )
    await engine.enqueue.trigger(env_id, TriggerRequest("other"))
    assert await engine.dequeue.claim(worker, 5) == []


async def test_cancel_queued_run_never_starts(engine: Engine) -> None:
    env_id, worker = await setup(engine)
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    await engine.runs.cancel(env_id, run.id)
    assert await engine.dequeue.claim(worker, 5) == []
    assert await status(engine, env_id, run.id) is RunStatus.CANCELED


async def test_cancel_executing_run_tells_its_worker_to_stop(engine: Engine) -> None:
    env_id, worker = await setup(engine)
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    [a] = await engine.dequeue.claim(worker, 1)
    await engine.attempts.start(run.id, a.claimed_attempt_id)
    await engine.runs.cancel(env_id, run.id)
    assert await engine.attempts.heartbeat(worker.id, [a.claimed_attempt_id]) == [
        a.current_attempt_id
    ]
    with pytest.raises(StaleTransition):
        await engine.attempts.succeed(run.id, a.claimed_attempt_id, "too late")


async def test_idempotency_key_returns_the_existing_run(engine: Engine, clock: ManualClock) -> None:
    env_id, _ = await setup(engine)
    first = await engine.enqueue.trigger(
        env_id, TriggerRequest("t", idempotency_key="k", idempotency_key_ttl=60)
    )
    again = await engine.enqueue.trigger(env_id, TriggerRequest("t", {"x": 2}, idempotency_key="k"))
    assert again.id == first.id and again.is_cached
    clock.advance(61)
    fresh = await engine.enqueue.trigger(env_id, TriggerRequest("t", idempotency_key="k"))
    assert fresh.id != first.id and not fresh.is_cached


async def test_unknown_task_names_the_known_ones(engine: Engine) -> None:
    env_id, _ = await setup(engine)
    with pytest.raises(TaskNotFound, match="'t'"):
        await engine.enqueue.trigger(env_id, TriggerRequest("nope"))


async def test_payload_schema_is_enforced_naming_the_field(engine: Engine) -> None:
    schema = {
        "type": "object",
        "properties": {"email": {"type": "string"}, "plan": {"type": "integer"}},
        "required": ["email", "plan"],
    }
    env_id, _ = await setup(engine, manifest(payload_schema=schema))
    with pytest.raises(PayloadValidationError) as missing:
        await engine.enqueue.trigger(env_id, TriggerRequest("t", {"email": "a@b"}))
    assert missing.value.field == "payload.plan"
    with pytest.raises(PayloadValidationError) as wrong:
        await engine.enqueue.trigger(env_id, TriggerRequest("t", {"email": "a@b", "plan": "x"}))
    assert wrong.value.field == "payload.plan"
    page, _, _ = await engine.runs.page(env_id, _no_filter(), size=10, after=None, before=None)
    assert page == []


async def test_oversize_payload_is_refused(engine: Engine) -> None:
    env_id, _ = await setup(engine)
    big = "x" * (engine.res.settings.max_payload_bytes + 1)
    with pytest.raises(PayloadTooLarge, match="limit"):
        await engine.enqueue.trigger(env_id, TriggerRequest("t", big))


async def test_delay_and_ttl(engine: Engine, clock: ManualClock) -> None:
    env_id, worker = await setup(engine)
    delayed = await engine.enqueue.trigger(
        env_id, TriggerRequest("t", delay_until=clock.now() + 60)
    )
    expiring = await engine.enqueue.trigger(
        env_id, TriggerRequest("t", ttl=30, delay_until=clock.now() + 100)
    )
    assert await status(engine, env_id, delayed.id) is RunStatus.DELAYED
    assert await engine.dequeue.claim(worker, 5) == []
    clock.advance(61)
    await engine.maintenance.sweep()
    [claimed] = await engine.dequeue.claim(worker, 5)
    assert claimed.id == delayed.id
    clock.advance(100)
    await engine.maintenance.sweep()
    assert await status(engine, env_id, expiring.id) is RunStatus.EXPIRED


async def test_release_returns_runs_without_spending_retries(engine: Engine) -> None:
    env_id, worker = await setup(engine)
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    [a] = await engine.dequeue.claim(worker, 1)
    await engine.attempts.start(run.id, a.claimed_attempt_id)
    assert await engine.attempts.release([a.claimed_attempt_id], "shutdown") == [run.id]
    detail = await engine.runs.retrieve(env_id, run.id)
    assert detail.run.status == RunStatus.QUEUED and detail.run.failure_count == 0
    [again] = await engine.dequeue.claim(worker, 1)
    assert again.attempt_count == 2


async def test_list_pages_newest_first_with_cursors(engine: Engine, clock: ManualClock) -> None:
    env_id, _ = await setup(engine)
    ids = []
    for i in range(7):
        clock.advance(0.01)
        ids.append(
            (await engine.enqueue.trigger(env_id, TriggerRequest("t", tags=[f"g{i % 2}"]))).id
        )
    newest_first = list(reversed(ids))
    page1, _, more = await engine.runs.page(env_id, _no_filter(), size=3, after=None, before=None)
    assert [r.id for r in page1] == newest_first[:3] and more
    page2, _, more = await engine.runs.page(
        env_id, _no_filter(), size=3, after=page1[-1].id, before=None
    )
    assert [r.id for r in page2] == newest_first[3:6] and more
    back, _, _ = await engine.runs.page(
        env_id, _no_filter(), size=3, after=None, before=page2[0].id
    )
    assert [r.id for r in back] == newest_first[:3]
    from triggerfish._domain.filters import RunFilter

    tagged, tags, _ = await engine.runs.page(
        env_id, RunFilter(tags=["g1"]), size=10, after=None, before=None
    )
    assert [r.id for r in tagged] == [i for i in newest_first if ids.index(i) % 2 == 1]
    assert all(tags[r.id] == ["g1"] for r in tagged)


async def test_list_filtered_by_statuses_pages_newest_first(
    engine: Engine, clock: ManualClock
) -> None:
    from triggerfish._domain.filters import RunFilter

    env_id, _ = await setup(engine)
    made: list[tuple[str, RunStatus]] = []
    for i in range(9):
        clock.advance(0.01)
        delay = clock.now() + 60 if i % 3 == 2 else None
        run = await engine.enqueue.trigger(env_id, TriggerRequest("t", delay_until=delay))
        if i % 3 == 1:
            await engine.runs.cancel(env_id, run.id)
        made.append((run.id, await status(engine, env_id, run.id)))
    wanted = {RunStatus.QUEUED, RunStatus.CANCELED}
    newest_first = [rid for rid, st in reversed(made) if st in wanted]
    assert len(newest_first) == 6
    flt = RunFilter(statuses=[s.value for s in wanted])
    seen, after, more = [], None, True
    while more:
        rows, _, more = await engine.runs.page(env_id, flt, size=4, after=after, before=None)
        seen += [r.id for r in rows]
        after = rows[-1].id
    assert seen == newest_first
    back, _, more = await engine.runs.page(env_id, flt, size=2, after=None, before=seen[4])
    assert [r.id for r in back] == newest_first[2:4] and more


async def test_environments_are_isolated(engine: Engine) -> None:
    env_id, _ = await setup(engine)
    prod = await engine.environments.by_slug("prod")
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t"))
    from triggerfish.errors import RunNotFound

    with pytest.raises(RunNotFound):
        await engine.runs.retrieve(prod.id, run.id)
    with pytest.raises(TaskNotFound):
        await engine.enqueue.trigger(prod.id, TriggerRequest("t"))


def _no_filter() -> Any:
    from triggerfish._domain.filters import RunFilter

    return RunFilter()
