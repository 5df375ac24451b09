"""A run's trace from the store: attempts, steps with their tries, waits, child runs,
batches and stored spans, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.support.in_process import in_process_worker, run_record, trigger_run
from triggerfish import Context, retry, step, task, wait
from triggerfish._domain.traces import (
    Span,
    attempt_span_id,
    derived_trace_id,
    parse_traceparent,
    run_span_id,
)
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.resources import ManualClock
from triggerfish.engine.traces import Trace
from triggerfish.errors import RunNotFound
from triggerfish.sdk._registry import TaskRegistry, collecting_into

FAST = retry(max_attempts=3, min_delay=0, max_delay=0, jitter=0)
NO_WAIT = retry(max_attempts=2, min_delay=0, max_delay=0, jitter=0)
CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _registry(calls: Counter[str]) -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="kid", retry=retry(max_attempts=1))
        def kid(payload: dict[str, Any]) -> int:
            return int(payload["n"]) * 2

        @task(id="traced", retry=FAST)
        def traced(payload: dict[str, Any], ctx: Context) -> Any:
            def flaky() -> str:
                calls["flaky"] += 1
                if calls["flaky"] == 1:
                    raise ValueError("first try fails")
                return "ok"

            step.run("flaky", flaky, name="Fetch the page", icon="globe", properties={"n": 1})
            wait.for_(minutes=5)
            return kid.trigger_and_wait({"n": 4}).unwrap()

    return registry


def _by_kind(t: Trace, kind: str) -> list[Span]:
    return [s for s in t.spans if s.kind == kind]


async def test_a_run_with_a_retried_step_a_wait_and_a_child(
    engine: Engine, clock: ManualClock
) -> None:
    calls: Counter[str] = Counter()
    env_id, worker = await in_process_worker(engine, _registry(calls))
    run_id = (
        await engine.enqueue.trigger(env_id, TriggerRequest("traced", {}, trace_context=CALLER))
    ).id
    await worker.run_until_idle()
    clock.advance(minutes=5)
    await engine.waitpoints.resolve_due()
    await worker.run_until_idle()
    assert (await run_record(engine, env_id, run_id)).status == "COMPLETED"

    t = await engine.traces.trace(env_id, run_id)
    caller = parse_traceparent(CALLER)
    assert caller is not None
    # the caller's span is the root: same trace, the run's span hangs off it
    assert t.trace_id == caller.trace_id and t.caller_span_id == caller.span_id
    root = t.spans[0]
    assert root.kind == "run" and root.span_id == t.root_span_id == run_span_id(run_id)
    assert root.parent_span_id == caller.span_id and root.status == "OK"
    ids = {s.span_id for s in t.spans}
    assert len(ids) == len(t.spans)
    assert all(s.parent_span_id in ids for s in t.spans[1:])
    assert {s.trace_id for s in t.spans} == {caller.trace_id}

    attempts = _by_kind(t, "attempt")
    detail = await engine.runs.retrieve(env_id, run_id)
    assert [a.span_id for a in attempts] == [attempt_span_id(a.id) for a in detail.attempts]
    assert all(a.parent_span_id == root.span_id for a in attempts)

    (flaky,) = _by_kind(t, "step")
    assert flaky.parent_span_id == attempts[0].span_id and flaky.status == "OK"
    assert flaky.attributes["triggerfish.step.key"] == "flaky"
    assert flaky.attributes["triggerfish.step.tries"] == 2
    assert [e.name for e in flaky.events] == ["STEP_RETRIED"]
    assert flaky.events[0].attributes["triggerfish.step.try"] == 1
    assert flaky.events[0].attributes["exception.message"] == "first try fails"
    assert flaky.name == "Fetch the page"
    assert flaky.attributes["triggerfish.step.icon"] == "globe"
    assert flaky.attributes["triggerfish.step.properties.n"] == 1

    (waited,) = _by_kind(t, "wait")
    assert waited.attributes["triggerfish.wait.type"] == "DURATION"
    assert waited.attributes["triggerfish.wait.until"].endswith("Z")
    assert waited.end_time is not None and waited.status == "OK"

    (awaited,) = _by_kind(t, "child")
    child_id = awaited.attributes["triggerfish.wait.child_run_id"]
    assert awaited.links[0].span_id == run_span_id(child_id)
    assert awaited.links[0].attributes["triggerfish.task"] == "kid"

    # the child's own trace joins the parent's: same trace, under the parent's run
    child = await engine.traces.trace(env_id, child_id)
    assert child.trace_id == caller.trace_id and child.caller_span_id == root.span_id


async def test_a_failed_step_and_failed_attempts_carry_their_errors(engine: Engine) -> None:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="doomed", retry=retry(max_attempts=2, min_delay=0, max_delay=0, jitter=0))
        def doomed(payload: Any) -> None:
            step.run(
                "never", _boom, retry=retry(max_attempts=2, min_delay=0, max_delay=0, jitter=0)
            )

    env_id, worker = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "doomed")
    await worker.run_until_idle()
    t = await engine.traces.trace(env_id, run_id)
    assert t.caller_span_id is None and t.trace_id == derived_trace_id(run_id)
    assert t.spans[0].status == "ERROR"
    attempts = _by_kind(t, "attempt")
    assert attempts and all(a.status == "ERROR" for a in attempts)
    assert all(a.events[-1].name == "exception" for a in attempts)
    (never,) = _by_kind(t, "step")
    assert never.status == "ERROR" and [e.name for e in never.events] == [
        "STEP_RETRIED",
        "exception",
    ]
    assert never.events[-1].attributes["exception.type"] == "RuntimeError"


def _boom() -> None:
    raise RuntimeError("boom")


async def test_stored_spans_join_the_trace_and_repeats_are_kept_once(engine: Engine) -> None:
    env_id, worker = await in_process_worker(engine, _registry(Counter()))
    run_id = await trigger_run(engine, env_id, "kid", {"n": 1})
    await worker.run_until_idle()
    detail = await engine.runs.retrieve(env_id, run_id)
    started = detail.run.created_at.timestamp()
    user = Span(
        span_id="1" * 16,
        parent_span_id="f" * 16,  # unknown: the task's attempt adopts it
        trace_id="ignored",
        name="query",
        kind="user",
        start_time=started,
        end_time=started + 0.01,
        attributes={"triggerfish.attempt.number": 1, "db.system": "postgresql"},
    )
    assert await engine.traces.record(env_id, run_id, [user]) == 1
    assert await engine.traces.record(env_id, run_id, [user]) == 0
    t = await engine.traces.trace(env_id, run_id)
    (stored,) = _by_kind(t, "user")
    assert stored.parent_span_id == attempt_span_id(detail.attempts[0].id)
    assert stored.trace_id == t.trace_id and stored.attributes["db.system"] == "postgresql"


async def test_an_unknown_run_or_another_environments_run_has_no_trace(engine: Engine) -> None:
    env_id, _worker = await in_process_worker(engine, _registry(Counter()))
    run_id = await trigger_run(engine, env_id, "kid", {"n": 1})
    with pytest.raises(RunNotFound):
        await engine.traces.trace(env_id, "run_nope")
    other = await engine.environments.by_slug("prod")
    with pytest.raises(RunNotFound):
        await engine.traces.trace(other.id, run_id)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "00-" + "0" * 32 + "-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
    ],
)
def test_a_malformed_traceparent_starts_a_new_trace(value: str | None) -> None:
    assert parse_traceparent(value) is None
