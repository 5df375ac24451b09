"""Reschedule, replay, metadata, tags, debounce and batch trigger over HTTP."""

from __future__ import annotations

import json
from typing import Any

from tests.api.test_public_api import api, auth  # noqa: F401  (fixture)


async def trigger(c: Any, key: str, options: dict[str, Any] | None = None) -> str:
    r = await c.post(
        "/api/v1/tasks/hello/trigger",
        headers=auth(key),
        json={"payload": {"who": "x"}, "options": options or {}},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


async def test_reschedule_a_delayed_run(api: dict[str, Any]) -> None:  # noqa: F811
    c, key = api["client"], api["dev"]
    run_id = await trigger(c, key, {"delay": "1h"})
    r = await c.post(f"/api/v1/runs/{run_id}/reschedule", headers=auth(key), json={"delay": "5m"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "DELAYED" and body["waitReason"]["code"] == "DELAYED"
    r = await c.post(f"/api/v1/runs/{run_id}/reschedule", headers=auth(key), json={"delay": "x"})
    assert r.status_code == 400 and "delay" in r.json()["error"]
    queued = await trigger(c, key)
    r = await c.post(f"/api/v1/runs/{queued}/reschedule", headers=auth(key), json={"delay": "1m"})
    assert r.status_code == 422 and "DELAYED" in r.json()["error"]


async def test_replay_with_and_without_a_body(api: dict[str, Any]) -> None:  # noqa: F811
    c, key = api["client"], api["dev"]
    run_id = await trigger(c, key, {"tags": ["t1"]})
    r = await c.post(f"/api/v1/runs/{run_id}/replay", headers=auth(key))
    assert r.status_code == 200, r.text
    replay = (await c.get(f"/api/v3/runs/{r.json()['id']}", headers=auth(key))).json()
    assert replay["replayedFromRunId"] == run_id and replay["tags"] == ["t1"]
    # one of the SDK's four values on the wire, the real source in our own field
    assert (replay["triggerFunction"], replay["triggerSource"]) == ("trigger", "replay")
    body = {"payload": json.dumps({"json": {"who": "y"}}), "payloadType": "application/super+json"}
    r = await c.post(f"/api/v1/runs/{run_id}/replay", headers=auth(key), json=body)
    replay = (await c.get(f"/api/v3/runs/{r.json()['id']}", headers=auth(key))).json()
    assert replay["payload"] == {"who": "y"}
    # unknown fields are ignored (WIRE §16), known ones still checked
    r = await c.post(f"/api/v1/runs/{run_id}/replay", headers=auth(key), json={"nope": 1})
    assert r.status_code == 200, r.text
    r = await c.post(f"/api/v1/runs/{run_id}/replay", headers=auth(key), json={"maxAttempts": "x"})
    assert r.status_code == 400 and "maxAttempts" in r.json()["error"]


async def test_metadata_and_tags(api: dict[str, Any]) -> None:  # noqa: F811
    c, key = api["client"], api["dev"]
    run_id = await trigger(c, key, {"metadata": {"a": 1}})
    r = await c.put(
        f"/api/v1/runs/{run_id}/metadata",
        headers=auth(key),
        json={"operations": [{"type": "increment", "key": "a", "value": 2}]},
    )
    assert r.json() == {"metadata": {"a": 3}}
    assert (await c.get(f"/api/v1/runs/{run_id}/metadata", headers=auth(key))).json() == {
        "metadata": {"a": 3}
    }
    r = await c.put(
        f"/api/v1/runs/{run_id}/metadata",
        headers=auth(key),
        json={"operations": [{"type": "nope"}]},
    )
    assert r.status_code == 400 and "operations[0].type" in r.json()["error"]
    r = await c.post(f"/api/v1/runs/{run_id}/tags", headers=auth(key), json={"tags": ["x", "y"]})
    assert r.status_code == 200
    run = (await c.get(f"/api/v3/runs/{run_id}", headers=auth(key))).json()
    assert run["tags"] == ["x", "y"]
    listed = (await c.get("/api/v1/runs?filter[tag]=y", headers=auth(key))).json()["data"]
    assert [r["id"] for r in listed] == [run_id]


async def test_debounce_over_http(api: dict[str, Any]) -> None:  # noqa: F811
    c, key = api["client"], api["dev"]
    options = {"debounce": {"key": "u1", "delay": "5s"}}
    first = await trigger(c, key, options)
    r = await c.post(
        "/api/v1/tasks/hello/trigger",
        headers=auth(key),
        json={"payload": {"who": "last"}, "options": options},
    )
    assert r.json() == {"id": first, "debounced": True}
    run = (await c.get(f"/api/v3/runs/{first}", headers=auth(key))).json()
    assert run["status"] == "DELAYED" and run["payload"] == {"who": "last"}
    assert run["waitReason"]["code"] == "DEBOUNCED"
    r = await c.post(
        "/api/v1/tasks/hello/trigger",
        headers=auth(key),
        json={"payload": {}, "options": {"debounce": {"key": "u", "delay": "0s"}}},
    )
    assert r.status_code == 422 and "debounce.delay" in r.json()["error"]


async def test_batch_trigger_one_shot_and_two_phase(api: dict[str, Any]) -> None:  # noqa: F811
    c, key = api["client"], api["dev"]
    items = [{"task": "hello", "payload": {"who": str(i)}} for i in range(5)]
    r = await c.post("/api/v2/tasks/batch", headers=auth(key), json={"items": items})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"].startswith("batch_") and body["runCount"] == 5 and len(body["runs"]) == 5
    batch = (await c.get(f"/api/v2/batches/{body['id']}", headers=auth(key))).json()
    assert batch["status"] == "PROCESSING" and batch["runs"] == body["runs"]
    assert batch["processing"] == {"errors": []}
    listed = (
        await c.get(f"/api/v1/runs?filter[batch]={body['id']}&page[size]=10", headers=auth(key))
    ).json()["data"]
    assert sorted(r["id"] for r in listed) == sorted(body["runs"])
    # refused items get no run and an error each; the others are triggered
    mixed = [
        {"task": "hello", "payload": {"who": 1}},
        {"task": "hello", "payload": {"who": "ok"}},
        {"task": "no-such-task", "payload": {}},
        {"task": "hello", "payload": {"who": "x"}, "options": {"delay": "soon"}},
    ]
    r = await c.post("/api/v2/tasks/batch", headers=auth(key), json={"items": mixed})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["runCount"] == 4 and len(body["runs"]) == 1
    errors = {e["index"]: e for e in body["errors"]}
    assert sorted(errors) == [0, 2, 3]
    assert "items[0].payload.who" in errors[0]["error"]
    assert errors[0]["errorCode"] == "PAYLOAD_INVALID"
    assert (
        errors[2]["errorCode"] == "TASK_NOT_FOUND" and errors[2]["taskIdentifier"] == "no-such-task"
    )
    assert "items[3].options.delay" in errors[3]["error"]
    batch = (await c.get(f"/api/v2/batches/{body['id']}", headers=auth(key))).json()
    assert batch["processing"]["errors"] == body["errors"] and batch["runs"] == body["runs"]

    r = await c.post("/api/v3/batches", headers=auth(key), json={"runCount": 2})
    assert r.status_code == 202 and r.json()["isCached"] is False
    batch_id = r.json()["id"]
    lines = "\n".join(
        json.dumps({"index": i, "task": "hello", "payload": {"who": str(i)}, "options": {}})
        for i in range(2)
    )
    headers = {**auth(key), "content-type": "application/x-ndjson"}
    r = await c.post(f"/api/v3/batches/{batch_id}/items", headers=headers, content=lines)
    assert r.json() == {
        "id": batch_id,
        "itemsAccepted": 2,
        "itemsDeduplicated": 0,
        "sealed": True,
        "enqueuedCount": 2,
        "expectedCount": 2,
    }
    again = await c.post(f"/api/v3/batches/{batch_id}/items", headers=headers, content=lines)
    assert again.json()["itemsDeduplicated"] == 2 and again.json()["itemsAccepted"] == 0
    r = await c.post(
        f"/api/v3/batches/{batch_id}/items",
        headers={**auth(key), "content-type": "text/plain"},
        content=lines,
    )
    assert r.status_code == 415
    r = await c.get("/api/v2/batches/batch_nope", headers=auth(key))
    assert r.status_code == 404

    # streamed: a refused item is recorded once, counts as handled, and seals the batch
    r = await c.post("/api/v3/batches", headers=auth(key), json={"runCount": 3})
    batch_id = r.json()["id"]
    lines = "\n".join(
        [
            json.dumps({"index": 0, "task": "hello", "payload": {"who": "a"}}),
            json.dumps({"index": 1, "task": "hello", "payload": {"who": 2}}),
            json.dumps({"index": 2, "task": "hello", "payload": "x", "options": {"tags": 5}}),
        ]
    )
    for _ in range(2):  # a resent stream changes nothing
        r = await c.post(f"/api/v3/batches/{batch_id}/items", headers=headers, content=lines)
        assert r.status_code == 200, r.text
    assert r.json()["sealed"] is True and r.json()["itemsDeduplicated"] == 3
    batch = (await c.get(f"/api/v2/batches/{batch_id}", headers=auth(key))).json()
    assert [e["index"] for e in batch["processing"]["errors"]] == [1, 2]
    assert len(batch["runs"]) == 1 and batch["status"] == "PROCESSING"
