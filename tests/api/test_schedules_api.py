"""The schedules REST API in process: Trigger.dev's paths, shapes and refusals (WIRE.md §7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from triggerfish.api.app import create_app
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock


def manifest(task_id: str, schedule: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": task_id,
        "retry": {"max_attempts": 1},
        "machine": "micro",
        "queue": {"name": f"task/{task_id}", "concurrency_limit": None},
        "payload_schema": None,
        "schedule": schedule,
    }


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 8, 59, 30, tzinfo=UTC).timestamp())


@pytest.fixture
async def api(engine: Engine) -> AsyncIterator[dict[str, Any]]:
    dev_key, _ = await engine.environments.create_key("dev", "test")
    prod_key, _ = await engine.environments.create_key("prod", "test")
    tasks = [
        manifest("sync", {"cron": None, "timezone": "UTC"}),
        manifest("report", {"cron": "0 9 * * *", "timezone": "America/New_York"}),
        manifest("plain", None),
    ]
    for slug in ("dev", "prod"):
        env = await engine.environments.by_slug(slug)
        await engine.workers.register(env.id, version="v1", name="w", concurrency=1, tasks=tasks)
    app = create_app(engine, manage_engine=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {dev_key}"}
    ) as client:
        yield {"client": client, "prod": prod_key, "engine": engine}


async def test_create_retrieve_and_list_in_trigger_dev_shapes(api: dict[str, Any]) -> None:
    c = api["client"]
    r = await c.post(
        "/api/v1/schedules",
        json={
            "task": "sync",
            "cron": "*/15 * * * *",
            "timezone": "Europe/Paris",
            "externalId": "customer_42",
            "deduplicationKey": "customer_42-sync",
            "window": "5m",  # unknown fields are ignored
        },
    )
    assert r.status_code == 200, r.text
    created = r.json()
    env_id = created["environments"][0]["id"]
    assert created == {
        "id": created["id"],
        "type": "IMPERATIVE",
        "task": "sync",
        "active": True,
        "deduplicationKey": "customer_42-sync",
        "externalId": "customer_42",
        "generator": {
            "type": "CRON",
            "expression": "*/15 * * * *",
            "description": "Every 15th minute of every hour",
        },
        "timezone": "Europe/Paris",
        "nextRun": "2026-01-05T09:00:00.000Z",
        "environments": [{"id": env_id, "type": "DEVELOPMENT"}],
    }
    assert created["id"].startswith("sched_")
    for ref in (created["id"], "customer_42-sync"):
        assert (await c.get(f"/api/v1/schedules/{ref}")).json() == created

    page = (await c.get("/api/v1/schedules", params={"page": 1, "perPage": 1})).json()
    # the declarative one from the worker's code comes first (older)
    assert [s["type"] for s in page["data"]] == ["DECLARATIVE"]
    assert page["data"][0]["task"] == "report" and "deduplicationKey" not in page["data"][0]
    assert page["pagination"] == {"currentPage": 1, "totalPages": 2, "count": 2}
    page2 = (await c.get("/api/v1/schedules?page=2&perPage=1")).json()
    assert [s["id"] for s in page2["data"]] == [created["id"]]
    assert (await c.get("/api/v1/schedules?perPage=101")).status_code == 422


async def test_same_deduplication_key_updates_the_schedule(api: dict[str, Any]) -> None:
    c = api["client"]
    body = {"task": "sync", "cron": "0 * * * *", "deduplicationKey": "k"}
    first = (await c.post("/api/v1/schedules", json=body)).json()
    second = (await c.post("/api/v1/schedules", json={**body, "cron": "30 * * * *"})).json()
    assert first["id"] == second["id"]
    assert second["generator"]["expression"] == "30 * * * *"
    assert (await c.get("/api/v1/schedules?task=sync")).json()["pagination"]["count"] == 1


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"task": "plain", "cron": "0 9 * * *"}, 422, "'plain' is not a scheduled task"),
        ({"task": "sync", "cron": "0 9 * *"}, 422, "cron: cron expression '0 9 * *' has 4 fields"),
        ({"task": "sync", "cron": "0 9 * * *", "timezone": "Nowhere/City"}, 422, "timezone:"),
        ({"task": "ghost", "cron": "0 9 * * *"}, 404, "task 'ghost' not found"),
        ({"cron": "0 9 * * *"}, 422, "task: Field required"),
    ],
)
async def test_bad_schedules_are_refused_naming_the_field(
    api: dict[str, Any], body: dict[str, Any], status: int, needle: str
) -> None:
    r = await api["client"].post("/api/v1/schedules", json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]
    assert r.headers["x-should-retry"] == "false"


async def test_update_activate_deactivate_delete(api: dict[str, Any]) -> None:
    c = api["client"]
    made = (await c.post("/api/v1/schedules", json={"task": "sync", "cron": "0 * * * *"})).json()
    sid = made["id"]
    r = await c.put(
        f"/api/v1/schedules/{sid}",
        json={"task": "sync", "cron": "0 12 * * *", "timezone": "Asia/Tokyo", "externalId": "e"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["generator"]["expression"] == "0 12 * * *" and r.json()["externalId"] == "e"
    assert r.json()["nextRun"] == "2026-01-06T03:00:00.000Z"  # 12:00 in Tokyo

    off = (await c.post(f"/api/v1/schedules/{sid}/deactivate")).json()
    assert off["active"] is False and "nextRun" not in off
    on = (await c.post(f"/api/v1/schedules/{sid}/activate")).json()
    assert on["active"] is True and on["nextRun"] == "2026-01-06T03:00:00.000Z"

    assert (await c.delete(f"/api/v1/schedules/{sid}")).json() == {"id": sid}
    gone = await c.get(f"/api/v1/schedules/{sid}")
    assert gone.status_code == 404 and sid in gone.json()["error"]


async def test_declarative_schedules_cannot_be_changed_over_the_api(api: dict[str, Any]) -> None:
    c = api["client"]
    [declarative] = (await c.get("/api/v1/schedules?task=report")).json()["data"]
    sid = declarative["id"]
    r = await c.put(f"/api/v1/schedules/{sid}", json={"task": "report", "cron": "0 1 * * *"})
    assert r.status_code == 422 and "declarative" in r.json()["error"]
    assert (await c.delete(f"/api/v1/schedules/{sid}")).status_code == 422
    # pausing one is allowed: it is not a change of the code's timetable
    assert (await c.post(f"/api/v1/schedules/{sid}/deactivate")).json()["active"] is False


async def test_schedules_are_scoped_to_the_callers_environment(api: dict[str, Any]) -> None:
    c = api["client"]
    made = (await c.post("/api/v1/schedules", json={"task": "sync", "cron": "0 * * * *"})).json()
    prod = {"Authorization": f"Bearer {api['prod']}"}
    assert (await c.get(f"/api/v1/schedules/{made['id']}", headers=prod)).status_code == 404
    listed = (await c.get("/api/v1/schedules", headers=prod)).json()
    assert [s["type"] for s in listed["data"]] == ["DECLARATIVE"]
    assert listed["data"][0]["environments"][0]["type"] == "PRODUCTION"


async def test_timezones_need_no_key(api: dict[str, Any]) -> None:
    c = api["client"]
    r = await c.get("/api/v1/timezones", headers={"Authorization": ""})
    assert r.status_code == 200
    zones = r.json()["timezones"]
    assert "UTC" in zones and "America/New_York" in zones and zones == sorted(zones)
    no_utc = (await c.get("/api/v1/timezones?excludeUtc=true")).json()["timezones"]
    assert "UTC" not in no_utc and len(no_utc) == len(zones) - 1


async def test_schedule_calls_need_a_key(api: dict[str, Any]) -> None:
    r = await api["client"].get("/api/v1/schedules", headers={"Authorization": ""})
    assert r.status_code == 401


async def test_runs_name_their_schedule_and_can_be_filtered_by_it(
    api: dict[str, Any], clock: ManualClock
) -> None:
    c, engine = api["client"], api["engine"]
    one = (
        await c.post(
            "/api/v1/schedules",
            json={"task": "sync", "cron": "* * * * *", "externalId": "a", "deduplicationKey": "a"},
        )
    ).json()
    other = (await c.post("/api/v1/schedules", json={"task": "sync", "cron": "* * * * *"})).json()
    plain = (await c.post("/api/v1/tasks/plain/trigger", json={"payload": {}})).json()["id"]
    for _ in range(2):
        clock.advance(60)
        assert await engine.schedules.fire_due() == 2

    listed = (await c.get("/api/v1/runs", params={"filter[schedule]": one["id"]})).json()["data"]
    assert len(listed) == 2 and all(r["taskIdentifier"] == "sync" for r in listed)
    run = (await c.get(f"/api/v3/runs/{listed[0]['id']}")).json()
    assert run["schedule"] == {
        "id": one["id"],
        "externalId": "a",
        "deduplicationKey": "a",
        "generator": {"type": "CRON", "expression": "* * * * *", "description": "Every minute"},
    }
    assert run["payload"]["scheduleId"] == one["id"]
    others = (await c.get(f"/api/v1/runs?filter[schedule]={other['id']}")).json()["data"]
    assert len(others) == 2 and not {r["id"] for r in others} & {r["id"] for r in listed}
    assert "schedule" not in (await c.get(f"/api/v3/runs/{plain}")).json()
