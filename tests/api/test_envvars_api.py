"""Environment variables over HTTP: Trigger.dev's paths and ours, sealed at rest,
secrets redacted, delivered with each claim; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from triggerfish.api.app import create_app
from triggerfish.engine import Engine
from triggerfish.store.tables import env_vars

MANIFEST = {
    "id": "job",
    "retry": {"max_attempts": 3, "min_delay": 0, "max_delay": 0, "factor": 1, "jitter": 0},
    "machine": "micro",
    "queue": {"name": "task/job", "concurrency_limit": None},
}


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client of the dev environment and its project ref."""
    key, _ = await engine.environments.create_key("dev", "test")
    env = await engine.environments.by_slug("dev")
    transport = httpx.ASGITransport(app=create_app(engine, manage_engine=False))
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        yield c, env.project_ref


async def test_the_sdk_paths_create_list_retrieve_update_delete(
    client: tuple[httpx.AsyncClient, str],
) -> None:
    c, ref = client
    base = f"/api/v1/projects/{ref}/envvars/dev"
    r = await c.post(base, json={"name": "API_URL", "value": "https://x.test"})
    assert r.status_code == 200 and r.json() == {"success": True}, r.text
    r = await c.post(base, json={"name": "TOKEN", "value": "s3cret", "isSecret": True})
    assert r.status_code == 200, r.text
    assert (await c.get(base)).json() == [
        {"name": "API_URL", "value": "https://x.test", "isSecret": False},
        {"name": "TOKEN", "value": "<redacted>", "isSecret": True},
    ]
    assert (await c.get(f"{base}/TOKEN")).json()["value"] == "<redacted>"
    r = await c.put(f"{base}/API_URL", json={"value": "https://y.test"})
    assert r.json() == {"success": True}
    assert (await c.get(f"{base}/API_URL")).json()["value"] == "https://y.test"
    assert (await c.delete(f"{base}/API_URL")).json() == {"success": True}
    r = await c.get(f"{base}/API_URL")
    assert r.status_code == 404 and "API_URL" in r.json()["error"]
    assert r.headers["x-should-retry"] == "false"
    # an existing name is refused by create (400, never retried by the SDK)
    r = await c.post(base, json={"name": "TOKEN", "value": "other"})
    assert r.status_code == 400 and "already exists" in r.json()["error"]


async def test_the_sdk_paths_check_the_project_ref_and_slug(
    client: tuple[httpx.AsyncClient, str],
) -> None:
    c, ref = client
    r = await c.get("/api/v1/projects/proj_other/envvars/dev")
    assert r.status_code == 400 and "projectRef" in r.json()["error"]
    r = await c.get(f"/api/v1/projects/{ref}/envvars/prod")
    assert r.status_code == 400 and "slug" in r.json()["error"]


async def test_upload_adds_many_and_replaces_only_with_override(
    client: tuple[httpx.AsyncClient, str],
) -> None:
    c, ref = client
    base = f"/api/v1/projects/{ref}/envvars/dev"
    r = await c.post(f"{base}/import", json={"variables": {"A": "1", "B": "2"}, "unknown": 1})
    assert r.json() == {"success": True}, r.text
    await c.post(f"{base}/import", json={"variables": {"A": "changed", "C": "3"}})
    values = {v["name"]: v["value"] for v in (await c.get(base)).json()}
    assert values == {"A": "1", "B": "2", "C": "3"}
    r = await c.post("/api/v1/envvars/import", json={"variables": {"A": "x"}, "override": True})
    assert r.json() == {"success": True, "written": ["A"], "kept": []}
    assert (await c.get("/api/v1/envvars/A")).json()["value"] == "x"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "1BAD", "value": "x"}, "name"),
        ({"name": "TRIGGER_SECRET_KEY", "value": "x"}, "name"),
        ({"name": "TRIGGERFISH_API_URL", "value": "x"}, "name"),
        ({"name": "KEY", "value": "tr_prod_abcdefghijklmnopqrstuvwx"}, "value"),
        ({"name": "KEY"}, "value"),
    ],
)
async def test_bad_variables_are_refused_naming_the_field_and_nothing_is_stored(
    client: tuple[httpx.AsyncClient, str], engine: Engine, body: dict[str, Any], field: str
) -> None:
    c, ref = client
    r = await c.post(f"/api/v1/projects/{ref}/envvars/dev", json=body)
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"].startswith(field), r.json()
    r = await c.post(
        "/api/v1/envvars/import",
        json={"variables": {"OK": "1", **{body["name"]: body.get("value", 1)}}},
    )
    assert r.status_code in (400, 422)
    async with engine.res.db.read() as conn:
        assert (await conn.execute(select(env_vars))).all() == []


async def test_values_are_sealed_at_rest_and_bound_to_their_row(
    client: tuple[httpx.AsyncClient, str], engine: Engine
) -> None:
    c, _ = client
    await c.put("/api/v1/envvars/A", json={"value": "plain-a"})
    await c.put("/api/v1/envvars/B", json={"value": "plain-b", "isSecret": True})
    async with engine.res.db.read() as conn:
        rows = {r.name: r.value_box for r in await conn.execute(select(env_vars))}
    assert all("plain" not in box for box in rows.values())
    # a sealed value moved to another row does not open as that row's value
    async with engine.res.db.write() as conn:
        await conn.execute(
            env_vars.update().where(env_vars.c.name == "A").values(value_box=rows["B"])
        )
    engine.envvars._opened.clear()
    r = await c.get("/api/v1/envvars/A")
    assert r.status_code == 400 and "belongs elsewhere" in r.json()["error"]


async def test_each_claim_carries_the_variables_as_they_are_then(
    client: tuple[httpx.AsyncClient, str],
) -> None:
    c, _ = client
    r = await c.post(
        "/worker/v1/register",
        json={"version": "v1", "name": "w", "concurrency": 2, "tasks": [MANIFEST]},
    )
    worker = r.json()["worker_id"]

    async def claim() -> dict[str, Any]:
        await c.post("/api/v1/tasks/job/trigger", json={"payload": {}})
        r = await c.post(
            "/worker/v1/dequeue", json={"worker_id": worker, "max": 1, "wait": 0, "start": 1}
        )
        runs: list[dict[str, Any]] = r.json()["runs"]
        assert len(runs) == 1
        return runs[0]

    assert (await claim())["env_vars"] == {}
    await c.put("/api/v1/envvars/GREETING", json={"value": "hello", "isSecret": True})
    assert (await claim())["env_vars"] == {"GREETING": "hello"}
    await c.put("/api/v1/envvars/GREETING", json={"value": "bye"})
    assert (await claim())["env_vars"] == {"GREETING": "bye"}
    await c.delete("/api/v1/envvars/GREETING")
    assert (await claim())["env_vars"] == {}
