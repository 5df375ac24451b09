"""The public REST API in process: shapes, auth, environment scoping and bad input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from triggerfish.api.app import create_app
from triggerfish.engine import Engine


@pytest.fixture
async def api(engine: Engine) -> AsyncIterator[dict[str, Any]]:
    dev_key, _ = await engine.environments.create_key("dev", "test")
    prod_key, _ = await engine.environments.create_key("prod", "test")
    manifest = {
        "id": "hello",
        "retry": {"max_attempts": 2},
        "machine": "micro",
        "queue": {"name": "task/hello", "concurrency_limit": None},
        "payload_schema": {"type": "object", "properties": {"who": {"type": "string"}}},
    }
    for slug in ("dev", "prod"):
        env = await engine.environments.by_slug(slug)
        await engine.workers.register(
            env.id, version="v1", name="w", concurrency=1, tasks=[manifest]
        )
    app = create_app(engine, manage_engine=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield {"client": client, "dev": dev_key, "prod": prod_key, "engine": engine}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_trigger_and_retrieve_in_trigger_dev_shapes(api: dict[str, Any]) -> None:
    c, key = api["client"], api["dev"]
    r = await c.post(
        "/api/v1/tasks/hello/trigger",
        headers=auth(key),
        json={"payload": {"who": "Ada"}, "options": {"tags": ["x"], "metadata": {"m": 1}}},
    )
    assert r.status_code == 200, r.text
    run_id = r.json()["id"]
    assert run_id.startswith("run_") and "isCached" not in r.json()
    run = (await c.get(f"/api/v3/runs/{run_id}", headers=auth(key))).json()
    assert run["status"] == "QUEUED" and run["isQueued"] and not run["isCompleted"]
    assert run["taskIdentifier"] == "hello" and run["payload"] == {"who": "Ada"}
    assert run["tags"] == ["x"] and run["metadata"] == {"m": 1}
    assert run["createdAt"].endswith("Z") and run["relatedRuns"] == {}
    assert run["attemptCount"] == 0 and run["triggerFunction"] == "trigger"
    assert "output" not in run and "error" not in run and "startedAt" not in run


async def test_super_json_payload_packets_are_decoded(api: dict[str, Any]) -> None:
    c, key = api["client"], api["dev"]
    body = {
        "payload": json.dumps({"json": {"who": "TS"}}),
        "options": {"payloadType": "application/super+json"},
    }
    r = await c.post("/api/v1/tasks/hello/trigger", headers=auth(key), json=body)
    run = (await c.get(f"/api/v3/runs/{r.json()['id']}", headers=auth(key))).json()
    assert run["payload"] == {"who": "TS"}


async def test_idempotent_trigger_reports_cached(api: dict[str, Any]) -> None:
    c, key = api["client"], api["dev"]
    body = {"payload": {}, "options": {"idempotencyKey": "a" * 64}}
    first = (await c.post("/api/v1/tasks/hello/trigger", headers=auth(key), json=body)).json()
    second = (await c.post("/api/v1/tasks/hello/trigger", headers=auth(key), json=body)).json()
    assert second == {"id": first["id"], "isCached": True}


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"payload": {"who": 5}}, 422, "payload.who"),
        ({"payload": {}, "options": {"tags": "x" * 200}}, 422, "options.tags"),
        ({"payload": {}, "options": {"maxAttempts": "many"}}, 422, "options.maxAttempts"),
        ({"payload": {}, "options": {"machine": "huge"}}, 422, "options.machine"),
        ({"payload": {}, "options": {"tags": [str(i) for i in range(11)]}}, 422, "at most 10"),
        ({"payload": {}, "options": {"delay": "soon"}}, 422, "options.delay"),
        ({"payload": {}, "options": {"ttl": "1x"}}, 422, "options.ttl"),
        # dates beyond what the store holds are refused, not a 500
        ({"payload": {}, "options": {"delay": "99999999h"}}, 422, "options.delay"),
        ({"payload": {}, "options": {"delay": "9999-12-31T00:00:00Z"}}, 422, "100 years"),
        ({"payload": {}, "options": {"ttl": "999999999999"}}, 422, "options.ttl"),
    ],
)
async def test_bad_trigger_input_is_refused_naming_the_field(
    api: dict[str, Any], body: dict[str, Any], status: int, needle: str
) -> None:
    c, key = api["client"], api["dev"]
    r = await c.post("/api/v1/tasks/hello/trigger", headers=auth(key), json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]
    assert r.headers["x-should-retry"] == "false"
    listed = (await c.get("/api/v1/runs", headers=auth(key))).json()
    assert listed["data"] == []  # nothing was stored


async def test_malformed_json_is_a_400(api: dict[str, Any]) -> None:
    c, key = api["client"], api["dev"]
    r = await c.post(
        "/api/v1/tasks/hello/trigger",
        content=b"{not json",
        headers={**auth(key), "content-type": "application/json"},
    )
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]


async def test_unknown_task_is_a_404_naming_known_tasks(api: dict[str, Any]) -> None:
    c, key = api["client"], api["dev"]
    r = await c.post("/api/v1/tasks/helo/trigger", headers=auth(key), json={"payload": {}})
    assert r.status_code == 404 and "'hello'" in r.json()["error"]


async def test_oversize_body_is_a_413_stating_the_limit(api: dict[str, Any]) -> None:
    c, key = api["client"], api["dev"]
    limit = api["engine"].res.settings.max_body_bytes
    r = await c.post(
        "/api/v1/tasks/hello/trigger",
        headers=auth(key),
        json={"payload": {"blob": "x" * (limit + 10)}},
    )
    assert r.status_code == 413 and str(limit) in r.json()["error"]


async def test_oversize_payload_within_body_limit_is_a_413(api: dict[str, Any]) -> None:
    c, key = api["client"], api["dev"]
    limit = api["engine"].res.settings.max_payload_bytes
    r = await c.post(
        "/api/v1/tasks/hello/trigger",
        headers=auth(key),
        json={"payload": {"blob": "x" * (limit + 10)}},
    )
    assert r.status_code == 413 and str(limit) in r.json()["error"]


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc", "Bearer "])
async def test_requests_without_a_valid_key_are_401(
    api: dict[str, Any], header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    r = await api["client"].get("/api/v1/runs", headers=headers)
    assert r.status_code == 401 and "Invalid API Key" in r.json()["error"]


async def test_revoked_key_stops_working(api: dict[str, Any]) -> None:
    engine: Engine = api["engine"]
    key, row = await engine.environments.create_key("dev", "temp")
    c = api["client"]
    assert (await c.get("/api/v1/runs", headers=auth(key))).status_code == 200
    assert await engine.environments.revoke_key(row.id)
    assert (await c.get("/api/v1/runs", headers=auth(key))).status_code == 401


async def test_prod_key_never_sees_dev_runs(api: dict[str, Any]) -> None:
    c = api["client"]
    r = await c.post("/api/v1/tasks/hello/trigger", headers=auth(api["dev"]), json={"payload": {}})
    run_id = r.json()["id"]
    assert (await c.get(f"/api/v3/runs/{run_id}", headers=auth(api["prod"]))).status_code == 404
    assert (await c.get("/api/v1/runs", headers=auth(api["prod"]))).json()["data"] == []
    cancel = await c.post(f"/api/v2/runs/{run_id}/cancel", headers=auth(api["prod"]))
    assert cancel.status_code == 404
    run = (await c.get(f"/api/v3/runs/{run_id}", headers=auth(api["dev"]))).json()
    assert run["status"] == "QUEUED"


async def test_keys_are_shaped_like_trigger_dev_and_stored_hashed(api: dict[str, Any]) -> None:
    assert api["dev"].startswith("tr_dev_") and api["prod"].startswith("tr_prod_")
    engine: Engine = api["engine"]
    from sqlalchemy import select

    from triggerfish.store.tables import api_keys

    async with engine.res.db.read() as conn:
        stored = [tuple(r) for r in await conn.execute(select(api_keys))]
    flat = json.dumps([[str(v) for v in row] for row in stored])
    assert api["dev"] not in flat and api["prod"] not in flat


async def test_list_filters_and_cursor_pagination(api: dict[str, Any]) -> None:
    c, key = api["client"], api["dev"]
    ids = []
    for i in range(5):
        r = await c.post(
            "/api/v1/tasks/hello/trigger",
            headers=auth(key),
            json={"payload": {}, "options": {"tags": ["even" if i % 2 == 0 else "odd"]}},
        )
        ids.append(r.json()["id"])
    page = (await c.get("/api/v1/runs?page[size]=2", headers=auth(key))).json()
    assert [r["id"] for r in page["data"]] == ids[::-1][:2]
    assert "previous" not in page["pagination"]
    nxt = page["pagination"]["next"]
    page2 = (await c.get(f"/api/v1/runs?page[size]=2&page[after]={nxt}", headers=auth(key))).json()
    assert [r["id"] for r in page2["data"]] == ids[::-1][2:4]
    evens = (await c.get("/api/v1/runs?filter[tag]=even", headers=auth(key))).json()
    assert {r["id"] for r in evens["data"]} == {ids[0], ids[2], ids[4]}
    queued = await c.get("/api/v1/runs?filter[status]=QUEUED,COMPLETED", headers=auth(key))
    assert len(queued.json()["data"]) == 5
    bad = await c.get("/api/v1/runs?filter[status]=DONE", headers=auth(key))
    assert bad.status_code == 400 and "filter[status]" in bad.json()["error"]
    assert page["data"][0]["env"] == {"id": page["data"][0]["env"]["id"], "name": "dev"}


async def test_cancel_and_openapi(api: dict[str, Any]) -> None:
    c, key = api["client"], api["dev"]
    run_id = (
        await c.post("/api/v1/tasks/hello/trigger", headers=auth(key), json={"payload": {}})
    ).json()["id"]
    assert (await c.post(f"/api/v2/runs/{run_id}/cancel", headers=auth(key))).json() == {
        "id": run_id
    }
    run = (await c.get(f"/api/v3/runs/{run_id}", headers=auth(key))).json()
    assert run["status"] == "CANCELED" and run["isCancelled"] and run["isCompleted"]
    doc = (await c.get("/openapi.json")).json()
    assert "/api/v1/tasks/{task_id}/trigger" in doc["paths"]
    assert "/api/v3/runs/{run_id}" in doc["paths"]


async def test_an_unavailable_store_is_a_retryable_503(
    api: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from triggerfish.errors import StoreUnavailable

    async def unavailable(_key: str) -> None:
        raise StoreUnavailable("the database connection failed (ConnectionRefusedError)")

    monkeypatch.setattr(api["engine"].environments, "authenticate", unavailable)
    client, headers = api["client"], auth(api["dev"])
    for response in (
        await client.post("/api/v1/tasks/hello/trigger", json={"payload": {}}, headers=headers),
        await client.get("/api/v1/runs", headers=headers),
    ):
        assert response.status_code == 503
        assert response.headers["x-should-retry"] == "true"
        assert "database connection failed" in response.json()["error"]
