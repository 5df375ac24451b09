"""Events addressed by id: correlated waits (SCENARIOS K, content approval),
deduplication per (environment, name, id), resends of a rejected event."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from tests.support.in_process import in_process_worker, run_record, trigger_run
from triggerfish import retry, step, task, wait
from triggerfish.engine import Engine
from triggerfish.errors import PayloadValidationError
from triggerfish.sdk._registry import TaskRegistry, collecting_into

FAST = retry(max_attempts=2, min_delay=0, max_delay=0, jitter=0)


class Signup(BaseModel):
    email: str


def _registry(published: list[str]) -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="content-generate", retry=FAST)
        def generate(payload: dict[str, Any]) -> dict[str, Any]:
            draft = payload["draftId"]
            result = wait.for_event(
                "content.approved", id=f"content-approval-{draft}", timeout="1h"
            )
            if not result.ok:
                return {"status": "timed out"}
            approval = result.unwrap()
            if approval["payload"]["approved"]:
                step.run("publish-content", lambda: published.append(draft))
                return {"status": "published", "event": approval["id"]}
            return {"status": "rejected", "reason": approval["payload"].get("reason")}

        @task(id="on-signup", on_event="user.signup", retry=FAST)
        def on_signup(payload: Signup) -> str:
            return payload.email

    return registry


async def test_content_approval_resumes_only_on_its_own_id(engine: Engine) -> None:
    published: list[str] = []
    env_id, worker = await in_process_worker(engine, _registry(published))
    first = await trigger_run(engine, env_id, "content-generate", {"draftId": "d1"})
    second = await trigger_run(engine, env_id, "content-generate", {"draftId": "d2"})
    await worker.run_until_idle()
    other = await engine.events.send(
        env_id, "content.approved", {"approved": True}, "content-approval-d9"
    )
    assert other.waits_resolved == 0
    hit = await engine.events.send(
        env_id, "content.approved", {"approved": True}, "content-approval-d1"
    )
    assert hit.waits_resolved == 1
    await worker.run_until_idle()
    assert (await run_record(engine, env_id, first)).output == {
        "status": "published",
        "event": "content-approval-d1",
    }
    assert (await run_record(engine, env_id, second)).status == "WAITING"
    no = await engine.events.send(
        env_id, "content.approved", {"approved": False, "reason": "tone"}, "content-approval-d2"
    )
    assert no.waits_resolved == 1
    await worker.run_until_idle()
    assert (await run_record(engine, env_id, second)).output == {
        "status": "rejected",
        "reason": "tone",
    }
    assert published == ["d1"]


async def test_an_event_sent_before_its_wait_began_completes_it(engine: Engine) -> None:
    env_id, worker = await in_process_worker(engine, _registry([]))
    await engine.events.send(env_id, "content.approved", {"approved": True}, "content-approval-d3")
    run_id = await trigger_run(engine, env_id, "content-generate", {"draftId": "d3"})
    await worker.run_until_idle()
    assert (await run_record(engine, env_id, run_id)).output["status"] == "published"


async def test_an_event_id_deduplicates_per_name(engine: Engine) -> None:
    env_id, _ = await in_process_worker(engine, _registry([]))
    signup = await engine.events.send(env_id, "user.signup", {"email": "a@x"}, "e-1")
    approved = await engine.events.send(env_id, "content.approved", {"approved": 1}, "e-1")
    assert not approved.is_cached and signup.run_ids and approved.run_ids == []
    again = await engine.events.send(env_id, "user.signup", {"email": "other@x"}, "e-1")
    assert again.is_cached and again.run_ids == signup.run_ids
    names = sorted(e.name for e in await engine.events.recent(env_id, None))
    assert names == ["content.approved", "user.signup"]


async def test_a_resend_of_a_rejected_event_answers_with_the_rejection(engine: Engine) -> None:
    env_id, worker = await in_process_worker(engine, _registry([]))
    with pytest.raises(PayloadValidationError) as first:
        await engine.events.send(env_id, "user.signup", {"mail": "a@x"}, "bad-1")
    with pytest.raises(PayloadValidationError) as again:
        await engine.events.send(env_id, "user.signup", {"email": "fixed@x"}, "bad-1")
    assert again.value.field == first.value.field == "payload.email"
    assert str(again.value) == str(first.value)
    assert await worker.run_until_idle() == []
