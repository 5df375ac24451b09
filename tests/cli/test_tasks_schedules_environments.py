"""Fixes of issue 20, part 3: the task list, payloads checked at trigger time,
schedules changed only where asked and run by hand, named environments."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.cli.conftest import Live, invoke_async
from triggerfish import schedules, task
from triggerfish.errors import ApiError


@task(id="takes-a-dict")
def takes_a_dict(payload: dict[str, Any]) -> int:
    return len(payload)


@schedules.task(id="nightly", cron="0 3 * * *", timezone="Europe/Paris")
def nightly(payload: schedules.ScheduledPayload) -> None:
    pass


@schedules.task(id="sync")
def sync(payload: schedules.ScheduledPayload) -> None:
    pass


MANIFESTS = [t.manifest() for t in (takes_a_dict, nightly, sync)]


async def test_tasks_are_listed_with_file_queue_retry_schedule_and_versions(live: Live) -> None:
    await live.register(MANIFESTS, version="v1")
    live.clock.advance(seconds=1)
    await live.register(MANIFESTS[:2], version="v2")
    listed = await invoke_async("tasks", "list", "--json", env=live.env)
    assert listed.exit_code == 0, listed.output
    tasks = {t["id"]: t for t in json.loads(listed.stdout)["data"]}
    assert set(tasks) == {"job", "takes-a-dict", "nightly", "sync"}
    mine = tasks["takes-a-dict"]
    assert mine["file"] == "tests/cli/test_tasks_schedules_environments.py"
    assert mine["queue"]["name"] == "task/takes-a-dict"
    assert mine["retry"]["maxAttempts"] == 3  # the default policy
    assert [v["version"] for v in mine["versions"]] == ["v2", "v1"]
    assert [v["version"] for v in tasks["sync"]["versions"]] == ["v1"]
    assert tasks["nightly"]["schedule"] == {"cron": "0 3 * * *", "timezone": "Europe/Paris"}
    table = await invoke_async("tasks", "list", env=live.env)
    assert "takes-a-dict" in table.stdout and "nightly" in table.stdout


async def test_a_dict_payload_is_checked_when_the_run_is_triggered(live: Live) -> None:
    await live.register(MANIFESTS, version="v1")
    headers = {"Authorization": f"Bearer {live.key}"}
    for wrong in ("hello", 42, [1]):
        r = await live.http.post(
            f"{live.url}/api/v1/tasks/takes-a-dict/trigger",
            json={"payload": wrong},
            headers=headers,
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"].startswith("payload:") and "object" in r.json()["error"]
    runs = await live.http.get(f"{live.url}/api/v1/runs", headers=headers)
    assert runs.json()["data"] == []  # nothing stored
    cli = await invoke_async("trigger", "takes-a-dict", "--payload", '"hello"', env=live.env)
    assert cli.exit_code == 1 and "payload" in cli.stderr
    assert await live.trigger("takes-a-dict", {"a": 1})


async def test_schedules_update_changes_only_what_it_is_given(live: Live) -> None:
    await live.register(MANIFESTS, version="v1")
    made = await live.post(
        "/api/v1/schedules",
        {"task": "sync", "cron": "0 9 * * *", "timezone": "Europe/Paris", "externalId": "c-1"},
    )
    changed = await invoke_async(
        "schedules", "update", made["id"], "--cron", "0 10 * * *", "--json", env=live.env
    )
    assert changed.exit_code == 0, changed.output
    after = json.loads(changed.stdout)
    assert after["generator"]["expression"] == "0 10 * * *"
    assert (after["timezone"], after["externalId"], after["task"]) == (
        "Europe/Paris",
        "c-1",
        "sync",
    )


async def test_schedules_trigger_runs_the_task_now_with_a_scheduled_payload(live: Live) -> None:
    await live.register(MANIFESTS, version="v1")
    made = await live.post(
        "/api/v1/schedules",
        {"task": "sync", "cron": "0 9 * * *", "timezone": "Europe/Paris", "externalId": "c-1"},
    )
    result = await invoke_async("schedules", "trigger", made["id"], env=live.env)
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip()
    headers = {"Authorization": f"Bearer {live.key}"}
    run = (await live.http.get(f"{live.url}/api/v3/runs/{run_id}", headers=headers)).json()
    assert run["taskIdentifier"] == "sync"
    payload = run["payload"]
    assert payload["scheduleId"] == made["id"] and payload["externalId"] == "c-1"
    assert payload["timezone"] == "Europe/Paris" and payload["timestamp"]
    assert len(payload["upcoming"]) > 0
    again = await live.http.get(f"{live.url}/api/v1/schedules/{made['id']}", headers=headers)
    assert again.json()["nextRun"] == made["nextRun"]  # the timetable did not move


async def test_named_environments_have_their_own_keys(live: Live, sqlite_db: str) -> None:
    admin = {"DATABASE_URL": sqlite_db}
    made = await invoke_async("environments", "create", "staging", env=admin)
    assert made.exit_code == 0, made.output
    bad = await invoke_async("environments", "create", "Not_Valid", env=admin)
    assert bad.exit_code == 1 and "[a-z0-9-]+" in bad.stderr
    again = await invoke_async("environments", "create", "staging", env=admin)
    assert again.exit_code == 1 and "exists" in again.stderr
    created = await invoke_async("keys", "create", "--env", "staging", "--json", env=admin)
    assert created.exit_code == 0, (created.output, created.exception)
    key = json.loads(created.stdout)["key"]
    assert key.startswith("tr_staging_")
    listed = json.loads((await invoke_async("environments", "list", "--json", env=admin)).stdout)
    assert {e["slug"]: e["activeKeys"] for e in listed["data"]}["staging"] == 1

    await live.trigger()  # a dev run, which staging does not see
    staging = {"TRIGGERFISH_API_URL": live.url, "TRIGGERFISH_SECRET_KEY": key}
    runs = await invoke_async("runs", "list", "--env", "staging", "--json", env=staging)
    assert runs.exit_code == 0, runs.output
    assert json.loads(runs.stdout)["data"] == []
    wrong = await invoke_async("runs", "list", "--env", "prod", env=staging)
    assert wrong.exit_code == 2 and "'staging'" in wrong.stderr


async def test_an_environments_retention_is_shown_and_set(live: Live, sqlite_db: str) -> None:
    admin = {"DATABASE_URL": sqlite_db}

    async def shown(slug: str) -> dict[str, Any]:
        result = await invoke_async("environments", "retention", slug, "--json", env=admin)
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.stdout))

    assert await shown("prod") == {"environment": "prod", "days": 30, "default": True}
    made = await invoke_async("environments", "retention", "prod", "--days", "7", env=admin)
    assert made.exit_code == 0 and "7 days" in made.stdout, made.output
    assert await shown("prod") == {"environment": "prod", "days": 7, "default": False}
    assert (await shown("dev"))["days"] == 30  # each environment its own
    # the servers on that database apply it
    env = await live.engine.environments.by_slug("prod")
    assert await live.engine.maintenance.retention(env.id) == (7, True)
    back = await invoke_async("environments", "retention", "prod", "--default", env=admin)
    assert back.exit_code == 0, back.output
    assert await shown("prod") == {"environment": "prod", "days": 30, "default": True}
    zero = await invoke_async("environments", "retention", "prod", "--days", "0", env=admin)
    assert zero.exit_code == 2 and "--days" in zero.output
    unknown = await invoke_async("environments", "retention", "nope", env=admin)
    assert unknown.exit_code == 1 and "no environment 'nope'" in unknown.stderr


async def test_sdk_update_and_trigger_of_schedules(live: Live) -> None:
    await live.register(MANIFESTS, version="v1")
    from triggerfish import Triggerfish

    async with httpx.AsyncClient():
        client = Triggerfish(api_url=live.url, secret_key=live.key)
        made = await client.schedules.create_async(
            task="sync", cron="0 9 * * *", timezone="Asia/Tokyo", external_id="x"
        )
        changed = await client.schedules.update_async(made.id, cron="0 8 * * *")
        assert (changed.timezone, changed.external_id) == ("Asia/Tokyo", "x")
        handle = await client.schedules.trigger_async(made.id)
        assert handle.id.startswith("run_")
        try:
            await client.schedules.trigger_async("sched_nope")
        except ApiError as exc:
            assert exc.status == 404
        else:
            raise AssertionError("a missing schedule was triggered")
        await client.aclose()
