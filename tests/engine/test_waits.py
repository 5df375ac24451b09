"""Durable waits on the real store: durations, tokens, child runs, exactly-once resumes."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from tests.support.in_process import (
    InProcessWorker,
    bare_worker,
    in_process_worker,
    run_record,
    trigger_run,
)
from triggerfish import BatchItem, Context, WaitResult, retry, step, task, wait
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock
from triggerfish.engine.waitpoints import TokenRequest, WaitSpec
from triggerfish.errors import ConflictError, StaleTransition, WaitpointNotFound
from triggerfish.sdk._registry import TaskRegistry, collecting_into

FAST = retry(max_attempts=3, min_delay=0, max_delay=0, jitter=0)


async def _resumes(engine: Engine, env_id: str, run_id: str) -> int:
    events = await engine.runs.events(env_id, run_id)
    return sum(1 for e in events if (e.from_status, e.to_status) == ("WAITING", "QUEUED"))


def _sleeper_registry(calls: Counter[str]) -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="sleeper", retry=FAST)
        def sleeper(payload: dict[str, Any]) -> list[Any]:
            calls["body"] += 1
            a = step.run("a", lambda: calls.update(["a"]) or "a")
            wait.for_(minutes=5)
            b = step.run("b", lambda: calls.update(["b"]) or "b")
            return [a, b]

        @task(id="async-sleeper", retry=FAST)
        async def async_sleeper(payload: dict[str, Any]) -> str:
            calls["async-body"] += 1
            await wait.for_(hours=2)
            return str(await step.run("after", lambda: calls.update(["after"]) or "done"))

        @task(id="napper", retry=FAST)
        def napper(payload: dict[str, Any]) -> str:
            calls["napper"] += 1
            wait.for_(seconds=0.01)  # below the threshold: sleeps in place
            return "rested"

    return registry


async def test_a_long_wait_suspends_the_run_and_resumes_it_when_due(
    engine: Engine, clock: ManualClock
) -> None:
    calls: Counter[str] = Counter()
    env_id, worker = await in_process_worker(engine, _sleeper_registry(calls))
    run_id = await trigger_run(engine, env_id, "sleeper")
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "WAITING" and run.worker_id is None
    waiting = (await engine.waitpoints.waiting_for([run_id]))[run_id]
    assert [w["type"] for w in waiting] == ["DURATION"] and waiting[0]["until"]
    clock.advance(minutes=4)
    assert await engine.maintenance.sweep() and await worker.run_until_idle() == []
    clock.advance(minutes=1)
    assert await engine.waitpoints.resolve_due() == 1
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED" and run.output == ["a", "b"]
    assert calls == Counter(body=2, a=1, b=1)
    assert [a.status for a in (await engine.runs.retrieve(env_id, run_id)).attempts] == [
        "SUSPENDED",
        "COMPLETED",
    ]


async def test_async_tasks_await_waits(engine: Engine, clock: ManualClock) -> None:
    calls: Counter[str] = Counter()
    env_id, worker = await in_process_worker(engine, _sleeper_registry(calls))
    run_id = await trigger_run(engine, env_id, "async-sleeper")
    await worker.run_until_idle()
    assert (await run_record(engine, env_id, run_id)).status == "WAITING"
    clock.advance(hours=2)
    await engine.maintenance.sweep()
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED" and run.output == "done"
    assert calls == Counter({"async-body": 2, "after": 1})


async def test_a_short_wait_sleeps_in_place(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    env_id, worker = await in_process_worker(engine, _sleeper_registry(calls))
    run_id = await trigger_run(engine, env_id, "napper")
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED" and run.attempt_count == 1 and calls["napper"] == 1


def _token_registry(seen: list[WaitResult[Any]]) -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="approval", retry=FAST)
        def approval(payload: dict[str, Any]) -> Any:
            token = wait.create_token(
                timeout=(payload or {}).get("timeout", "1h"), tags=["approval"]
            )

            def announce() -> str:
                seen.clear()
                return token.id

            step.run("announce", announce)
            result = wait.for_token(token)
            seen.append(result)
            return {"ok": result.ok, "output": result.output, "error": result.error}

    return registry


async def _token_of(engine: Engine, env_id: str, run_id: str) -> str:
    entries = (await engine.runs.retrieve(env_id, run_id)).steps
    return str(entries[0].result["id"])


async def test_a_token_completed_through_the_engine_resumes_the_run_once(
    engine: Engine,
) -> None:
    seen: list[WaitResult[Any]] = []
    env_id, worker = await in_process_worker(engine, _token_registry(seen))
    run_id = await trigger_run(engine, env_id, "approval")
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "WAITING", run.error["stack_trace"]
    token_id = await _token_of(engine, env_id, run_id)
    waiting = (await engine.waitpoints.waiting_for([run_id]))[run_id]
    assert waiting == [
        {
            "id": token_id,
            "type": "TOKEN",
            "status": "PENDING",
            "tokenId": token_id,
            "timeoutAt": waiting[0]["timeoutAt"],
        }
    ]
    await engine.waitpoints.complete_token(env_id, token_id, {"approved": True})
    await engine.waitpoints.complete_token(env_id, token_id, {"approved": False})  # no-op
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED"
    assert run.output == {"ok": True, "output": {"approved": True}, "error": None}
    assert await _resumes(engine, env_id, run_id) == 1
    with pytest.raises(WaitpointNotFound):
        await engine.waitpoints.complete_token(env_id, "waitpoint_nope", {})
    other_env = await engine.environments.by_slug("prod")
    with pytest.raises(WaitpointNotFound):
        await engine.waitpoints.complete_token(other_env.id, token_id, {})


async def test_a_token_that_times_out_resumes_with_an_error_and_refuses_completion(
    engine: Engine, clock: ManualClock
) -> None:
    seen: list[WaitResult[Any]] = []
    env_id, worker = await in_process_worker(engine, _token_registry(seen))
    run_id = await trigger_run(engine, env_id, "approval", {"timeout": "10m"})
    await worker.run_until_idle()
    token_id = await _token_of(engine, env_id, run_id)
    clock.advance(minutes=11)
    await engine.maintenance.sweep()
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED" and run.output["ok"] is False
    assert run.output["error"]["code"] == "TRIGGER_WAITPOINT_TIMEOUT"
    with pytest.raises(ConflictError, match="timed out"):
        await engine.waitpoints.complete_token(env_id, token_id, {"late": True})


async def test_a_token_completed_before_the_wait_resolves_it_at_once(engine: Engine) -> None:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="self-approves", retry=FAST)
        def self_approves(payload: dict[str, Any]) -> Any:
            token = wait.create_token()
            wait.complete_token(token, {"by": "myself"})
            return wait.for_token(token.id).unwrap()

    env_id, worker = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "self-approves")
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED" and run.output == {"by": "myself"} and run.attempt_count == 1


async def test_every_run_waiting_on_one_token_resumes_once_with_its_data(engine: Engine) -> None:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="awaits-given", retry=FAST)
        def awaits_given(payload: dict[str, Any]) -> Any:
            return wait.for_token(payload["token"]).unwrap()

    env_id, worker = await in_process_worker(engine, registry)
    token, _ = await engine.waitpoints.create_token(env_id, TokenRequest())
    run_ids = [
        await trigger_run(engine, env_id, "awaits-given", {"token": token.id}) for _ in range(3)
    ]
    await worker.run_until_idle()
    assert {(await run_record(engine, env_id, r)).status for r in run_ids} == {"WAITING"}
    await engine.waitpoints.complete_token(env_id, token.id, {"go": True})
    await worker.run_until_idle()
    for run_id in run_ids:
        run = await run_record(engine, env_id, run_id)
        assert run.status == "COMPLETED" and run.output == {"go": True}
        assert await _resumes(engine, env_id, run_id) == 1


async def test_two_servers_completing_one_token_at_once_resume_the_run_once(
    engine: Engine, db_url: str, clock: ManualClock
) -> None:
    seen: list[WaitResult[Any]] = []
    env_id, worker = await in_process_worker(engine, _token_registry(seen))
    run_ids = [await trigger_run(engine, env_id, "approval") for _ in range(3)]
    await worker.run_until_idle()
    other = Engine.create(ServerSettings(database_url=db_url), clock=clock)
    await other.start(background=False)
    try:
        for n, run_id in enumerate(run_ids):
            token_id = await _token_of(engine, env_id, run_id)
            await asyncio.gather(
                engine.waitpoints.complete_token(env_id, token_id, {"from": "a", "n": n}),
                other.waitpoints.complete_token(env_id, token_id, {"from": "b", "n": n}),
            )
    finally:
        await other.close()
    await worker.run_until_idle()
    for run_id in run_ids:
        run = await run_record(engine, env_id, run_id)
        assert run.status == "COMPLETED" and run.output["output"]["from"] in ("a", "b")
        assert await _resumes(engine, env_id, run_id) == 1


async def test_a_completion_racing_the_timeout_gives_one_consistent_result(
    engine: Engine, clock: ManualClock
) -> None:
    seen: list[WaitResult[Any]] = []
    env_id, worker = await in_process_worker(engine, _token_registry(seen))
    run_id = await trigger_run(engine, env_id, "approval", {"timeout": "1m"})
    await worker.run_until_idle()
    token_id = await _token_of(engine, env_id, run_id)
    clock.advance(minutes=2)

    async def complete() -> str:
        try:
            await engine.waitpoints.complete_token(env_id, token_id, {"approved": True})
            return "completed"
        except ConflictError:
            return "timed out"

    first, _ = await asyncio.gather(complete(), engine.waitpoints.resolve_due())
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED" and await _resumes(engine, env_id, run_id) == 1
    token = await engine.waitpoints.get_token(env_id, token_id)
    assert run.output["ok"] is (token.status == "COMPLETED")
    assert (first == "completed") is (token.status == "COMPLETED")


def _family(calls: Counter[str]) -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="child", retry=retry(max_attempts=1))
        def child(payload: dict[str, Any]) -> int:
            calls[f"child-{payload['n']}"] += 1
            if payload.get("fail"):
                raise ValueError(f"child {payload['n']} failed")
            return int(payload["n"]) * 10

        @task(id="parent", retry=FAST)
        def parent(payload: dict[str, Any], ctx: Context) -> Any:
            calls["parent"] += 1
            one = child.trigger_and_wait({"n": 1})
            many = child.batch_trigger_and_wait(
                [{"n": 2}, BatchItem({"n": 3, "fail": True}, tags=["bad"]), {"n": 4}]
            )
            return {
                "one": one.unwrap(),
                "many": [r.output if r.ok else r.error["message"] for r in many],
            }

        @task(id="async-parent", retry=FAST)
        async def async_parent(payload: dict[str, Any]) -> Any:
            result = await child.trigger_and_wait({"n": 7})
            return result.output

        @task(id="blocked-child", retry=retry(max_attempts=1))
        def blocked_child(payload: dict[str, Any]) -> None:
            wait.for_(days=1)

        @task(id="waits-on-blocked", retry=FAST)
        def waits_on_blocked(payload: dict[str, Any]) -> None:
            blocked_child.trigger_and_wait({})

    return registry


async def test_trigger_and_wait_and_batches_resume_the_parent_with_results_in_order(
    engine: Engine,
) -> None:
    calls: Counter[str] = Counter()
    env_id, worker = await in_process_worker(engine, _family(calls))
    run_id = await trigger_run(engine, env_id, "parent")
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED", run.error
    assert run.output == {"one": 10, "many": [20, "child 3 failed", 40]}
    assert calls == Counter({"parent": 3, "child-1": 1, "child-2": 1, "child-3": 1, "child-4": 1})
    children, _, _ = await engine.runs.page(
        env_id, _filter(task_ids=["child"]), size=10, after=None, before=None
    )
    assert {c.parent_run_id for c in children} == {run_id}


async def test_async_trigger_and_wait(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    env_id, worker = await in_process_worker(engine, _family(calls))
    run_id = await trigger_run(engine, env_id, "async-parent")
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED" and run.output == 70


async def test_canceling_a_waiting_parent_cancels_its_children(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    env_id, worker = await in_process_worker(engine, _family(calls))
    run_id = await trigger_run(engine, env_id, "waits-on-blocked")
    await worker.run_until_idle()
    waiting = (await engine.waitpoints.waiting_for([run_id]))[run_id]
    assert [w["type"] for w in waiting] == ["RUN"]
    child_id = waiting[0]["runId"]
    assert (await run_record(engine, env_id, child_id)).status == "WAITING"
    await engine.runs.cancel(env_id, run_id)
    assert (await run_record(engine, env_id, run_id)).status == "CANCELED"
    assert (await run_record(engine, env_id, child_id)).status == "CANCELED"


def _filter(**kw: Any) -> Any:
    from triggerfish._domain.filters import RunFilter

    return RunFilter(**kw)


async def test_a_run_resumes_only_on_the_worker_version_it_started_on(
    engine: Engine, clock: ManualClock
) -> None:
    calls: Counter[str] = Counter()
    registry = _sleeper_registry(calls)
    env_id, old = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "sleeper")
    await old.run_until_idle()
    assert (await run_record(engine, env_id, run_id)).locked_version == "v1"
    new = await InProcessWorker(engine, registry, env_id, version="v2").register()
    clock.advance(minutes=5)
    await engine.maintenance.sweep()
    assert await new.run_until_idle() == []  # the newer worker does not take it
    assert (await run_record(engine, env_id, run_id)).status == "QUEUED"
    fresh = await trigger_run(engine, env_id, "napper")  # unlocked runs go to any version
    assert [o.run_id for o in await new.run_until_idle()] == [fresh]
    await old.run_until_idle()
    assert (await run_record(engine, env_id, run_id)).status == "COMPLETED"


async def test_a_child_finishing_as_the_parents_wait_times_out_gives_one_result(
    engine: Engine, clock: ManualClock
) -> None:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="quick-child", retry=retry(max_attempts=1))
        def quick_child(payload: dict[str, Any]) -> int:
            return 5

        @task(id="impatient", retry=FAST)
        def impatient(payload: dict[str, Any]) -> Any:
            result = quick_child.trigger_and_wait({}, timeout=60)
            return {"ok": result.ok, "output": result.output}

    env_id, worker = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "impatient")
    await worker.run_one()  # the parent suspends; the child is queued
    [waiting] = (await engine.waitpoints.waiting_for([run_id]))[run_id]
    assert waiting["type"] == "RUN" and waiting["timeoutAt"]
    clock.advance(seconds=61)
    child_done, timed_out = await asyncio.gather(worker.run_one(), engine.waitpoints.resolve_due())
    assert child_done is not None and child_done.output == 5
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED" and await _resumes(engine, env_id, run_id) == 1
    assert run.output == ({"ok": False, "output": None} if timed_out else {"ok": True, "output": 5})


async def test_a_stale_attempt_neither_waits_nor_makes_a_token(engine: Engine) -> None:
    env_id = (await engine.environments.by_slug("dev")).id
    ident = await bare_worker(engine, env_id)
    run_id = await trigger_run(engine, env_id, "t")
    assert len(await engine.dequeue.claim(ident, 1, start=1)) == 1  # executing, attempt 1
    with pytest.raises(StaleTransition):
        await engine.waitpoints.create_token_from_task(
            env_id,
            run_id,
            "attempt_someone_else",
            seq=0,
            name="token",
            req=TokenRequest(),
            url_for=lambda r: f"http://test/{r.id}",
        )
    tokens, _ = await engine.waitpoints.list_tokens(
        env_id, statuses=[], idempotency_key=None, tags=[], size=10, after=None
    )
    assert tokens == []  # rolled back with the refused journal entry
    with pytest.raises(StaleTransition):
        await engine.waitpoints.wait_from_task(
            env_id,
            run_id,
            "attempt_someone_else",
            seq=0,
            kind="wait.for",
            name="wait",
            spec=WaitSpec("duration", due_at=engine.res.clock.now() + 600),
        )
    assert (await engine.waitpoints.waiting_for([run_id]))[run_id] == []
    assert (await engine.journal.for_runs([run_id]))[run_id] == []
    assert (await run_record(engine, env_id, run_id)).status == "EXECUTING"
