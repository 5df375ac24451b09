"""Lifecycle hooks and middleware: their order, what a raising hook does, and which
hooks run again when a run resumes or retries (replay of its journal)."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.in_process import in_process_worker, run_record, trigger_run
from triggerfish import hooks, retry, step, task, wait
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock
from triggerfish.errors import InvalidTaskOptions
from triggerfish.sdk._registry import TaskRegistry, collecting_into

FAST = retry(max_attempts=2, min_delay=0, max_delay=0, jitter=0)
current_user: contextvars.ContextVar[str] = contextvars.ContextVar("current_user", default="-")


@pytest.fixture(autouse=True)
def no_global_hooks() -> Iterator[None]:
    hooks.clear()
    yield
    hooks.clear()


def _recorder(seen: list[str]) -> dict[str, Any]:
    def rec(name: str) -> Callable[..., None]:
        def hook(payload: Any, *rest: Any) -> None:
            seen.append(name)

        return hook

    def middleware(payload: Any, ctx: Any, next: Callable[[], Any]) -> Any:
        seen.append("middleware:before")
        token = current_user.set("ada")
        try:
            return next()
        finally:
            current_user.reset(token)
            seen.append("middleware:after")

    names = ["init", "cleanup", "on_start", "on_success", "on_failure", "on_complete"]
    return {
        **{n: rec(n) for n in names},
        "on_wait": rec("on_wait"),
        "on_resume": rec("on_resume"),
        "middleware": middleware,
    }


async def test_order_around_a_successful_attempt_with_global_hooks(engine: Engine) -> None:
    seen: list[str] = []

    @hooks.init
    def global_init(payload: Any, ctx: Any) -> None:
        seen.append("global:init")

    @hooks.cleanup
    def global_cleanup(payload: Any, ctx: Any) -> None:
        seen.append("global:cleanup")

    @hooks.on_complete
    async def global_complete(payload: Any, outcome: Any, ctx: Any) -> None:
        seen.append(f"global:on_complete:{outcome.ok}:{outcome.output}")

    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="ok", retry=FAST, **_recorder(seen))
        def ok(payload: Any) -> str:
            seen.append(f"body:{current_user.get()}")
            return "done"

    env_id, worker = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "ok")
    await worker.run_until_idle()
    assert (await run_record(engine, env_id, run_id)).status == "COMPLETED"
    assert seen == [
        "middleware:before",
        "global:init",
        "init",
        "on_start",
        "body:ada",
        "on_success",
        "global:on_complete:True:done",
        "on_complete",
        "cleanup",
        "global:cleanup",
        "middleware:after",
    ]


async def test_on_failure_runs_after_the_final_attempt_only(engine: Engine) -> None:
    seen: list[str] = []
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="fails", retry=FAST, **_recorder(seen))
        def fails(payload: Any) -> None:
            seen.append("body")
            raise ValueError("nope")

    env_id, worker = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "fails")
    await worker.run_until_idle()
    assert (await run_record(engine, env_id, run_id)).status == "FAILED"
    first, second = _attempts(seen)
    assert first == ["init", "on_start", "body", "cleanup"]
    assert second == ["init", "body", "on_failure", "on_complete", "cleanup"]


def _attempts(seen: list[str]) -> list[list[str]]:
    """``seen`` split per attempt (at each middleware), middleware entries dropped."""
    out: list[list[str]] = []
    for name in seen:
        if name == "middleware:before":
            out.append([])
        elif not name.startswith("middleware"):
            out[-1].append(name)
    return out


async def test_a_raising_hook(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def broken_init(payload: Any, ctx: Any) -> None:
        raise RuntimeError("no database")

    def broken_success(payload: Any, output: Any, ctx: Any) -> None:
        raise RuntimeError("notifier down")

    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="init-fails", retry=FAST, init=broken_init, cleanup=lambda p, c: seen.append("c"))
        def init_fails(payload: Any) -> None:
            seen.append("body")

        @task(id="success-hook-fails", retry=FAST, on_success=broken_success)
        def success_hook_fails(payload: Any) -> int:
            return 7

    env_id, worker = await in_process_worker(engine, registry)
    failing = await trigger_run(engine, env_id, "init-fails")
    ok = await trigger_run(engine, env_id, "success-hook-fails")
    await worker.run_until_idle()
    # init failing fails the attempt (retried per policy); the body never runs
    run = await run_record(engine, env_id, failing)
    assert run.status == "FAILED" and "no database" in run.error["message"]
    assert seen == ["c", "c"]
    # on_success failing is logged; the run's outcome stands
    done = await run_record(engine, env_id, ok)
    assert done.status == "COMPLETED" and done.output == 7
    # (a worker stores the line in the run's log; in process it goes to logging)
    assert any("notifier down" in r.getMessage() for r in caplog.records)


async def test_on_start_once_on_wait_and_on_resume_around_a_suspension(
    engine: Engine, clock: ManualClock
) -> None:
    seen: list[str] = []
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="sleeps", retry=FAST, **_recorder(seen))
        def sleeps(payload: Any) -> str:
            step.run("before", _mark, seen, "step:before")
            wait.for_(hours=1)
            step.run("after", _mark, seen, "step:after")
            return "woke"

    env_id, worker = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "sleeps")
    await worker.run_until_idle()
    clock.advance(hours=1)
    await engine.waitpoints.resolve_due()
    await worker.run_until_idle()
    assert (await run_record(engine, env_id, run_id)).status == "COMPLETED"
    first, second = _attempts(seen)
    assert first == ["init", "on_start", "step:before", "on_wait", "cleanup"]
    # the replay skips the journaled step and on_start; the resume is announced
    assert second == [
        "init",
        "on_resume",
        "step:after",
        "on_success",
        "on_complete",
        "cleanup",
    ]


def _mark(seen: list[str], name: str) -> int:
    seen.append(name)
    return len(seen)


def test_a_hook_that_is_not_a_function_is_refused_when_declared() -> None:
    with pytest.raises(InvalidTaskOptions, match="on_start"):

        @task(id="bad-hook", on_start=[42])  # type: ignore[list-item]
        def bad(payload: Any) -> None: ...
