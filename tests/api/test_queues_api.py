"""Queues, the environment limit and doctor over HTTP (WIRE.md §12 shapes)."""

from __future__ import annotations

from typing import Any

from tests.api.test_public_api import api, auth  # noqa: F401  (fixture)


async def test_list_retrieve_pause_resume_in_trigger_dev_shapes(api: dict[str, Any]) -> None:  # noqa: F811
    c, key = api["client"], api["dev"]
    await c.post("/api/v1/tasks/hello/trigger", headers=auth(key), json={"payload": {}})
    page = (await c.get("/api/v1/queues?page=1&perPage=10", headers=auth(key))).json()
    assert page["pagination"] == {"currentPage": 1, "totalPages": 1, "count": 1}
    [item] = page["data"]
    assert item["name"] == "hello" and item["type"] == "task" and item["id"].startswith("queue_")
    assert item["queued"] == 1 and item["running"] == 0 and item["paused"] is False
    assert item["concurrencyLimit"] is None and item["concurrency"]["override"] is None
    by_id = (await c.get(f"/api/v1/queues/{item['id']}", headers=auth(key))).json()
    by_task = (await c.get("/api/v1/queues/hello?type=task", headers=auth(key))).json()
    by_name = (await c.get("/api/v1/queues/task%252Fhello?type=custom", headers=auth(key))).json()
    assert by_id == by_task == by_name == item

    r = await c.post(
        "/api/v1/queues/hello/pause", headers=auth(key), json={"type": "task", "action": "pause"}
    )
    assert r.status_code == 200 and r.json()["paused"] is True
    run_id = (
        await c.post("/api/v1/tasks/hello/trigger", headers=auth(key), json={"payload": {}})
    ).json()["id"]
    run = (await c.get(f"/api/v3/runs/{run_id}", headers=auth(key))).json()
    assert run["waitReason"]["code"] == "QUEUE_PAUSED"
    assert "paused" in run["waitReason"]["message"]
    listed = (await c.get("/api/v1/runs", headers=auth(key))).json()["data"]
    assert {r["waitReason"]["code"] for r in listed} == {"QUEUE_PAUSED"}
    r = await c.post(
        f"/api/v1/queues/{item['id']}/pause", headers=auth(key), json={"action": "resume"}
    )
    assert r.json()["paused"] is False


async def test_override_and_reset_concurrency(api: dict[str, Any]) -> None:  # noqa: F811
    c, key = api["client"], api["dev"]
    r = await c.post(
        "/api/v1/queues/hello/concurrency/override",
        headers=auth(key),
        json={"type": "task", "concurrencyLimit": 3},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["concurrencyLimit"] == 3 and body["concurrency"]["override"] == 3
    assert body["concurrency"]["base"] is None and body["concurrency"]["overriddenAt"]
    r = await c.post(
        "/api/v1/queues/hello/concurrency/reset", headers=auth(key), json={"type": "task"}
    )
    assert r.json()["concurrencyLimit"] is None
    r = await c.post(
        "/api/v1/queues/hello/concurrency/override",
        headers=auth(key),
        json={"type": "task", "concurrencyLimit": -1},
    )
    assert r.status_code == 422 and "concurrencyLimit" in r.json()["error"]


async def test_rate_and_key_limits_are_own_extensions(api: dict[str, Any]) -> None:  # noqa: F811
    c, key = api["client"], api["dev"]
    r = await c.post(
        "/api/v1/queues/task%2Fhello/rate-limit",
        headers=auth(key),
        json={"limit": 100, "period": "1m"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["rateLimit"] == {"limit": 100, "period": 60.0}
    r = await c.post("/api/v1/queues/task%2Fhello/rate-limit", headers=auth(key), json={"limit": 5})
    assert r.status_code == 400 and "period" in r.json()["error"]
    r = await c.post(
        "/api/v1/queues/task%2Fhello/rate-limit", headers=auth(key), json={"period": "soon"}
    )
    assert r.status_code == 422 and r.json()["error"].startswith("period"), r.text
    r = await c.post(
        "/api/v1/queues/task%2Fhello/concurrency/key-limit",
        headers=auth(key),
        json={"concurrencyKeyLimit": 2},
    )
    assert r.json()["concurrencyKeyLimit"] == 2


async def test_unknown_queue_is_404(api: dict[str, Any]) -> None:  # noqa: F811
    c, key = api["client"], api["dev"]
    r = await c.get("/api/v1/queues/nope?type=custom", headers=auth(key))
    assert r.status_code == 404 and "'nope'" in r.json()["error"]
    r = await c.post("/api/v1/queues/queue_x/pause", headers=auth(key), json={"action": "pause"})
    assert r.status_code == 404


async def test_queues_are_per_environment(api: dict[str, Any]) -> None:  # noqa: F811
    c = api["client"]
    await c.post("/api/v1/queues/hello/pause", headers=auth(api["dev"]), json={"type": "task"})
    prod = (await c.get("/api/v1/queues/hello?type=task", headers=auth(api["prod"]))).json()
    assert prod["paused"] is False


async def test_environment_limit_and_doctor(api: dict[str, Any]) -> None:  # noqa: F811
    c, key = api["client"], api["dev"]
    assert (await c.get("/api/v1/environment/concurrency", headers=auth(key))).json() == {
        "concurrencyLimit": None,
        "running": 0,
    }
    r = await c.put(
        "/api/v1/environment/concurrency", headers=auth(key), json={"concurrencyLimit": 7}
    )
    assert r.json() == {"concurrencyLimit": 7, "running": 0}
    await c.post("/api/v1/tasks/hello/trigger", headers=auth(key), json={"payload": {}})
    report = (await c.get("/api/v1/doctor", headers=auth(key))).json()
    assert report["environment"] == {"concurrencyLimit": 7, "running": 0, "slug": "dev"}
    assert report["waiting"] == {"QUEUED": 1}
    assert [w["version"] for w in report["workers"]] == ["v1"]
    assert report["oldestQueuedRun"]["reason"]["code"] == "WAITING_FOR_SLOT"


async def test_an_environment_sets_its_retention(api: dict[str, Any]) -> None:  # noqa: F811
    c, key = api["client"], api["dev"]
    r = await c.get("/api/v1/environment/retention", headers=auth(key))
    assert r.json() == {"days": 30, "default": True}
    r = await c.put("/api/v1/environment/retention", headers=auth(key), json={"days": 7})
    assert r.json() == {"days": 7, "default": False}
    r = await c.put("/api/v1/environment/retention", headers=auth(key), json={"days": 0})
    assert r.status_code == 422 and r.json()["error"].startswith("days"), r.text
    r = await c.get("/api/v1/environment/retention", headers=auth(api["prod"]))
    assert r.json() == {"days": 30, "default": True}
