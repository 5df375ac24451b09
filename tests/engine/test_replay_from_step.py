"""Replay from a step (issue 17, defects 6 and 10): one transaction, a checked
``fromStep``, and tokens completed before the step asked again unless reused."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.support.in_process import in_process_worker, run_record, trigger_run
from triggerfish import retry, step, task, wait
from triggerfish.engine import Engine
from triggerfish.errors import UserError
from triggerfish.sdk._registry import TaskRegistry, collecting_into
from triggerfish.store import journal as journal_store
from triggerfish.store.tables import runs

FAST = retry(max_attempts=3, min_delay=0, max_delay=0, jitter=0)


def _registry(calls: Counter[str]) -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="approve-then-ship", retry=FAST)
        def approve_then_ship(payload: Any) -> Any:
            draft = step.run("draft", lambda: calls.update(["draft"]) or "d1")
            token = wait.create_token(tags=["approval"])
            approval = wait.for_token(token)
            shipped = step.run("ship", lambda: calls.update(["ship"]) or f"shipped {draft}")
            return {"approved": approval.output, "shipped": shipped}

    return registry


async def _approved_run(engine: Engine, calls: Counter[str]) -> tuple[str, Any, str, str]:
    env_id, worker = await in_process_worker(engine, _registry(calls))
    run_id = await trigger_run(engine, env_id, "approve-then-ship")
    await worker.run_until_idle()
    steps = (await engine.runs.retrieve(env_id, run_id)).steps
    token_id = str(steps[1].result["id"])
    await engine.waitpoints.complete_token(env_id, token_id, {"by": "alice"})
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED", run.error
    return env_id, worker, run_id, token_id


async def _run_count(engine: Engine, env_id: str) -> int:
    async with engine.res.db.read() as conn:
        stmt = select(func.count()).select_from(runs).where(runs.c.environment_id == env_id)
        return int((await conn.execute(stmt)).scalar() or 0)


async def test_a_replay_from_a_step_asks_for_a_completed_token_again(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    env_id, worker, run_id, token_id = await _approved_run(engine, calls)
    # step 4 is "ship": the draft, the token and the approval are before it
    again = await engine.replays.replay(env_id, run_id, from_step=4)
    await worker.run_until_idle()
    run = await run_record(engine, env_id, again)
    assert run.status == "WAITING"  # the old approval is not applied again
    steps = (await engine.runs.retrieve(env_id, again)).steps
    fresh = str(steps[1].result["id"])
    assert fresh != token_id and fresh in steps[1].result["url"]
    assert (await engine.waitpoints.get_token(env_id, fresh)).status == "PENDING"
    await engine.waitpoints.complete_token(env_id, fresh, {"by": "bob"})
    await worker.run_until_idle()
    run = await run_record(engine, env_id, again)
    assert run.output == {"approved": {"by": "bob"}, "shipped": "shipped d1"}
    assert calls == Counter(draft=1, ship=2)  # the draft step was reused


async def test_a_replay_may_reuse_completed_tokens(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    env_id, worker, run_id, _ = await _approved_run(engine, calls)
    again = await engine.replays.replay(env_id, run_id, from_step=4, reuse_tokens=True)
    await worker.run_until_idle()
    run = await run_record(engine, env_id, again)
    assert run.output == {"approved": {"by": "alice"}, "shipped": "shipped d1"}


async def test_a_step_past_the_journal_is_refused_and_nothing_is_created(
    engine: Engine,
) -> None:
    calls: Counter[str] = Counter()
    env_id, _worker, run_id, _ = await _approved_run(engine, calls)
    before = await _run_count(engine, env_id)
    for bad in (6, 10**18):
        with pytest.raises(UserError, match="fromStep"):
            await engine.replays.replay(env_id, run_id, from_step=bad)
    assert await _run_count(engine, env_id) == before


async def test_a_failure_while_copying_the_journal_leaves_no_run(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Counter[str] = Counter()
    env_id, _worker, run_id, _ = await _approved_run(engine, calls)
    before = await _run_count(engine, env_id)

    async def crash(*_args: Any, **_kwargs: Any) -> int:
        raise RuntimeError("the server died here")

    monkeypatch.setattr(journal_store, "copy_prefix", crash)
    with pytest.raises(RuntimeError):
        await engine.replays.replay(env_id, run_id, from_step=2)
    assert await _run_count(engine, env_id) == before
