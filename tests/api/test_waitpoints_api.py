"""Waitpoint tokens over REST, on Trigger.dev's paths (WIRE.md §6), in process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from triggerfish.api.app import create_app
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock


@pytest.fixture
async def api(engine: Engine) -> AsyncIterator[dict[str, Any]]:
    dev_key, _ = await engine.environments.create_key("dev", "test")
    prod_key, _ = await engine.environments.create_key("prod", "test")
    app = create_app(engine, manage_engine=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield {
            "client": client,
            "dev": {"Authorization": f"Bearer {dev_key}"},
            "prod": {"Authorization": f"Bearer {prod_key}"},
        }


async def test_create_complete_retrieve_and_list_tokens(api: dict[str, Any]) -> None:
    c, dev = api["client"], api["dev"]
    body = {"idempotencyKey": "approve-42", "timeout": "1h", "tags": ["approval", "doc:42"]}
    first = (await c.post("/api/v1/waitpoints/tokens", headers=dev, json=body)).json()
    again = (await c.post("/api/v1/waitpoints/tokens", headers=dev, json=body)).json()
    assert first["id"].startswith("waitpoint_") and first["isCached"] is False
    assert again == {**first, "isCached": True}
    assert first["url"].startswith(f"http://test/api/v1/waitpoints/tokens/{first['id']}/callback/")
    token = (await c.get(f"/api/v1/waitpoints/tokens/{first['id']}", headers=dev)).json()
    assert token["status"] == "WAITING" and token["tags"] == ["approval", "doc:42"]
    assert token["timeoutAt"].endswith("Z") and "output" not in token
    path = f"/api/v1/waitpoints/tokens/{first['id']}/complete"
    done = await c.post(path, headers=dev, json={"data": {"approved": True}})
    assert done.status_code == 200 and done.json() == {"success": True}
    twice = await c.post(path, headers=dev, json={"data": {"approved": False}})
    assert twice.json() == {"success": True}  # accepted; the first data stays
    token = (await c.get(f"/api/v1/waitpoints/tokens/{first['id']}", headers=dev)).json()
    assert token["status"] == "COMPLETED" and token["outputType"] == "application/json"
    assert json.loads(token["output"]) == {"approved": True} and token["outputIsError"] is False
    listed = (await c.get("/api/v1/waitpoints/tokens?filter[status]=COMPLETED", headers=dev)).json()
    assert [t["id"] for t in listed["data"]] == [first["id"]]
    waiting = await c.get("/api/v1/waitpoints/tokens?filter[status]=WAITING", headers=dev)
    assert waiting.json()["data"] == []
    # a token without key or timeout: those fields are left out, never null (WIRE §2)
    plain = (await c.post("/api/v1/waitpoints/tokens", headers=dev, json={})).json()
    token = (await c.get(f"/api/v1/waitpoints/tokens/{plain['id']}", headers=dev)).json()
    assert None not in token.values()
    assert "idempotencyKey" not in token and "timeoutAt" not in token


async def test_tokens_are_scoped_and_bad_input_names_the_field(api: dict[str, Any]) -> None:
    c, dev, prod = api["client"], api["dev"], api["prod"]
    token = (await c.post("/api/v1/waitpoints/tokens", headers=dev, json={})).json()
    other = await c.post(
        f"/api/v1/waitpoints/tokens/{token['id']}/complete", headers=prod, json={"data": 1}
    )
    assert other.status_code == 404 and token["id"] in other.json()["error"]
    unknown = await c.post(
        "/api/v1/waitpoints/tokens/waitpoint_nope/complete", headers=dev, json={}
    )
    assert unknown.status_code == 404
    bad = await c.post("/api/v1/waitpoints/tokens", headers=dev, json={"timeout": "soon"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("timeout:")
    many = await c.post(
        "/api/v1/waitpoints/tokens", headers=dev, json={"tags": [f"t{i}" for i in range(11)]}
    )
    assert many.status_code == 400 and many.json()["error"].startswith("tags:")
    status = await c.get("/api/v1/waitpoints/tokens?filter[status]=DONE", headers=dev)
    assert status.status_code == 400 and "filter[status]" in status.json()["error"]


async def test_the_callback_url_needs_no_key_but_the_right_secret(
    api: dict[str, Any], engine: Engine, clock: ManualClock
) -> None:
    c, dev = api["client"], api["dev"]
    token = (await c.post("/api/v1/waitpoints/tokens", headers=dev, json={"timeout": 60})).json()
    wrong = await c.post(token["url"].rsplit("/", 1)[0] + "/0000", json={"x": 1})
    assert wrong.status_code == 404
    garbage = await c.post(token["url"], content=b"{not json")
    assert garbage.status_code == 400 and "JSON" in garbage.json()["error"]
    ok = await c.post(token["url"], json={"from": "webhook"})
    assert ok.status_code == 200 and ok.json() == {"success": True}
    later = (await c.post("/api/v1/waitpoints/tokens", headers=dev, json={"timeout": 60})).json()
    clock.advance(seconds=61)
    await engine.waitpoints.resolve_due()
    expired = await c.post(later["url"], json={})
    assert expired.status_code == 409 and "timed out" in expired.json()["error"]
    timed_out = (await c.get(f"/api/v1/waitpoints/tokens/{later['id']}", headers=dev)).json()
    assert timed_out["status"] == "TIMED_OUT" and timed_out["outputIsError"] is True
    assert json.loads(timed_out["output"])["code"] == "TRIGGER_WAITPOINT_TIMEOUT"
