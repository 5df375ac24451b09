"""The task-process pool on its own: reports, log order, durable calls and stops."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests import support
from triggerfish.worker.discovery import ProjectConfig
from triggerfish.worker.executor import ExecutorPool, Job

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
        "tags": [],
        "environment": {"id": "env_1", "slug": "dev"},
        "machine": "small-1x",
        "max_duration": None,
    }
    fields.update(extra)
    return Job(**fields)


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
    report = await pool.run(first)
    assert report == {
        "ok": True,
        "output": {"run": first.run_id, "attempt": 1, "machine": "small-1x"},
    }
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
    assert await pool.run(attempt) == {"ok": True, "output": 42}
    [(attempt_id, op, body)] = recorder.calls
    assert (attempt_id, op, body["name"], body["result"]) == (
        attempt.attempt_id,
        "journal",
        "double",
        42,
    )
    replay = job("stepper", {"n": 1}, journal=[dict(body)])
    assert await pool.run(replay) == {"ok": True, "output": 42}
    assert len(recorder.calls) == 1


async def test_executor_reports_user_errors_and_keeps_the_process(pool: ExecutorPool) -> None:
    before = await pool.run(job("pid"))
    report = await pool.run(job("fails"))
    assert report["ok"] is False
    assert report["error"]["name"] == "ValueError"
    assert report["error"]["kind"] == "USER"
    assert (await pool.run(job("pid")))["output"] == before["output"]


async def test_executor_stops_an_attempt_past_max_duration(pool: ExecutorPool) -> None:
    report = await pool.run(job("sleeper", {"seconds": 5}, max_duration=0.3))
    assert report["error"]["kind"] == "TIMEOUT"
    assert (await pool.run(job("sleeper", {"seconds": 0}, max_duration=0.3)))["output"] == "woke"


async def test_executor_stops_an_attempt_over_its_memory_limit(pool: ExecutorPool) -> None:
    report = await pool.run(job("hog", {"mb": 600}, machine="micro"))
    assert report["error"]["kind"] == "OOM"
    assert (await pool.run(job("pid")))["ok"] is True


async def test_executor_cancel_stops_the_attempt(pool: ExecutorPool) -> None:
    attempt = job("sleeper", {"seconds": 5})
    running = asyncio.create_task(pool.run(attempt))
    # the pool finds the attempt to stop once a task process holds it
    await support.wait_for_async(lambda: pool.cancel(attempt.attempt_id), 10, what="the attempt")
    report = await asyncio.wait_for(running, 5)
    assert report["error"]["kind"] == "CANCELED"
    assert await pool.cancel("att_unknown") is False


async def test_executor_reports_a_crash_and_replaces_the_process(pool: ExecutorPool) -> None:
    before = await pool.run(job("pid"))
    report = await pool.run(job("crasher"))
    assert report["error"]["kind"] == "CRASH"
    assert "exited with code 7" in report["error"]["message"]
    after = await asyncio.wait_for(pool.run(job("pid")), 30)
    assert after["ok"] is True
    assert after["output"] != before["output"]


async def test_executor_gives_the_error_hook_a_context(pool: ExecutorPool) -> None:
    report = await pool.run(job("hooked", attempt_number=3))
    assert report == {"ok": True, "output": {"skipped": "'missing'", "attempt": 3}}


async def test_executor_rejects_output_that_is_not_json(pool: ExecutorPool) -> None:
    report = await pool.run(job("not-a-number"))
    assert report["error"]["name"] == "OutputNotSerializable"
