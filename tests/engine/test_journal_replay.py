"""Journal and replay on the real store, with the real replay runtime, in process."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.support.in_process import (
    SimulatedCrash,
    bare_worker,
    in_process_worker,
    run_record,
    trigger_run,
)
from triggerfish import Context, retry, step, task
from triggerfish._domain.states import JournalStatus
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.engine.journal import JournalEntry
from triggerfish.engine.resources import ManualClock
from triggerfish.errors import StaleTransition
from triggerfish.sdk._registry import TaskRegistry, collecting_into

FAST = retry(max_attempts=3, min_delay=0, max_delay=0, jitter=0)


async def test_replay_runs_the_body_again_but_each_finished_step_once(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="two-steps", retry=FAST)
        def two_steps(payload: dict[str, Any], ctx: Context) -> list[Any]:
            calls["body"] += 1
            a = step.run("a", lambda: calls.update(["a"]) or {"n": 1})
            b = step.run("b", lambda x: calls.update(["b"]) or x["n"] + 1, a)
            if ctx.attempt.number == 1:
                raise ConnectionError("flaky after the steps")
            return [a, b]

    env_id, worker = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "two-steps")
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED" and run.output == [{"n": 1}, 2]
    assert calls == Counter(body=2, a=1, b=1)


async def test_async_steps_replay_too(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    registry = TaskRegistry()
    with collecting_into(registry):

        async def fetch(n: int) -> int:
            calls[f"fetch-{n}"] += 1
            return n * 2

        @task(id="async-steps", retry=FAST)
        async def async_steps(payload: dict[str, Any], ctx: Context) -> int:
            total = 0
            for n in range(3):
                total += await step.run(f"fetch-{n}", fetch, n)
            if ctx.attempt.number == 1:
                raise SimulatedCrash()
            return total

    env_id, worker = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "async-steps")
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED" and run.output == 6
    assert calls == Counter({"fetch-0": 1, "fetch-1": 1, "fetch-2": 1})


async def test_reordered_steps_fail_with_non_determinism_naming_both(engine: Engine) -> None:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="reorders", retry=FAST)
        def reorders(payload: dict[str, Any], ctx: Context) -> None:
            names = ["render", "upload"] if ctx.attempt.number == 1 else ["upload", "render"]
            for name in names:
                step.run(name, lambda: 1)
            if ctx.attempt.number == 1:
                raise ConnectionError("retry me")

    env_id, worker = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "reorders")
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "FAILED" and run.attempt_count == 2  # not retried further
    assert run.error["name"] == "NonDeterminismError"
    assert (
        "step 1: the journal has step('render'), the code called step('upload')"
        in (run.error["message"])
    )


async def test_a_failed_step_is_journaled_and_replays_as_the_same_failure(engine: Engine) -> None:
    tries: Counter[str] = Counter()
    registry = TaskRegistry()
    with collecting_into(registry):

        def broken() -> None:
            tries["broken"] += 1
            raise ValueError("the render service said no")

        @task(id="step-fails", retry=FAST)
        def step_fails(payload: dict[str, Any]) -> None:
            step.run("render", broken, retry=retry(max_attempts=2, min_delay=0, jitter=0))

    env_id, worker = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "step-fails")
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert tries["broken"] == 2  # the step's own policy, not the task's 3 x 2
    assert run.status == "FAILED" and run.attempt_count == 1
    assert run.error["name"] == "StepFailedError"
    assert (
        "step 'render' failed after 2 tries: ValueError: the render service said no"
        in (run.error["message"])
    )
    entries = (await engine.runs.retrieve(env_id, run_id)).steps
    assert [(e.kind, e.name, e.status, e.failures) for e in entries] == [
        ("step", "render", "ERROR", 2)
    ]


async def test_a_caught_step_failure_replays_without_running_the_step(engine: Engine) -> None:
    tries: Counter[str] = Counter()
    registry = TaskRegistry()
    with collecting_into(registry):

        def broken() -> None:
            tries["broken"] += 1
            raise ValueError("no")

        @task(id="catches", retry=FAST)
        def catches(payload: dict[str, Any], ctx: Context) -> str:
            try:
                step.run("risky", broken, retry=retry(max_attempts=1))
            except Exception as exc:
                outcome = type(exc).__name__
            if ctx.attempt.number == 1:
                raise SimulatedCrash()
            return outcome

    env_id, worker = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "catches")
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED" and run.output == "StepFailedError"
    assert tries["broken"] == 1


async def test_step_try_counter_survives_a_crash(engine: Engine) -> None:
    tries: list[int] = []
    registry = TaskRegistry()
    with collecting_into(registry):

        def flaky() -> str:
            tries.append(1)
            if len(tries) == 1:
                raise ConnectionError("first try fails")
            if len(tries) == 2:
                raise SimulatedCrash()  # the process dies during the second try
            raise ConnectionError("third try fails too")

        @task(id="counted", retry=FAST)
        def counted(payload: dict[str, Any]) -> None:
            step.run("flaky", flaky, retry=retry(max_attempts=2, min_delay=0, jitter=0))

    env_id, worker = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "counted")
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    # try 1 failed (recorded), try 2 was cut by the crash, try 3 is the step's last
    assert len(tries) == 3
    assert run.status == "FAILED" and "failed after 2 tries" in run.error["message"]


async def test_journal_write_from_a_stale_attempt_is_refused(
    engine: Engine, clock: ManualClock
) -> None:
    env_id = (await engine.environments.by_slug("dev")).id
    ident = await bare_worker(engine, env_id)
    run_id = await trigger_run(engine, env_id, "t")
    [row] = await engine.dequeue.claim(ident, 1)
    entry = JournalEntry(seq=0, kind="step", name="a", status=JournalStatus.OK, result=1)
    with pytest.raises(StaleTransition):  # claimed, not yet started
        await engine.journal.record(run_id, row.claimed_attempt_id, entry)
    await engine.attempts.start(run_id, row.claimed_attempt_id)
    await engine.journal.record(run_id, row.claimed_attempt_id, entry)
    with pytest.raises(StaleTransition):
        await engine.journal.record(run_id, "attempt_someone_else", entry)
    other_env = (await engine.environments.by_slug("prod")).id
    later = JournalEntry(seq=1, kind="step", name="b", status=JournalStatus.OK, result=2)
    with pytest.raises(StaleTransition):  # the attempt, but asked for from another environment
        await engine.journal.record(run_id, row.claimed_attempt_id, later, other_env)
    clock.advance(minutes=5)
    await engine.maintenance.reclaim_expired_leases()  # lease lost: attempt is stale now
    with pytest.raises(StaleTransition):
        await engine.journal.record(run_id, row.claimed_attempt_id, later, env_id)
    journal = (await engine.journal.for_runs([run_id]))[run_id]
    assert [(e["seq"], e["result"]) for e in journal] == [(0, 1)]  # refused writes left nothing


async def test_large_results_live_out_of_line_and_a_long_journal_replays(
    engine: Engine,
) -> None:
    calls: Counter[str] = Counter()
    big = "x" * (200 * 1024)
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="long", retry=FAST)
        def long(payload: dict[str, Any], ctx: Context) -> int:
            blob = step.run("big", lambda: calls.update(["big"]) or big)
            total = sum(
                step.run(f"s{i}", lambda i=i: calls.update(["small"]) or i) for i in range(1000)
            )
            if ctx.attempt.number == 1:
                raise SimulatedCrash()
            return int(total) + len(blob)

    env_id, worker = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "long")
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED" and run.output == sum(range(1000)) + len(big)
    assert calls == Counter(big=1, small=1000)
    [first] = (await engine.journal.for_runs([run_id]))[run_id][:1]
    assert first["result"] is None and first["result_blob"] is True


async def test_a_journal_write_locks_the_run_to_its_version_only_when_asked(
    engine: Engine, db_url: str, clock: ManualClock
) -> None:
    env_id = (await engine.environments.by_slug("dev")).id
    ident = await bare_worker(engine, env_id, version="v7")
    run_id = await trigger_run(engine, env_id, "t")
    [row] = await engine.dequeue.claim(ident, 1, start=1)
    unlocked = Engine.create(
        ServerSettings(database_url=db_url, lock_run_versions=False), clock=clock
    )
    await unlocked.start(background=False)
    try:  # `triggerfish dev` reloads code: its runs replay on whatever version is current
        entry = JournalEntry(seq=0, kind="step", name="a", status=JournalStatus.OK, result=1)
        await unlocked.journal.record(run_id, row.claimed_attempt_id, entry, env_id)
    finally:
        await unlocked.close()
    assert (await run_record(engine, env_id, run_id)).locked_version is None
    entry = JournalEntry(seq=1, kind="step", name="b", status=JournalStatus.OK, result=2)
    await engine.journal.record(run_id, row.claimed_attempt_id, entry, env_id)
    assert (await run_record(engine, env_id, run_id)).locked_version == "v7"
