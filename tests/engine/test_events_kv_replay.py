"""Events, event waits, the key-value store and replay from a step, on the real store."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from tests.support.in_process import InProcessWorker, in_process_worker, run_record
from triggerfish import Context, kv, retry, step, task, wait
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.resources import ManualClock
from triggerfish.errors import PayloadValidationError
from triggerfish.sdk._registry import TaskRegistry, collecting_into
from triggerfish.store.tables import kv_entries

FAST = retry(max_attempts=3, min_delay=0, max_delay=0, jitter=0)


class NewUser(BaseModel):
    user_id: str
    email: str


def _registry(calls: Counter[str]) -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="welcome", on_event="user.created", retry=FAST)
        def welcome(payload: NewUser) -> str:
            calls["welcome"] += 1
            return payload.email

        @task(id="audit", on_event="user.created", retry=FAST)
        def audit(payload: dict[str, Any]) -> None:
            calls["audit"] += 1

        @task(id="awaits-approval-event", retry=FAST)
        def awaits_event(payload: dict[str, Any]) -> Any:
            result = wait.for_event(
                "content.approved", match={"draft_id": payload["draft"]}, timeout="1h"
            )
            return {"ok": result.ok, "output": result.output, "error": result.error}

        @task(id="counts-visits", retry=FAST)
        def counts_visits(payload: dict[str, Any]) -> int:
            seen = kv.get("visits", 0) + 1
            kv.set("visits", seen)
            return int(seen)

        @task(id="pipeline", retry=FAST)
        def pipeline(payload: dict[str, Any], ctx: Context) -> list[int]:
            out = [step.run(f"s{i}", lambda i=i: calls.update([f"s{i}"]) or i) for i in (1, 2)]
            out.append(step.run("s3", lambda: calls.update(["s3"]) or payload["last"]))
            return out

    return registry


async def _start(engine: Engine, calls: Counter[str]) -> tuple[str, InProcessWorker]:
    return await in_process_worker(engine, _registry(calls))


async def test_an_event_starts_every_subscriber_once_even_when_sent_twice(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    env_id, worker = await _start(engine, calls)
    payload = {"user_id": "u1", "email": "ada@example.com"}
    first = await engine.events.send(env_id, "user.created", payload, "evt-1")
    again = await engine.events.send(env_id, "user.created", payload, "evt-1")
    assert len(first.run_ids) == 2 and not first.is_cached
    assert again.is_cached and again.run_ids == first.run_ids
    await worker.run_until_idle()
    assert calls == Counter(welcome=1, audit=1)
    assert (await engine.events.send(env_id, "nobody.listens", {})).run_ids == []


async def test_an_invalid_event_is_refused_naming_the_task_and_recorded(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    env_id, worker = await _start(engine, calls)
    with pytest.raises(PayloadValidationError, match="welcome") as caught:
        await engine.events.send(env_id, "user.created", {"user_id": "u2"}, "evt-2")
    assert caught.value.field == "payload.email"
    [recorded] = await engine.events.recent(env_id, "user.created")
    assert recorded.id == "evt-2" and recorded.run_ids == [] and recorded.errors
    assert await worker.run_until_idle() == []


async def test_wait_for_event_resumes_only_on_a_matching_event(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    env_id, worker = await _start(engine, calls)
    run_id = (
        await engine.enqueue.trigger(
            env_id, TriggerRequest("awaits-approval-event", {"draft": "d1"})
        )
    ).id
    await worker.run_until_idle()
    waiting = (await engine.waitpoints.waiting_for([run_id]))[run_id]
    assert waiting[0]["event"] == "content.approved"
    assert waiting[0]["filter"] == {"draft_id": "d1"}
    other = await engine.events.send(env_id, "content.approved", {"draft_id": "d2"})
    assert other.waits_resolved == 0
    assert (await run_record(engine, env_id, run_id)).status == "WAITING"
    hit = await engine.events.send(env_id, "content.approved", {"draft_id": "d1", "by": "ed"})
    assert hit.waits_resolved == 1
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED" and run.output["ok"] is True
    assert run.output["output"]["payload"] == {"draft_id": "d1", "by": "ed"}


async def test_wait_for_event_times_out(engine: Engine, clock: ManualClock) -> None:
    calls: Counter[str] = Counter()
    env_id, worker = await _start(engine, calls)
    run_id = (
        await engine.enqueue.trigger(
            env_id, TriggerRequest("awaits-approval-event", {"draft": "d9"})
        )
    ).id
    await worker.run_until_idle()
    clock.advance(hours=1, seconds=1)
    await engine.maintenance.sweep()
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.output["ok"] is False
    assert run.output["error"]["code"] == "TRIGGER_WAITPOINT_TIMEOUT"


async def test_kv_keeps_state_across_runs_and_expires(engine: Engine, clock: ManualClock) -> None:
    calls: Counter[str] = Counter()
    env_id, worker = await _start(engine, calls)
    for _ in range(3):
        await engine.enqueue.trigger(env_id, TriggerRequest("counts-visits", {}))
    outcomes = await worker.run_until_idle()
    assert [o.output for o in outcomes] == [1, 2, 3]
    await engine.events.kv_set(env_id, "session", {"u": 1}, ttl=60)
    assert await engine.events.kv_get(env_id, "session") == (True, {"u": 1})
    clock.advance(seconds=61)
    assert await engine.events.kv_get(env_id, "session") == (False, None)
    prod = await engine.environments.by_slug("prod")
    assert await engine.events.kv_get(prod.id, "visits") == (False, None)
    assert await engine.events.kv_delete(env_id, "visits") is True
    assert await engine.events.kv_get(env_id, "visits") == (False, None)


async def test_replay_from_a_step_reuses_the_journal_before_it(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    env_id, worker = await _start(engine, calls)
    run_id = (await engine.enqueue.trigger(env_id, TriggerRequest("pipeline", {"last": 3}))).id
    await worker.run_until_idle()
    assert calls == Counter(s1=1, s2=1, s3=1)
    again = await engine.replays.replay(env_id, run_id, from_step=2)
    await worker.run_until_idle()
    run = await run_record(engine, env_id, again)
    assert run.status == "COMPLETED" and run.output == [1, 2, 3]
    assert calls == Counter(s1=1, s2=2, s3=2)  # step 1 was reused, 2 and 3 ran again
    fresh = await engine.replays.replay(env_id, run_id)
    await worker.run_until_idle()
    assert (await run_record(engine, env_id, fresh)).status == "COMPLETED"
    assert calls == Counter(s1=2, s2=3, s3=3)


async def test_the_maintenance_loop_purges_expired_kv_entries(
    engine: Engine, clock: ManualClock
) -> None:
    dev = await engine.environments.by_slug("dev")
    await engine.events.kv_set(dev.id, "short", 1, ttl=10)
    await engine.events.kv_set(dev.id, "long", 2, ttl=1000)
    await engine.events.kv_set(dev.id, "forever", 3, ttl=None)
    clock.advance(seconds=11)
    swept = await engine.maintenance.sweep()
    assert swept["kv_purged"] == 1
    async with engine.res.db.read() as conn:
        keys = {r.key for r in await conn.execute(select(kv_entries.c.key))}
    assert keys == {"long", "forever"}  # the expired row is gone, not only hidden


async def test_the_purges_run_every_purge_interval_not_every_sweep(
    engine: Engine, clock: ManualClock
) -> None:
    """A busy store is not scanned for expired rows every second: after a pass,
    the purges wait ``purge_interval`` (a full batch would bring them back sooner)."""
    dev = await engine.environments.by_slug("dev")
    await engine.events.kv_set(dev.id, "first", 1, ttl=1)
    clock.advance(seconds=2)
    assert (await engine.maintenance.sweep())["kv_purged"] == 1
    await engine.events.kv_set(dev.id, "second", 2, ttl=1)
    clock.advance(seconds=2)
    assert (await engine.maintenance.sweep())["kv_purged"] == 0  # not due yet
    clock.advance(seconds=engine.res.settings.purge_interval)
    assert (await engine.maintenance.sweep())["kv_purged"] == 1
