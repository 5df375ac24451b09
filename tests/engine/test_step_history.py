"""Steps: their own try number, retry history kept after success, display fields
(the retry demo of SCENARIOS F), on the real store with the real replay runtime."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from tests.support.in_process import in_process_worker, run_record, trigger_run
from triggerfish import Context, retry, step, task
from triggerfish.api.app import create_app
from triggerfish.api.serialize import journal_entry
from triggerfish.engine import Engine
from triggerfish.sdk._registry import TaskRegistry, collecting_into
from triggerfish.store import journal as journal_store

FAST = retry(max_attempts=3, min_delay=0, max_delay=0, jitter=0)
FAILS_UNTIL = {"high": 3, "medium": 2, "low": 1}


def _registry(seen: list[tuple[str, int, int]], calls: Counter[str]) -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="retry-demo", retry=FAST)
        def retry_demo(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
            def process() -> str:
                seen.append((payload["message"], ctx.step.attempt, ctx.attempt.number))
                if payload["shouldFail"] and ctx.step.attempt < FAILS_UNTIL[payload["message"]]:
                    raise RuntimeError(f"try {ctx.step.attempt} of {payload['message']} fails")
                return f"processed {payload['message']}"

            data = step.run(
                "process-incoming-data",
                process,
                name="Process incoming data",
                icon="cog",
                properties={"priority": payload["message"]},
                retry=FAST,
            )
            step.run("send-confirmation", lambda: calls.update(["confirmation"]))
            return {"data": data}

    return registry


async def _journal(engine: Engine, run_id: str) -> list[Any]:
    async with engine.res.db.read() as conn:
        return await journal_store.list_entries(conn, run_id)


@pytest.mark.parametrize("message", ["high", "low"])
async def test_the_retry_demo_runs_as_written_and_keeps_its_history(
    engine: Engine, message: str
) -> None:
    seen: list[tuple[str, int, int]] = []
    calls: Counter[str] = Counter()
    env_id, worker = await in_process_worker(engine, _registry(seen, calls))
    payload = {"message": message, "shouldFail": True}
    run_id = await trigger_run(engine, env_id, "retry-demo", payload)
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED" and run.output == {"data": f"processed {message}"}
    tries = FAILS_UNTIL[message]
    # the step's own try number counts up; the run's attempt stays the first
    assert seen == [(message, n, 1) for n in range(1, tries + 1)]
    assert calls == Counter(confirmation=1)
    process, confirm = await _journal(engine, run_id)
    assert process.status == "OK" and process.failures == tries - 1
    assert process.display == {
        "name": "Process incoming data",
        "icon": "cog",
        "properties": {"priority": message},
    }
    history = process.tries or []
    assert [t["number"] for t in history] == list(range(1, tries))
    assert [t["error"]["message"] for t in history] == [
        f"try {n} of {message} fails" for n in range(1, tries)
    ]
    assert all(t["at"] >= process.started_at.timestamp() - 5 for t in history)
    assert confirm.display is None and confirm.tries is None
    shown = journal_entry(process)
    assert shown["display"]["name"] == "Process incoming data"
    assert [t["number"] for t in shown.get("tries", [])] == list(range(1, tries))
    assert all(t["at"].endswith("Z") for t in shown.get("tries", []))


async def test_a_step_that_uses_up_its_tries_keeps_each_of_them(engine: Engine) -> None:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="always-fails", retry=retry(max_attempts=1))
        def always_fails(payload: None, ctx: Context) -> None:
            def boom() -> None:
                raise ValueError(f"bad try {ctx.step.attempt}")

            step.run("boom", boom, retry=FAST)

    env_id, worker = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "always-fails", None)
    await worker.run_until_idle()
    assert (await run_record(engine, env_id, run_id)).status == "FAILED"
    [entry] = await _journal(engine, run_id)
    assert entry.status == "ERROR" and entry.failures == 3
    assert [t["error"]["message"] for t in entry.tries or []] == [
        "bad try 1",
        "bad try 2",
        "bad try 3",
    ]


async def test_runs_list_rows_carry_the_attempt_count(engine: Engine) -> None:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="fails-once", retry=FAST)
        def fails_once(payload: None, ctx: Context) -> int:
            if ctx.attempt.number == 1:
                raise RuntimeError("first attempt fails")
            return ctx.attempt.number

    env_id, worker = await in_process_worker(engine, registry)
    run_id = await trigger_run(engine, env_id, "fails-once", None)
    await worker.run_until_idle()
    key, _ = await engine.environments.create_key("dev", "test")
    app = create_app(engine, manage_engine=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": f"Bearer {key}"},
    ) as c:
        [row] = (await c.get("/api/v1/runs")).json()["data"]
    assert row["id"] == run_id and row["status"] == "COMPLETED" and row["attemptCount"] == 2
