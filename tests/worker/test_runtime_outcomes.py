"""How an attempt ends, as the task process's runtime tells the worker: one typed outcome.

``run_attempt`` runs here in the test's own process, with a stand-in for the
worker's relay, so each outcome is checked without a task process or a server.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from triggerfish import AbortTaskRunError, ErrorDecision, step, task, wait
from triggerfish._domain.attempts import (
    Abandoned,
    AttemptOutcome,
    Decision,
    DirectLink,
    EnvironmentRef,
    Failed,
    Job,
    Succeeded,
    Suspended,
)
from triggerfish.sdk._registry import TaskRegistry, collecting_into
from triggerfish.sdk._runtime import run_attempt
from triggerfish.worker._pipe import pack_job, pack_outcome, unpack_job, unpack_outcome


def _registry() -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="ok")
        def ok(payload: dict[str, Any]) -> dict[str, Any]:
            return {"got": payload}

        @task(id="fails")
        def fails(payload: Any) -> None:
            raise ValueError("bad input")

        @task(id="aborts")
        def aborts(payload: Any) -> None:
            raise AbortTaskRunError("give up")

        @task(id="exits")
        def exits(payload: Any) -> None:
            sys.exit(3)

        def decide(payload: Any, error: BaseException, ctx: Any) -> ErrorDecision | None:
            if payload == "raise":
                raise RuntimeError("hook broke")
            if payload == "skip-bad":
                return ErrorDecision.skip(object())
            return {"retry": ErrorDecision.retry(delay=7), "fail": ErrorDecision.fail()}[payload]

        @task(id="hooked", catch_error=decide)
        def hooked(payload: str) -> None:
            raise ValueError(payload)

        @task(id="waits")
        def waits(payload: Any) -> None:
            wait.for_(days=1)

        @task(id="steps")
        def steps(payload: Any) -> Any:
            return step.run("one", lambda: 1)

    return registry


def _job(task_id: str, payload: Any = None) -> Job:
    return Job(
        run_id="run_1",
        attempt_id="att_1",
        attempt_number=1,
        task_id=task_id,
        payload=payload,
        tags=(),
        environment=EnvironmentRef("env_1", "dev"),
        machine="small-1x",
        max_duration=None,
    )


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def _run(
    loop: asyncio.AbstractEventLoop, task_id: str, payload: Any = None, **answers: Any
) -> AttemptOutcome:
    """Run ``task_id``; the relay answers each durable call with ``answers[op]``."""
    return run_attempt(_registry(), _job(task_id, payload), loop, lambda op, body: answers[op])


def _failed(outcome: AttemptOutcome) -> Failed:
    assert isinstance(outcome, Failed), outcome
    return outcome


def test_a_returned_value_succeeds(loop: asyncio.AbstractEventLoop) -> None:
    assert _run(loop, "ok", {"a": 1}) == Succeeded({"got": {"a": 1}})


def test_an_exception_fails_with_its_error_and_no_decision(
    loop: asyncio.AbstractEventLoop,
) -> None:
    failed = _failed(_run(loop, "fails"))
    assert (failed.error.name, failed.error.message, failed.error.kind) == (
        "ValueError",
        "bad input",
        "USER",
    )
    assert "raise ValueError" in failed.error.stack_trace and failed.decision is None
    assert _failed(_run(loop, "aborts")).error.kind == "ABORT"
    assert _failed(_run(loop, "exits")).error.message == "task called sys.exit(3)"


def test_the_error_hook_decides_what_follows(loop: asyncio.AbstractEventLoop) -> None:
    assert _failed(_run(loop, "hooked", "retry")).decision == Decision("retry", 7)
    assert _failed(_run(loop, "hooked", "fail")).decision == Decision("fail", None)
    broken = _failed(_run(loop, "hooked", "raise"))
    assert broken.decision is None and "catch_error hook raised" in broken.error.message
    bad_skip = _failed(_run(loop, "hooked", "skip-bad"))
    assert bad_skip.decision is None and "skip output rejected" in bad_skip.error.message


def test_a_parked_wait_suspends_and_a_refused_record_abandons(
    loop: asyncio.AbstractEventLoop,
) -> None:
    assert _run(loop, "waits", wait={"status": "suspended"}) == Suspended()
    refused = {"_status": 409, "error": "attempt att_1 is no longer current"}
    assert _run(loop, "steps", journal=refused) == Abandoned("attempt att_1 is no longer current")


def test_jobs_and_outcomes_cross_the_pipe_unchanged(loop: asyncio.AbstractEventLoop) -> None:
    job = Job(
        run_id="run_1",
        attempt_id="att_2",
        attempt_number=3,
        task_id="ok",
        payload={"a": [1, 2]},
        tags=("x", "y"),
        environment=EnvironmentRef("env_1", "prod"),
        machine="large-1x",
        max_duration=12.5,
        journal=[{"seq": 0, "kind": "step", "name": "s", "status": "OK", "result": 1}],
        metadata={"progress": 0.5},
        direct=DirectLink("ws://127.0.0.1:1/worker/v1/socket", 4096),
        credential="tfa_credential",
        api_url="http://127.0.0.1:1",
    )
    assert unpack_job(_through_pipe(pack_job(job))) == job
    assert unpack_job(_through_pipe(pack_job(_job("ok")))) == _job("ok")
    outcomes = [
        _run(loop, "ok", {"a": 1}),
        _run(loop, "hooked", "retry"),
        _run(loop, "fails"),
        Suspended(),
        Abandoned("gone"),
    ]
    for outcome in outcomes:
        assert unpack_outcome(_through_pipe(pack_outcome(outcome))) == outcome


def _through_pipe(packed: tuple[Any, ...]) -> Any:
    return pickle.loads(pickle.dumps(packed, pickle.HIGHEST_PROTOCOL))
