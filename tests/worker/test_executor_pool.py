"""The task-process pool on its own: reports, log order, durable calls and stops."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests import support
from triggerfish._domain.attempts import (
    AttemptOutcome,
    EnvironmentRef,
    ErrorInfo,
    Failed,
    Job,
    Succeeded,
)
from triggerfish.worker.discovery import ProjectConfig
from triggerfish.worker.executor import ExecutorPool

PROJECT = Path(__file__).resolve().parent.parent / "pool_project"


class Recorder:
    def __init__(self) -> None:
        self.logs: list[tuple[str, dict[str, Any]]] = []
        self.metadata: list[tuple[str, dict[str, Any]]] = []
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def on_log(self, attempt_id: str, record: dict[str, Any]) -> None:
        self.logs.append((attempt_id, record))

    def on_metadata(self, attempt_id: str, op: dict[str, Any]) -> None:
        self.metadata.append((attempt_id, op))

    async def on_call(self, job: Job, op: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((job.attempt_id, op, body))
        return {}


def job(task_id: str, payload: Any = None, **extra: Any) -> Job:
    fields: dict[str, Any] = {
        "run_id": f"run_{uuid.uuid4().hex[:8]}",
        "attempt_id": f"att_{uuid.uuid4().hex[:8]}",
        "attempt_number": 1,
        "task_id": task_id,
        "payload": payload if payload is not None else {},
        "tags": (),
        "environment": EnvironmentRef("env_1", "dev"),
        "machine": "small-1x",
        "max_duration": None,
    }
    fields.update(extra)
    return Job(**fields)


def error_of(outcome: AttemptOutcome) -> ErrorInfo:
    assert isinstance(outcome, Failed), outcome
    return outcome.error


def output_of(outcome: AttemptOutcome) -> Any:
    assert isinstance(outcome, Succeeded), outcome
    return outcome.output


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def pool(recorder: Recorder) -> AsyncIterator[ExecutorPool]:
    pool = ExecutorPool(
        ProjectConfig.load(PROJECT),
        1,
        recorder.on_log,
        on_call=recorder.on_call,
        on_metadata=recorder.on_metadata,
    )
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


async def test_executor_reports_output_logs_in_order_and_metadata(
    pool: ExecutorPool, recorder: Recorder
) -> None:
    first = job("chatty")
    outcome = await pool.run(first)
    assert outcome == Succeeded({"run": first.run_id, "attempt": 1, "machine": "small-1x"})
    assert [(a, r["message"], r["stream"]) for a, r in recorder.logs] == [
        (first.attempt_id, "out 1", "stdout"),
        (first.attempt_id, "log 2", "logger"),
        (first.attempt_id, "err 3", "stderr"),
        (first.attempt_id, "partial 4", "stdout"),
    ]
    assert recorder.logs[1][1]["fields"] == {"n": 2}
    assert recorder.metadata == [
        (first.attempt_id, {"type": "set", "key": "progress", "value": 0.5})
    ]
    second = job("chatty")
    await pool.run(second)
    assert [a for a, _ in recorder.logs[4:]] == [second.attempt_id] * 4


async def test_executor_relays_durable_calls(pool: ExecutorPool, recorder: Recorder) -> None:
    attempt = job("stepper", {"n": 21})
    assert await pool.run(attempt) == Succeeded(42)
    [(attempt_id, op, body)] = recorder.calls
    assert (attempt_id, op, body["name"], body["result"]) == (
        attempt.attempt_id,
        "journal",
        "double",
        42,
    )
    replay = job("stepper", {"n": 1}, journal=[dict(body)])
    assert await pool.run(replay) == Succeeded(42)
    assert len(recorder.calls) == 1


async def test_executor_reports_user_errors_and_keeps_the_process(pool: ExecutorPool) -> None:
    before = output_of(await pool.run(job("pid")))
    outcome = await pool.run(job("fails"))
    assert isinstance(outcome, Failed) and outcome.decision is None
    assert (outcome.error.name, outcome.error.kind) == ("ValueError", "USER")
    assert "ValueError" in outcome.error.stack_trace
    assert output_of(await pool.run(job("pid"))) == before


async def test_executor_stops_an_attempt_past_max_duration(pool: ExecutorPool) -> None:
    outcome = await pool.run(job("sleeper", {"seconds": 5}, max_duration=0.3))
    assert error_of(outcome).kind == "TIMEOUT"
    assert error_of(outcome).name == "MaxDurationExceededError"
    assert await pool.run(job("sleeper", {"seconds": 0}, max_duration=0.3)) == Succeeded("woke")


async def test_executor_applies_the_tasks_max_duration_to_runs_without_their_own(
    recorder: Recorder,
) -> None:
    pool = ExecutorPool(
        ProjectConfig.load(PROJECT), 1, recorder.on_log, max_durations={"sleeper": 0.3}
    )
    await pool.start()
    try:
        error = error_of(await pool.run(job("sleeper", {"seconds": 5})))
        assert error.kind == "TIMEOUT" and "max_duration=0.3s" in error.message
        # the run's own limit wins over the task's
        assert await pool.run(job("sleeper", {"seconds": 0.5}, max_duration=5)) == Succeeded("woke")
    finally:
        await pool.close()


async def test_executor_stops_an_attempt_over_its_memory_limit(pool: ExecutorPool) -> None:
    outcome = await pool.run(job("hog", {"mb": 600}, machine="micro"))
    assert error_of(outcome).kind == "OOM"
    assert isinstance(await pool.run(job("pid")), Succeeded)


async def test_executor_cancel_stops_the_attempt(pool: ExecutorPool) -> None:
    attempt = job("sleeper", {"seconds": 5})
    running = asyncio.create_task(pool.run(attempt))
    # the pool finds the attempt to stop once a task process holds it
    await support.wait_for_async(lambda: pool.cancel(attempt.attempt_id), 10, what="the attempt")
    outcome = await asyncio.wait_for(running, 5)
    assert error_of(outcome).kind == "CANCELED"
    assert await pool.cancel("att_unknown") is False


async def test_executor_reports_a_crash_and_replaces_the_process(pool: ExecutorPool) -> None:
    before = output_of(await pool.run(job("pid")))
    outcome = await pool.run(job("crasher"))
    assert error_of(outcome).kind == "CRASH"
    assert "exited with code 7" in error_of(outcome).message
    after = output_of(await asyncio.wait_for(pool.run(job("pid")), 30))
    assert after != before


async def test_executor_gives_the_error_hook_a_context(pool: ExecutorPool) -> None:
    outcome = await pool.run(job("hooked", attempt_number=3))
    assert outcome == Succeeded({"skipped": "'missing'", "attempt": 3})


async def test_executor_rejects_output_that_is_not_json(pool: ExecutorPool) -> None:
    outcome = await pool.run(job("not-a-number"))
    assert error_of(outcome).name == "OutputNotSerializable"


async def test_a_killed_idle_process_is_replaced_and_the_next_attempt_runs(
    pool: ExecutorPool,
) -> None:
    [idle] = pool.child_pids
    os.kill(idle, signal.SIGKILL)
    # handed out at once: the dead process is skipped, the attempt waits for its replacement
    outcome = await asyncio.wait_for(pool.run(job("pid")), 30)
    assert output_of(outcome) != idle


async def test_a_dead_idle_process_is_replaced_before_any_work_arrives(
    pool: ExecutorPool,
) -> None:
    [idle] = pool.child_pids
    os.kill(idle, signal.SIGKILL)
    deadline = asyncio.get_running_loop().time() + 30
    while pool.child_pids in ([idle], []):
        assert asyncio.get_running_loop().time() < deadline, "no replacement process"
        await asyncio.sleep(0.05)
    [fresh] = pool.child_pids
    assert fresh != idle
    assert output_of(await asyncio.wait_for(pool.run(job("pid")), 30)) == fresh
