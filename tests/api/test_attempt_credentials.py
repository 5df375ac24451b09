"""Attempt credentials: a task process's powers, in its own environment, for its attempt only."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.api.conftest import MANIFEST, Served
from triggerfish._domain.attempts import Job, Succeeded
from triggerfish.engine import Engine
from triggerfish.engine.keyring import Keyring
from triggerfish.worker.api_client import CompletionReport, WorkerApi


async def _claim_one(served: Served) -> Job:
    await served.trigger(1)
    [run] = await served.api.dequeue(served.worker_id, 1, 0, start=1)
    return run.job


def _as(served: Served, credential: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=served.url, headers={"Authorization": f"Bearer {credential}"})


async def _finish(served: Served, job: Job) -> None:
    completion = CompletionReport(job.run_id, job.attempt_id, Succeeded(None))
    await served.api.reports([], [completion], give_up_after=5)


async def test_a_claim_carries_a_credential_that_acts_in_the_runs_environment(
    served: Served,
) -> None:
    job = await _claim_one(served)
    credential = job.credential
    assert credential.startswith("tfa_") and served.key not in credential
    async with _as(served, credential) as task:
        own = await task.get(f"/api/v3/runs/{job.run_id}")
        assert own.status_code == 200 and own.json()["status"] == "EXECUTING"
        child = await task.post("/api/v1/tasks/job/trigger", json={"payload": {"child": 1}})
        assert child.status_code == 200, child.text
        # the child is a run of the same environment, readable with the environment's key
        assert await served.status(child.json()["id"]) == "QUEUED"


async def test_a_credential_is_refused_once_its_attempt_has_ended(served: Served) -> None:
    job = await _claim_one(served)
    await _finish(served, job)
    async with _as(served, job.credential) as task:
        r = await task.get(f"/api/v3/runs/{job.run_id}")
    assert r.status_code == 401 and "no longer its run's current attempt" in r.json()["error"]


async def test_a_credential_never_reaches_another_environment(
    served: Served, engine: Engine
) -> None:
    prod_key, _ = await engine.environments.create_key("prod", "prod")
    prod_worker = WorkerApi(served.url, prod_key, socket=False)
    registration = {"version": "v1", "name": "p", "concurrency": 1, "tasks": [MANIFEST]}
    await prod_worker.register(registration)
    await prod_worker.close()
    async with httpx.AsyncClient(
        base_url=served.url, headers={"Authorization": f"Bearer {prod_key}"}
    ) as prod:
        r = await prod.post("/api/v1/tasks/job/trigger", json={"payload": {}})
        assert r.status_code == 200, r.text
        prod_run = r.json()["id"]
    job = await _claim_one(served)
    async with _as(served, job.credential) as task:
        r = await task.get(f"/api/v3/runs/{prod_run}")
    assert r.status_code == 404


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"),  # signature altered
        lambda c: c.replace("attempt_", "attempt_0", 1),  # another attempt id, same signature
        lambda c: c.split(".")[0],  # no signature at all
    ],
)
async def test_a_forged_credential_is_refused(served: Served, tamper: Any) -> None:
    job = await _claim_one(served)
    async with _as(served, tamper(job.credential)) as task:
        r = await task.get(f"/api/v3/runs/{job.run_id}")
    assert r.status_code == 401


async def test_a_credential_signed_with_another_server_secret_is_refused(served: Served) -> None:
    job = await _claim_one(served)
    other = Keyring.ephemeral()
    forged = f"tfa_{job.attempt_id}.{other.sign('attempt-credential', job.attempt_id)}"
    async with _as(served, forged) as task:
        r = await task.get(f"/api/v3/runs/{job.run_id}")
    assert r.status_code == 401


async def test_a_credential_cannot_act_as_a_worker(served: Served) -> None:
    job = await _claim_one(served)
    async with _as(served, job.credential) as task:
        r = await task.post(
            "/worker/v1/heartbeat", json={"worker_id": served.worker_id, "attempt_ids": []}
        )
        assert r.status_code == 403 and "attempt credential" in r.json()["error"]
        r = await task.post(
            "/worker/v1/dequeue", json={"worker_id": served.worker_id, "max": 1, "wait": 0}
        )
        assert r.status_code == 403


async def test_on_the_worker_socket_a_credential_writes_its_own_journal_only(
    served: Served, engine: Engine
) -> None:
    mine = await _claim_one(served)
    theirs = await _claim_one(served)
    url = served.url.replace("http", "ws", 1) + "/worker/v1/socket"
    headers = {"Authorization": f"Bearer {mine.credential}"}

    def journal(call_id: int, job: Job, credential: str | None) -> str:
        body = {"run_id": job.run_id, "seq": 0, "kind": "step", "name": "a", "status": "OK"}
        frame = {"id": call_id, "op": "journal", "attempt_id": job.attempt_id, "body": body}
        if credential is not None:
            frame["credential"] = credential
        return json.dumps(frame)

    async with connect(url, additional_headers=headers) as ws:
        await ws.send(journal(1, mine, mine.credential))
        assert json.loads(await ws.recv()) == {"id": 1, "status": 200, "body": {"ok": True}}
        for call_id, credential in [(2, mine.credential), (3, None), (4, "tfa_x.forged")]:
            await ws.send(journal(call_id, theirs, credential))
            refused = json.loads(await ws.recv())
            assert refused["status"] == 403 and "own attempt" in refused["error"]
        heartbeat = {"worker_id": served.worker_id, "attempt_ids": []}
        await ws.send(json.dumps({"id": 5, "op": "heartbeat", "body": heartbeat}))
        assert json.loads(await ws.recv())["status"] == 403
    journals = await engine.journal.for_runs([mine.run_id, theirs.run_id])
    assert len(journals.get(mine.run_id, [])) == 1
    assert journals.get(theirs.run_id, []) == []  # nothing written for the other run
    # an ended attempt cannot open the socket again
    await _finish(served, mine)
    with pytest.raises(InvalidStatus):
        async with connect(url, additional_headers=headers):
            pass


async def test_a_task_process_keeps_its_socket_for_its_next_attempt(served: Served) -> None:
    """Each frame carries its attempt's credential: the socket a task process opened
    for one attempt writes the next attempt's journal, and never the ended one's."""
    first = await _claim_one(served)
    url = served.url.replace("http", "ws", 1) + "/worker/v1/socket"
    async with connect(
        url, additional_headers={"Authorization": f"Bearer {first.credential}"}
    ) as ws:
        await _finish(served, first)
        second = await _claim_one(served)
        for call_id, job, expected in [(1, second, 200), (2, first, 409)]:
            body = {"run_id": job.run_id, "seq": 0, "kind": "step", "name": "a", "status": "OK"}
            frame = {"id": call_id, "op": "journal", "attempt_id": job.attempt_id}
            await ws.send(json.dumps({**frame, "credential": job.credential, "body": body}))
            assert json.loads(await ws.recv())["status"] == expected


async def _prod_client(served: Served, engine: Engine) -> httpx.AsyncClient:
    prod_key, _ = await engine.environments.create_key("prod", "prod")
    return _as(served, prod_key)


async def test_another_environments_key_cannot_write_into_a_run(
    served: Served, engine: Engine
) -> None:
    job = await _claim_one(served)
    line = {"message": "from prod", "level": "INFO", "ts": 1.0}
    async with await _prod_client(served, engine) as prod:
        r = await prod.post("/worker/v1/logs", json={"attempt_id": job.attempt_id, "lines": [line]})
        assert r.status_code == 409, r.text
        span = {"span_id": "1" * 16, "name": "from prod", "start_time": 1.0, "end_time": 2.0}
        r = await prod.post(
            "/worker/v1/spans", json={"attempt_id": job.attempt_id, "spans": [span]}
        )
        assert r.status_code == 409, r.text
        calls: list[tuple[str, dict[str, Any]]] = [
            ("kv_set", {"key": "k", "value": 1}),
            ("send_event", {"name": "e"}),
            ("complete_token", {"id": "waitpoint_x"}),
            ("blob", {"seq": 0}),
        ]
        for op, body in calls:
            r = await prod.post(
                f"/worker/v1/attempts/{job.attempt_id}/{op}", json={"run_id": job.run_id, **body}
            )
            assert r.status_code == 409, (op, r.text)
    logs = await served.http.get(f"/api/v1/runs/{job.run_id}/logs")
    assert logs.json()["data"] == []
    trace = await served.http.get(f"/api/v1/runs/{job.run_id}/trace")
    assert "from prod" not in trace.text


async def test_a_worker_call_for_another_runs_attempt_is_refused(served: Served) -> None:
    first = await _claim_one(served)
    second = await _claim_one(served)
    r = await served.http.post(
        f"/worker/v1/attempts/{first.attempt_id}/kv_set",
        json={"run_id": second.run_id, "key": "k", "value": 1},
    )
    assert r.status_code == 409, r.text
