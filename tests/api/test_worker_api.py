"""The worker API in process: claims that start runs, batched reports, bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from triggerfish.api.app import create_app
from triggerfish.engine import Engine

MANIFEST = {
    "id": "job",
    "retry": {"max_attempts": 3, "min_delay": 0, "max_delay": 0, "factor": 1, "jitter": 0},
    "machine": "micro",
    "queue": {"name": "task/job", "concurrency_limit": None},
}


@pytest.fixture
async def worker(engine: Engine) -> AsyncIterator[dict[str, Any]]:
    key, _ = await engine.environments.create_key("dev", "test")
    app = create_app(engine, manage_engine=False)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers=headers
    ) as client:
        r = await client.post(
            "/worker/v1/register",
            json={"version": "v1", "name": "w", "concurrency": 2, "tasks": [MANIFEST]},
        )
        assert r.status_code == 200, r.text
        yield {"client": client, "id": r.json()["worker_id"]}


async def _trigger(client: httpx.AsyncClient, n: int) -> list[str]:
    ids = []
    for i in range(n):
        r = await client.post("/api/v1/tasks/job/trigger", json={"payload": {"i": i}})
        ids.append(r.json()["id"])
    return ids


async def _claim(worker: dict[str, Any], most: int, start: int) -> list[dict[str, Any]]:
    """Claim runs right away (no long poll); the first ``start`` come back started."""
    r = await worker["client"].post(
        "/worker/v1/dequeue",
        json={"worker_id": worker["id"], "max": most, "wait": 0, "start": start},
    )
    assert r.status_code == 200, r.text
    runs: list[dict[str, Any]] = r.json()["runs"]
    return runs


async def _run(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/api/v3/runs/{run_id}")).json()
    return body


async def test_a_claim_starts_as_many_runs_as_the_worker_has_free_slots(
    worker: dict[str, Any],
) -> None:
    c = worker["client"]
    await _trigger(c, 3)
    claimed = await _claim(worker, 3, 2)
    assert [j["started"] for j in claimed] == [True, True, False]
    statuses = [(await _run(c, j["run_id"]))["status"] for j in claimed]
    assert statuses == ["EXECUTING", "EXECUTING", "DEQUEUED"]
    started = await _run(c, claimed[0]["run_id"])
    assert started["startedAt"] and started["attemptCount"] == 1
    # the prefetched one is started by its own report, as before
    third = claimed[2]
    r = await c.post(
        "/worker/v1/reports",
        json={"starts": [{"attempt_id": third["attempt_id"], "run_id": third["run_id"]}]},
    )
    assert r.json() == {
        "starts": [{"attempt_id": third["attempt_id"], "status": "EXECUTING"}],
        "completions": [],
        "runs": [],  # nothing claimed: the report asked for no claim
    }
    assert (await _run(c, third["run_id"]))["status"] == "EXECUTING"


async def test_reports_in_one_request_each_count_only_if_current(worker: dict[str, Any]) -> None:
    c = worker["client"]
    await _trigger(c, 4)
    a, b, d, e = await _claim(worker, 4, 3)
    error = {"name": "Boom", "message": "no"}
    r = await c.post(
        "/worker/v1/reports",
        json={
            "starts": [
                {"attempt_id": e["attempt_id"], "run_id": e["run_id"]},
                # an attempt that is already running cannot start again
                {"attempt_id": a["attempt_id"], "run_id": a["run_id"]},
            ],
            "completions": [
                {"attempt_id": a["attempt_id"], "run_id": a["run_id"], "ok": True, "output": 1},
                {"attempt_id": b["attempt_id"], "run_id": b["run_id"], "ok": False, "error": error},
                {"attempt_id": d["attempt_id"], "run_id": d["run_id"], "ok": True, "output": 3},
                # a duplicate report of a finished attempt changes nothing
                {"attempt_id": a["attempt_id"], "run_id": a["run_id"], "ok": True, "output": 9},
            ],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["starts"] == [
        {"attempt_id": e["attempt_id"], "status": "EXECUTING"},
        {"attempt_id": a["attempt_id"], "stale": True},
    ]
    results = r.json()["completions"]
    assert [x["attempt_id"] for x in results] == [
        a["attempt_id"],
        b["attempt_id"],
        d["attempt_id"],
        a["attempt_id"],
    ]
    assert results[0] == {"attempt_id": a["attempt_id"], "status": "COMPLETED"}
    assert results[1]["status"] == "QUEUED" and "retry_at" in results[1]
    assert results[2]["status"] == "COMPLETED"
    assert results[3] == {"attempt_id": a["attempt_id"], "stale": True}
    assert (await _run(c, a["run_id"]))["output"] == 1
    assert (await _run(c, d["run_id"]))["output"] == 3
    retried = await _run(c, b["run_id"])
    assert retried["status"] == "QUEUED" and retried["attemptCount"] == 1


async def test_bad_worker_input_is_refused_naming_the_field(worker: dict[str, Any]) -> None:
    c = worker["client"]
    r = await c.post("/worker/v1/reports", json={"starts": [], "completions": []})
    assert r.status_code == 422 and "completions" in r.text
    r = await c.post("/worker/v1/reports", json={"completions": [{"run_id": "x", "ok": True}]})
    assert r.status_code == 422 and "attempt_id" in r.text
    r = await c.post("/worker/v1/dequeue", json={"worker_id": worker["id"], "max": 1, "start": -1})
    assert r.status_code == 422 and "start" in r.text
    r = await c.post(
        "/worker/v1/register",
        json={"version": "v2", "name": "w", "concurrency": 1, "tasks": [{"retry": {}}]},
    )
    assert r.status_code == 422 and "tasks" in r.text and "id" in r.text


async def test_a_stopping_worker_hands_back_runs_it_holds_without_spending_a_retry(
    worker: dict[str, Any],
) -> None:
    c = worker["client"]
    [run_id] = await _trigger(c, 1)
    [job] = await _claim(worker, 1, 1)
    assert job["started"]
    r = await c.post("/worker/v1/deregister", json={"worker_id": worker["id"]})
    assert r.status_code == 200
    run = await _run(c, run_id)
    assert run["status"] == "QUEUED"
    assert [a["status"] for a in run["attempts"]] == ["RELEASED"]


async def test_a_report_claims_the_workers_next_runs(worker: dict[str, Any]) -> None:
    c = worker["client"]
    await _trigger(c, 3)
    [first] = await _claim(worker, 1, 1)
    r = await c.post(
        "/worker/v1/reports",
        json={
            "completions": [
                {"attempt_id": first["attempt_id"], "run_id": first["run_id"], "ok": True}
            ],
            "claim": {"worker_id": worker["id"], "max": 5, "start": 1},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["completions"] == [{"attempt_id": first["attempt_id"], "status": "COMPLETED"}]
    # the two runs left come back with the report: one started, one claimed ahead
    assert [j["started"] for j in body["runs"]] == [True, False]
    statuses = [(await _run(c, j["run_id"]))["status"] for j in body["runs"]]
    assert statuses == ["EXECUTING", "DEQUEUED"]
    r = await c.post(
        "/worker/v1/reports",
        json={
            "starts": [
                {"attempt_id": body["runs"][1]["attempt_id"], "run_id": body["runs"][1]["run_id"]}
            ],
            "claim": {"worker_id": worker["id"], "max": 5},
        },
    )
    assert r.json()["runs"] == []  # nothing left to claim; a report never waits for work


async def test_reports_of_a_stopped_worker_count_but_claim_nothing(
    worker: dict[str, Any],
) -> None:
    c = worker["client"]
    await _trigger(c, 2)
    [job] = await _claim(worker, 1, 1)
    r = await c.post(
        "/worker/v1/reports",
        json={
            "completions": [{"attempt_id": job["attempt_id"], "run_id": job["run_id"], "ok": True}],
            "claim": {"worker_id": "worker_unknown", "max": 5, "start": 1},
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["runs"] == []
    assert r.json()["completions"][0]["status"] == "COMPLETED"


async def test_registration_names_how_long_a_busy_worker_holds_reports_back(
    engine: Engine,
) -> None:
    key, _ = await engine.environments.create_key("dev", "test")
    body = {"version": "v1", "name": "w", "concurrency": 1, "tasks": [MANIFEST]}

    async def linger() -> Any:
        app = create_app(engine, manage_engine=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            r = await client.post("/worker/v1/register", json=body)
            assert r.status_code == 200, r.text
            return r.json()["report_linger"]

    # a commit is a disk flush on PostgreSQL; SQLite's single writer gains nothing
    assert await linger() == (0.002 if engine.res.db.dialect == "postgresql" else 0.0)
    engine.res.settings.report_linger = 0.01
    assert await linger() == 0.01
