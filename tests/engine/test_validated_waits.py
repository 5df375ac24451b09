"""Validated waits (SCENARIOS N, the support agent's human input): what completes
the wait is checked against the model's JSON Schema on the server; invalid input
is refused to its sender naming the field and the wait stays open; the task gets
a model instance with the model's defaults."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field

from tests.support.in_process import InProcessWorker, in_process_worker, run_record, trigger_run
from triggerfish import Context, retry, task, wait
from triggerfish.api.app import create_app
from triggerfish.engine import Engine
from triggerfish.engine.waitpoints import TokenRequest
from triggerfish.errors import PayloadValidationError
from triggerfish.sdk._registry import TaskRegistry, collecting_into
from triggerfish.store import waitpoints as wp_store

FAST = retry(max_attempts=1)


class HumanInput(BaseModel):
    runId: str
    response: str = Field(min_length=1)
    approved: bool = True


def _answer(human: HumanInput) -> dict[str, Any]:
    text = human.response if human.approved else f"[not approved] {human.response}"
    return {"source": "human", "text": text, "type": type(human).__name__}


def _registry() -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="support-agent", retry=FAST)
        def agent(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
            result = wait.for_event(
                "human.input", id=f"human-{ctx.run.id}", timeout="7d", schema=HumanInput
            )
            return _answer(result.unwrap())

        @task(id="any-human", retry=FAST)
        def any_human(payload: dict[str, Any]) -> dict[str, Any]:
            return _answer(wait.for_event("human.input", schema=HumanInput).unwrap())

        @task(id="plain-token-agent", retry=FAST)
        def plain_token_agent(payload: dict[str, Any]) -> dict[str, Any]:
            return _answer(wait.for_token(payload["token"], schema=HumanInput).unwrap())

        @task(id="token-agent", retry=FAST)
        def token_agent(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
            token = wait.create_token(timeout="7d", schema=HumanInput)
            return _answer(wait.for_token(token).unwrap())

    return registry


@pytest.fixture
async def agents(engine: Engine) -> tuple[str, InProcessWorker]:
    return await in_process_worker(engine, _registry())


async def test_an_invalid_event_addressed_to_a_validated_wait_is_refused(
    engine: Engine, agents: tuple[str, InProcessWorker]
) -> None:
    env_id, worker = agents
    run_id = await trigger_run(engine, env_id, "support-agent", {})
    bystander = await trigger_run(engine, env_id, "any-human", {})
    await worker.run_until_idle()
    bad = {"runId": run_id, "response": ""}
    with pytest.raises(PayloadValidationError) as refused:
        await engine.events.send(env_id, "human.input", bad, f"human-{run_id}")
    assert refused.value.field == "payload.response"
    assert (await run_record(engine, env_id, run_id)).status == "WAITING"
    assert await engine.events.recent(env_id, "human.input") == []  # nothing stored
    # not addressed to a validated wait by id: accepted, and the waits stay open
    elsewhere = await engine.events.send(env_id, "human.input", bad, "someone-else")
    assert elsewhere.waits_resolved == 0
    assert (await run_record(engine, env_id, bystander)).status == "WAITING"
    good = await engine.events.send(
        env_id, "human.input", {"runId": run_id, "response": "Try a reset"}, f"human-{run_id}"
    )
    assert good.waits_resolved == 2  # its own wait, and the one for any id
    await worker.run_until_idle()
    expected = {"source": "human", "text": "Try a reset", "type": "HumanInput"}
    assert (await run_record(engine, env_id, run_id)).output == expected  # default applied
    assert (await run_record(engine, env_id, bystander)).output == expected


async def test_a_validated_token_refuses_bad_data_and_stays_open(
    engine: Engine, agents: tuple[str, InProcessWorker]
) -> None:
    env_id, worker = agents
    run_id = await trigger_run(engine, env_id, "token-agent", {})
    await worker.run_until_idle()
    [waiting] = (await engine.waitpoints.waiting_for([run_id]))[run_id]
    token_id = waiting["tokenId"]
    async with engine.res.db.read() as conn:
        token = await wp_store.get(conn, token_id)
    assert token is not None and token.schema == HumanInput.model_json_schema()
    with pytest.raises(PayloadValidationError) as refused:
        await engine.waitpoints.complete_token(env_id, token_id, {"runId": run_id})
    assert refused.value.field == "data.response"
    assert (await engine.waitpoints.get_token(env_id, token_id)).status == "PENDING"
    data = {"runId": run_id, "response": "Refunded", "approved": False}
    await engine.waitpoints.complete_token(env_id, token_id, data)
    await worker.run_until_idle()
    assert (await run_record(engine, env_id, run_id)).output == {
        "source": "human",
        "text": "[not approved] Refunded",
        "type": "HumanInput",
    }


async def test_a_validated_wait_on_a_plain_token_checks_its_completion(
    engine: Engine, agents: tuple[str, InProcessWorker]
) -> None:
    env_id, worker = agents
    token, _ = await engine.waitpoints.create_token(env_id, TokenRequest())
    run_id = await trigger_run(engine, env_id, "plain-token-agent", {"token": token.id})
    await worker.run_until_idle()
    with pytest.raises(PayloadValidationError, match="response"):
        await engine.waitpoints.complete_token(env_id, token.id, {"runId": "r", "response": ""})
    await engine.waitpoints.complete_token(env_id, token.id, {"runId": "r", "response": "ok"})
    await worker.run_until_idle()
    assert (await run_record(engine, env_id, run_id)).output["text"] == "ok"


async def test_over_http_the_refusal_is_a_422_naming_the_field(engine: Engine) -> None:
    key, _ = await engine.environments.create_key("dev", "test")
    app = create_app(engine, manage_engine=False)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers
    ) as c:
        schema = HumanInput.model_json_schema()
        made = await c.post("/api/v1/waitpoints/tokens", json={"schema": schema})
        token = made.json()
        bad_schema = await c.post("/api/v1/waitpoints/tokens", json={"schema": {"type": 3}})
        assert bad_schema.status_code == 400 and "schema" in bad_schema.text
        path = f"/api/v1/waitpoints/tokens/{token['id']}/complete"
        refused = await c.post(path, json={"data": {"runId": "r", "response": ""}})
        assert refused.status_code == 422 and "data.response" in refused.text
        callback = await c.post(token["url"].removeprefix("http://test"), json={"runId": "r"})
        assert callback.status_code == 422 and "body.response" in callback.text
        ok = await c.post(path, json={"data": {"runId": "r", "response": "hi"}})
        assert ok.status_code == 200
        done = (await c.get(f"/api/v1/waitpoints/tokens/{token['id']}")).json()
        assert json.loads(done["output"]) == {"runId": "r", "response": "hi"}
