"""Trigger → worker → result through real server and worker processes, on both stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.support import Stack
from triggerfish import ApiError, Run


def run_to_end(stack: Stack, task: str, payload: object, timeout: float = 60, **opts: Any) -> Run:
    handle = stack.client.tasks.trigger(task, payload, **opts)
    return stack.client.runs.poll(handle.id, timeout=timeout, interval=0.05)


def test_trigger_to_completion_with_logs(shared_stack: Stack) -> None:
    run = run_to_end(shared_stack, "hello", {"who": "Ada"}, tags=["e2e"])
    assert run.status == "COMPLETED"
    assert run.output == {
        "message": "Hello Ada",
        "attempt": 1,
        "env": "dev",
        "machine": "small-1x",
        "tags": ["e2e"],
    }
    assert [a.status for a in run.attempts] == ["COMPLETED"]
    assert run.started_at and run.finished_at and run.finished_at >= run.started_at
    lines = support.wait_for(
        lambda: (ls := shared_stack.client.runs.logs(run.id)) and len(ls) >= 3 and ls,
        what="log lines",
    )
    by_stream = {line.stream: line for line in lines}
    assert by_stream["stdout"].message == f"printing to stdout {run.id}"
    assert by_stream["stderr"].message == "printing to stderr"
    assert by_stream["stderr"].level == "ERROR"
    assert by_stream["logger"].message == "greeting"
    assert by_stream["logger"].fields == {"who": "Ada", "attempt": 1}
    assert all(line.attempt == 1 and line.ts > 0 for line in lines)


def test_sync_task_and_trigger_by_id(shared_stack: Stack) -> None:
    run = run_to_end(shared_stack, "sync-hello", {"who": "Bo"})
    assert run.output == "hi Bo"


def test_retry_then_succeed(shared_stack: Stack) -> None:
    run = run_to_end(shared_stack, "flaky", {"succeed_on": 3})
    assert run.status == "COMPLETED" and run.output == {"attempt": 3}
    assert [a.status for a in run.attempts] == ["FAILED", "FAILED", "COMPLETED"]
    assert run.attempts[0].error and "attempt 1 failed" in run.attempts[0].error.message


def test_retries_run_out(shared_stack: Stack) -> None:
    run = run_to_end(shared_stack, "always-fails", {})
    assert run.status == "FAILED" and run.attempt_count == 2
    assert run.error and run.error.name == "ValueError"
    assert run.error.message == "this never works"
    assert run.error.stack_trace and "raise ValueError" in run.error.stack_trace


def test_abort_fails_without_retrying(shared_stack: Stack) -> None:
    run = run_to_end(shared_stack, "aborts", {})
    assert run.status == "FAILED" and run.attempt_count == 1
    assert run.error and run.error.name == "AbortTaskRunError"


def test_catch_error_can_skip_or_fail(shared_stack: Stack) -> None:
    skipped = run_to_end(shared_stack, "hooked", {"raise": "key"})
    assert skipped.status == "COMPLETED" and skipped.output == {"skipped": "'missing'"}
    failed = run_to_end(shared_stack, "hooked", {"raise": "perm"})
    assert failed.status == "FAILED" and failed.attempt_count == 1


def test_max_attempts_override_at_trigger(shared_stack: Stack) -> None:
    run = run_to_end(shared_stack, "flaky", {"succeed_on": 3}, max_attempts=1)
    assert run.status == "FAILED" and run.attempt_count == 1


def test_pydantic_payload_validated_at_trigger(shared_stack: Stack) -> None:
    before = len(shared_stack.client.runs.list(task="typed", limit=100).data)
    with pytest.raises(ApiError) as bad:
        shared_stack.client.tasks.trigger("typed", {"email": "a@b", "plan": "gold"})
    assert bad.value.status == 422 and "payload.plan" in str(bad.value)
    with pytest.raises(ApiError) as missing:
        shared_stack.client.tasks.trigger("typed", {"plan": 1})
    assert missing.value.status == 422 and "payload.email" in str(missing.value)
    assert len(shared_stack.client.runs.list(task="typed", limit=100).data) == before
    run = run_to_end(shared_stack, "typed", {"email": "a@b", "plan": 2})
    assert run.output == {"email": "a@b", "plan_type": "Signup"}


@pytest.mark.parametrize(
    ("task", "status", "error_name", "needle"),
    [
        ("exits", "FAILED", "SystemExit", "sys.exit(3)"),
        ("segfaults", "CRASHED", "TaskProcessCrashed", "SIGABRT"),
        ("too-slow", "TIMED_OUT", "MaxDurationExceededError", "max_duration=1"),
        ("memory-hog", "FAILED", "OutOfMemoryError", "'micro' (256 MiB"),
        ("not-json", "FAILED", "OutputNotSerializable", "not JSON-serialisable"),
    ],
)
def test_bad_user_code_fails_only_its_attempt(
    shared_stack: Stack, task: str, status: str, error_name: str, needle: str
) -> None:
    run = run_to_end(shared_stack, task, {})
    assert run.status == status
    assert run.error and run.error.name == error_name and needle in run.error.message
    assert run.attempt_count == 1  # TIMEOUT is never retried; the others have 1 attempt
    after = run_to_end(shared_stack, "hello", {"who": "still here"})
    assert after.status == "COMPLETED"


def test_attempts_run_concurrently(shared_stack: Stack, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    handles = [
        shared_stack.client.tasks.trigger("blocks", {"marks": str(marks / str(i))})
        for i in range(3)
    ]
    support.wait_for(
        lambda: all((marks / str(i) / "started-1").exists() for i in range(3)),
        timeout=30,
        what="three attempts running at once",
    )
    for i in range(3):
        (marks / str(i) / "go").touch()
    runs = [shared_stack.client.runs.poll(h.id, timeout=30, interval=0.05) for h in handles]
    assert {r.status for r in runs} == {"COMPLETED"}
    assert len({r.output["pid"] for r in runs}) == 3  # three different task processes


def test_cancel_stops_an_executing_run(shared_stack: Stack, tmp_path: Path) -> None:
    marks = tmp_path / "cancel"
    handle = shared_stack.client.tasks.trigger("blocks", {"marks": str(marks), "max_wait": 60})
    support.wait_for(lambda: (marks / "started-1").exists(), what="run to start")
    shared_stack.client.runs.cancel(handle.id)
    run = shared_stack.client.runs.retrieve(handle.id)
    assert run.status == "CANCELED"
    # the child process is stopped, so the task never reaches its end
    support.wait_for(
        lambda: run_to_end(shared_stack, "hello", {}).status == "COMPLETED", what="worker serves"
    )
    assert not (marks / "finished").exists()
    assert shared_stack.client.runs.retrieve(handle.id).status == "CANCELED"


def test_secrets_never_reach_the_logs(shared_stack: Stack) -> None:
    run = run_to_end(shared_stack, "leaks-secret", {"secret": shared_stack.key})
    lines = support.wait_for(lambda: shared_stack.client.runs.logs(run.id), what="logs")
    text = " ".join(f"{line.message} {line.fields}" for line in lines)
    assert shared_stack.key not in text and "[redacted]" in text


def test_machine_override_at_trigger_raises_the_memory_limit(shared_stack: Stack) -> None:
    run = run_to_end(shared_stack, "memory-hog", {}, machine="small-2x")
    assert run.status == "COMPLETED" and run.machine == "small-2x"


def test_task_objects_trigger_sync_and_async(
    shared_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``task.trigger`` / ``trigger_async`` and the module-level ``triggerfish.runs``."""
    import asyncio

    import triggerfish
    from triggerfish.sdk import _client
    from triggerfish.sdk._registry import TaskRegistry, collecting_into

    monkeypatch.setenv("TRIGGERFISH_API_URL", shared_stack.server.url)
    monkeypatch.setenv("TRIGGERFISH_SECRET_KEY", shared_stack.key)
    monkeypatch.setattr(_client, "_default", None)
    with collecting_into(TaskRegistry()):

        @triggerfish.task(id="hello")
        # the app's view of the worker's task
        async def hello(payload: dict[str, Any]) -> dict[str, Any]:
            raise AssertionError("runs on the worker, not here")

    handle = hello.trigger({"who": "sync"})
    assert handle.id.startswith("run_")
    assert triggerfish.runs.poll(handle.id, timeout=30).output["message"] == "Hello sync"

    async def in_an_async_app() -> object:
        h = await hello.trigger_async({"who": "async"})
        return (await triggerfish.runs.poll_async(h.id, timeout=30)).output

    assert asyncio.run(in_an_async_app())["message"] == "Hello async"  # type: ignore[index]
    assert triggerfish.runs.retrieve(handle.id).status == "COMPLETED"
