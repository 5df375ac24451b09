"""Batched reports (``Attempts.report_many``) recorded set-based, on the real store.

Each item of a batch must count exactly as it would alone, in order: a stale,
repeated or foreign item changes nothing, and every accepted one leaves its
history row, attempt status and output.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from tests.engine.test_runs_engine import manifest, setup
from tests.support.in_process import InProcessWorker, run_record
from triggerfish import retry, task
from triggerfish._domain.states import RunStatus
from triggerfish.engine import Engine
from triggerfish.engine.attempts import Failure, Report, Start
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.queues import QueueRef
from triggerfish.errors import StoreUnavailable
from triggerfish.sdk._registry import TaskRegistry, collecting_into
from triggerfish.store import runs as run_store

BOOM = Failure("USER", {"name": "Boom", "message": "failed"})


async def _claimed(engine: Engine, n: int, *, start: int) -> tuple[str, list[Any]]:
    env_id, worker = await setup(engine, manifest())
    for i in range(n):
        await engine.enqueue.trigger(env_id, TriggerRequest("t", {"i": i}))
    rows = await engine.dequeue.claim(worker, n, start)
    assert len(rows) == n
    return env_id, sorted(rows, key=lambda r: r.id)


async def _parent_waiting_on_child(engine: Engine) -> tuple[Any, InProcessWorker, str]:
    """A parent run suspended on its child (which the test reports, never runs)."""
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="child", retry=retry(max_attempts=1))
        def child(payload: dict[str, Any]) -> None:
            raise AssertionError("reported by the test, never run")

        @task(id="parent", retry=retry(max_attempts=1))
        def parent(payload: dict[str, Any]) -> Any:
            return child.trigger_and_wait({}).unwrap()

    env = await engine.environments.by_slug("dev")
    worker = await InProcessWorker(engine, registry, env.id).register()
    parent_id = (await engine.enqueue.trigger(env.id, TriggerRequest("parent", {}))).id
    await worker.run_one()  # the parent suspends on its child
    return env, worker, parent_id


async def test_a_batch_of_successes_counts_each_current_attempt_once(engine: Engine) -> None:
    env_id, (a, b, c, d) = await _claimed(engine, 4, start=4)
    other = await engine.environments.by_slug("prod")
    reports = [
        Report(a.id, a.current_attempt_id, {"run": "a"}),
        Report(b.id, "attempt_not_current", {"run": "b?"}),  # stale attempt
        Report(b.id, b.current_attempt_id, {"run": "b"}),  # the same run, current
        Report(a.id, a.current_attempt_id, {"again": True}),  # a repeat
        Report(c.id, d.current_attempt_id, {"run": "c?"}),  # another run's attempt
    ]
    _, outcomes = await engine.attempts.report_many([], reports, env_id)
    assert [o is not None for o in outcomes] == [True, False, True, False, False]
    assert (await run_record(engine, env_id, a.id)).output == {"run": "a"}
    assert (await run_record(engine, env_id, b.id)).output == {"run": "b"}
    for row in (c, d):
        assert (await run_record(engine, env_id, row.id)).status == RunStatus.EXECUTING
    # a run of another environment is not this caller's to finish
    _, foreign = await engine.attempts.report_many(
        [], [Report(c.id, c.current_attempt_id, 1)], other.id
    )
    assert foreign == [None]
    for row in (a, b):
        events = await engine.runs.events(env_id, row.id)
        assert [(e.from_status, e.to_status) for e in events][-1] == ("EXECUTING", "COMPLETED")
        assert sum(e.to_status == "COMPLETED" for e in events) == 1
        attempts = (await engine.runs.retrieve(env_id, row.id)).attempts
        assert [t.status for t in attempts] == ["COMPLETED"]


async def test_successes_and_failures_of_one_batch_count_in_their_order(engine: Engine) -> None:
    env_id, (a, b, c) = await _claimed(engine, 3, start=3)
    reports = [
        Report(a.id, a.current_attempt_id, failure=BOOM),  # retried: QUEUED again
        Report(a.id, a.current_attempt_id, "late"),  # so this success is stale
        Report(b.id, b.current_attempt_id, "b"),
        Report(c.id, c.current_attempt_id, "c"),
        Report(c.id, c.current_attempt_id, failure=BOOM),  # c already completed
    ]
    _, outcomes = await engine.attempts.report_many([], reports, env_id)
    assert [o.status if o else None for o in outcomes] == [
        RunStatus.QUEUED,
        None,
        RunStatus.COMPLETED,
        RunStatus.COMPLETED,
        None,
    ]
    assert (await run_record(engine, env_id, a.id)).output is None
    assert (await run_record(engine, env_id, c.id)).output == "c"


async def test_batched_starts_accept_each_claimed_attempt_once(engine: Engine) -> None:
    env_id, (a, b, c) = await _claimed(engine, 3, start=1)  # a started by the claim
    starts = [
        Start(b.id, "attempt_not_current"),
        Start(b.id, b.current_attempt_id),
        Start(b.id, b.current_attempt_id),  # a repeat
        Start(a.id, a.current_attempt_id),  # already EXECUTING
        Start(c.id, c.current_attempt_id),
    ]
    started, outcomes = await engine.attempts.report_many(
        starts, [Report(c.id, c.current_attempt_id, "c")], env_id
    )
    assert started == [False, True, False, False, True]
    assert [o.status if o else None for o in outcomes] == [RunStatus.COMPLETED]
    run = await run_record(engine, env_id, b.id)
    assert run.status == RunStatus.EXECUTING and run.started_at is not None
    attempts = (await engine.runs.retrieve(env_id, b.id)).attempts
    assert [(t.status, t.started_at is not None) for t in attempts] == [("EXECUTING", True)]
    events = await engine.runs.events(env_id, c.id)
    assert [e.to_status for e in events][-2:] == ["EXECUTING", "COMPLETED"]


async def test_a_batched_success_resumes_the_parent_waiting_on_it(engine: Engine) -> None:
    env, worker, parent_id = await _parent_waiting_on_child(engine)
    assert (await run_record(engine, env.id, parent_id)).status == RunStatus.WAITING
    assert worker.identity is not None
    (claimed,) = await engine.dequeue.claim(worker.identity, 1, 1)
    _, outcomes = await engine.attempts.report_many(
        [], [Report(claimed.id, claimed.claimed_attempt_id, {"answer": 42})], env.id
    )
    assert outcomes[0] is not None
    assert (await run_record(engine, env.id, parent_id)).status == RunStatus.QUEUED
    await worker.run_until_idle()
    parent_run = await run_record(engine, env.id, parent_id)
    assert parent_run.status == RunStatus.COMPLETED, parent_run.error
    assert parent_run.output == {"answer": 42}


async def test_a_report_and_claim_takes_the_slot_the_report_frees(engine: Engine) -> None:
    env_id, worker = await setup(engine, manifest(limit=1))
    for i in range(2):
        await engine.enqueue.trigger(env_id, TriggerRequest("t", {"i": i}))
    (first,) = await engine.dequeue.claim(worker, 2, 2)  # the queue's one slot
    started, outcomes, claimed = await engine.dequeue.report_and_claim(
        [], [Report(first.id, first.claimed_attempt_id, "done")], worker, 2, 2
    )
    assert started == [] and [o.status if o else None for o in outcomes] == ["COMPLETED"]
    assert [(r.status, r.attempt_count) for r in claimed] == [(RunStatus.EXECUTING, 1)]
    assert claimed[0].id != first.id


async def test_when_the_shared_transaction_fails_items_count_alone_and_then_runs_after(
    engine: Engine,
) -> None:
    env_id, (a, b) = await _claimed(engine, 2, start=2)
    calls: list[str] = []

    async def then(conn: Any) -> str:
        calls.append("then")
        if len(calls) == 1:
            raise OperationalError("COMMIT", {}, Exception("deadlock detected"))
        return "ran alone"

    reports = [Report(a.id, a.current_attempt_id, "a"), Report(b.id, "attempt_stale", "b")]
    _, outcomes, after = await engine.attempts.report_many_then([], reports, env_id, then)
    assert [o is not None for o in outcomes] == [True, False]
    assert after == "ran alone" and calls == ["then", "then"]
    assert (await run_record(engine, env_id, a.id)).output == "a"
    events = await engine.runs.events(env_id, a.id)
    assert sum(e.to_status == "COMPLETED" for e in events) == 1


# -- a report and claim as one statement (PostgreSQL) ----------------------------------


async def _report_and_claim_both_ways(
    engine: Engine, reports_for: Any, monkeypatch: Any
) -> list[tuple[Any, ...]]:
    """What ``report_and_claim`` leaves, through whichever path it takes; and (on
    PostgreSQL) whether the one-statement path took it."""
    env_id, worker = await setup(engine, manifest())
    for i in range(4):
        await engine.enqueue.trigger(env_id, TriggerRequest("t", {"i": i}))
    done = sorted(await engine.dequeue.claim(worker, 2, 2), key=lambda r: r.order_key)
    one_statement: list[bool] = []
    fast = run_store.claim_unconstrained_after

    async def spy(*args: Any) -> Any:
        one_statement.append(True)
        return await fast(*args)

    monkeypatch.setattr(run_store, "claim_unconstrained_after", spy)
    started, outcomes, claimed = await engine.dequeue.report_and_claim(
        [], reports_for(done), worker, 3, 1
    )
    stored = []
    for row in done:
        run = await run_record(engine, env_id, row.id)
        detail = await engine.runs.retrieve(env_id, row.id)
        events = await engine.runs.events(env_id, row.id)
        stored.append(
            (
                run.status,
                run.output,
                run.finished_at is not None,
                run.lease_expires_at,
                [a.status for a in detail.attempts],
                [
                    (e.from_status, e.to_status, e.attempt_id == row.current_attempt_id, e.reason)
                    for e in events
                ][-1],
            )
        )
    return [
        (started, [o.status if o else None for o in outcomes]),
        ([(r.status, r.payload) for r in claimed],),
        tuple(stored),
        (bool(one_statement),),
    ]


async def test_successes_reported_with_a_claim_are_one_statement_on_postgresql(
    engine: Engine, monkeypatch: Any
) -> None:
    result = await _report_and_claim_both_ways(
        engine,
        lambda done: [Report(r.id, r.current_attempt_id, {"n": k}) for k, r in enumerate(done)],
        monkeypatch,
    )
    assert result[0] == ([], ["COMPLETED", "COMPLETED"])
    # the two runs left are claimed in order; the first starts at once
    assert result[1] == ([(RunStatus.EXECUTING, {"i": 2}), (RunStatus.DEQUEUED, {"i": 3})],)
    completed = ("EXECUTING", "COMPLETED", True, "attempt succeeded")
    assert result[2] == (
        (RunStatus.COMPLETED, {"n": 0}, True, None, ["COMPLETED"], completed),
        (RunStatus.COMPLETED, {"n": 1}, True, None, ["COMPLETED"], completed),
    )
    assert result[3] == (engine.res.db.dialect == "postgresql",)


async def test_a_stale_success_among_them_changes_nothing(engine: Engine, monkeypatch: Any) -> None:
    result = await _report_and_claim_both_ways(
        engine,
        lambda done: [
            Report(done[0].id, "attempt_not_current", "stale"),
            Report(done[1].id, done[1].current_attempt_id, None),
        ],
        monkeypatch,
    )
    assert result[0] == ([], [None, "COMPLETED"])
    stale, fresh = result[2]
    assert stale[0] == RunStatus.EXECUTING and stale[1] is None
    assert stale[5][1] == "EXECUTING"  # its history still ends with its start
    assert fresh[:2] == (RunStatus.COMPLETED, None)


async def test_a_failure_or_a_repeat_among_them_takes_the_general_path(
    engine: Engine, monkeypatch: Any
) -> None:
    result = await _report_and_claim_both_ways(
        engine,
        lambda done: [
            Report(done[0].id, done[0].current_attempt_id, "a"),
            Report(done[0].id, done[0].current_attempt_id, "again"),
            Report(done[1].id, done[1].current_attempt_id, failure=BOOM),
        ],
        monkeypatch,
    )
    assert result[0][1][:2] == ["COMPLETED", None]
    assert result[2][0][:2] == (RunStatus.COMPLETED, "a")
    assert result[3] == (False,)


async def test_a_success_a_parent_waits_on_resumes_the_parent_through_the_one_statement_exchange(
    engine: Engine,
) -> None:
    env, worker, parent_id = await _parent_waiting_on_child(engine)
    assert worker.identity is not None
    (claimed,) = await engine.dequeue.claim(worker.identity, 1, 1)
    _, outcomes, rows = await engine.dequeue.report_and_claim(
        [], [Report(claimed.id, claimed.claimed_attempt_id, {"answer": 42})], worker.identity, 1, 1
    )
    assert [o.status if o else None for o in outcomes] == ["COMPLETED"]
    # the parent is queued again (and the claim may have taken it): the worker runs it
    assert [r.id for r in rows] in ([], [parent_id])
    await engine.attempts.release([r.claimed_attempt_id for r in rows], "run by the test worker")
    await worker.run_until_idle()
    parent_run = await run_record(engine, env.id, parent_id)
    assert parent_run.status == RunStatus.COMPLETED, parent_run.error
    assert parent_run.output == {"answer": 42}
    events = await engine.runs.events(env.id, claimed.id)
    assert sum(e.to_status == "COMPLETED" for e in events) == 1


async def test_successes_are_recorded_and_a_limit_holds_when_the_queue_gets_one_meanwhile(
    engine: Engine,
) -> None:
    env_id, worker = await setup(engine, manifest())
    for i in range(4):
        await engine.enqueue.trigger(env_id, TriggerRequest("t", {"i": i}))
    a, b = await engine.dequeue.claim(worker, 2, 2)
    # another server limits the queue to one run at a time: b still holds it
    await engine.queues.override_limit(env_id, QueueRef("task", "t"), 1)
    _, outcomes, claimed = await engine.dequeue.report_and_claim(
        [], [Report(a.id, a.claimed_attempt_id, "a")], worker, 3, 3
    )
    assert [o.status if o else None for o in outcomes] == ["COMPLETED"]
    assert claimed == []
    assert (await run_record(engine, env_id, a.id)).status == RunStatus.COMPLETED
    _, _, claimed = await engine.dequeue.report_and_claim(
        [], [Report(b.id, b.claimed_attempt_id, "b")], worker, 3, 3
    )
    assert len(claimed) == 1


async def test_when_the_one_statement_report_fails_the_general_path_records_it(
    engine: Engine, monkeypatch: Any
) -> None:
    env_id, worker = await setup(engine, manifest())
    for i in range(3):
        await engine.enqueue.trigger(env_id, TriggerRequest("t", {"i": i}))
    (a,) = await engine.dequeue.claim(worker, 1, 1)

    async def fails(*args: Any) -> Any:
        raise StoreUnavailable("the database connection failed (ConnectionResetError)")

    monkeypatch.setattr(run_store, "claim_unconstrained_after", fails)
    _, outcomes, claimed = await engine.dequeue.report_and_claim(
        [], [Report(a.id, a.claimed_attempt_id, "a")], worker, 2, 2
    )
    assert [o.status if o else None for o in outcomes] == ["COMPLETED"]
    assert (await run_record(engine, env_id, a.id)).output == "a"
    assert len(claimed) == 2


# -- a programming error is not a reason to take the slower path ----------------------


async def test_a_programming_error_in_a_batch_fails_instead_of_recording_each_alone(
    engine: Engine,
) -> None:
    env_id, (a,) = await _claimed(engine, 1, start=1)

    async def then(conn: Any) -> str:
        raise TypeError("a bug in the work that shares the transaction")

    reports = [Report(a.id, a.current_attempt_id, "a")]
    with pytest.raises(TypeError, match="a bug"):
        await engine.attempts.report_many_then([], reports, env_id, then)
    # the shared transaction rolled back, and nothing was recorded alone after it
    assert (await run_record(engine, env_id, a.id)).status == RunStatus.EXECUTING


async def test_a_programming_error_in_the_one_statement_report_fails_instead_of_falling_back(
    pg_db_url: str, clock: Any, monkeypatch: Any
) -> None:
    from tests.support import started_engine

    async def broken(*args: Any) -> Any:
        raise TypeError("a bug in the one-statement report")

    monkeypatch.setattr(run_store, "claim_unconstrained_after", broken)
    async with started_engine(pg_db_url, clock) as engine:
        env_id, worker = await setup(engine, manifest())
        await engine.enqueue.trigger(env_id, TriggerRequest("t", {"i": 0}))
        (a,) = await engine.dequeue.claim(worker, 1, 1)
        with pytest.raises(TypeError, match="a bug"):
            await engine.dequeue.report_and_claim(
                [], [Report(a.id, a.claimed_attempt_id, "a")], worker, 1, 1
            )
        assert (await run_record(engine, env_id, a.id)).status == RunStatus.EXECUTING
