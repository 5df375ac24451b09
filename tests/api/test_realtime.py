"""Realtime over server-sent events: one run, a tag, a batch; resume with Last-Event-ID;
the Python client's subscribe iterators (sync and async)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.api.conftest import Served
from tests.support import wait_for_async
from triggerfish import Triggerfish
from triggerfish.engine import Engine
from triggerfish.engine.dequeue import WorkerIdentity
from triggerfish.sdk._models import RealtimeEvent
from triggerfish.sdk._sse import Parser


def identity(served: Served, engine: Engine, env_id: str) -> WorkerIdentity:
    return WorkerIdentity(served.worker_id, env_id, "v1", ("job",))


async def run_to_completion(served: Served, engine: Engine, run_id: str, output: Any) -> None:
    env = await engine.environments.by_slug("dev")
    [claimed] = await engine.dequeue.claim(identity(served, engine, env.id), 1)
    assert claimed.id == run_id and claimed.claimed_attempt_id is not None
    attempt = claimed.claimed_attempt_id
    await engine.attempts.start(run_id, attempt)
    await engine.metadata.update(env.id, run_id, replace={"progress": 1})
    await engine.attempts.succeed(run_id, attempt, output)


async def sse_events(
    http: httpx.AsyncClient, path: str, *, last_id: str | None = None, stop_after: int = 0
) -> list[tuple[str, str | None, Any]]:
    """(event, id, data) of a stream until its end (or ``stop_after`` events: a drop)."""
    headers = {"Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    out: list[tuple[str, str | None, Any]] = []
    parser = Parser()
    async with http.stream("GET", path, headers=headers, timeout=30) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            event = parser.line(line)
            if event is None:
                continue
            out.append((event.event, event.id, event.data))
            if event.event == "end" or len(out) == stop_after:
                return out
    return out


def statuses(events: list[RealtimeEvent]) -> list[str | None]:
    return [e.status for e in events if e.status is not None]


async def test_subscribe_to_a_run_sees_its_life_and_ends(served: Served, engine: Engine) -> None:
    [run_id] = await served.trigger(1)
    client = Triggerfish(api_url=served.url, secret_key=served.key, socket=False)
    got: list[RealtimeEvent] = []

    async def subscribe() -> None:
        async for event in client.runs.subscribe_async(run_id):
            got.append(event)

    subscribing = asyncio.create_task(subscribe())
    await wait_for_async(lambda: bool(got), timeout=10)  # the snapshot, before the run moves
    await run_to_completion(served, engine, run_id, {"answer": 42})
    await asyncio.wait_for(subscribing, 10)  # ended by itself: the run is final
    await client.aclose()
    assert got[0].kind == "snapshot" and got[0].status == "QUEUED"
    assert statuses(got) == ["QUEUED", "DEQUEUED", "EXECUTING", "COMPLETED"]
    assert [e.data for e in got if e.kind == "metadata"] == [{"metadata": {"progress": 1}}]
    assert got[-1].data["output"] == {"answer": 42}
    assert all(e.run_id == run_id for e in got)


async def test_resume_after_a_drop_loses_and_repeats_nothing(
    served: Served, engine: Engine
) -> None:
    [run_id] = await served.trigger(1)
    path = f"/api/v1/realtime/runs/{run_id}"
    start = await sse_events(served.http, path, stop_after=1)  # the snapshot, then a drop
    await run_to_completion(served, engine, run_id, "done")
    # the connection dropped after the snapshot; two more drops along the way
    events = []
    last = start[-1][1]
    for stop_after in (2, 1, 0):
        part = await sse_events(served.http, path, last_id=last, stop_after=stop_after)
        events += part
        last = next((i for _, i, _ in reversed(part) if i is not None), last)
    changes = [(e, i, d["kind"]) for e, i, d in events if e == "change"]
    assert [k for _, _, k in changes] == ["status", "status", "metadata", "status"]
    ids = [int(i or 0) for _, i, _ in changes]
    assert ids == sorted(set(ids)) and ids[0] > int(start[0][1] or 0)
    assert events[-1][0] == "end"
    # a finished run's stream: its snapshot, then the end at once
    again = await sse_events(served.http, path)
    assert [e for e, _, _ in again] == ["snapshot", "end"]
    assert again[0][2]["data"]["status"] == "COMPLETED"


async def test_batch_subscription_ends_when_every_run_is_final(
    served: Served, engine: Engine
) -> None:
    r = await served.http.post(
        "/api/v2/tasks/batch",
        json={"items": [{"task": "job", "payload": {"i": i}} for i in (1, 2)]},
    )
    assert r.status_code == 200, r.text
    batch_id, run_ids = r.json()["id"], r.json()["runs"]
    client = Triggerfish(api_url=served.url, secret_key=served.key, socket=False)

    got: list[RealtimeEvent] = []

    def subscribe() -> None:
        got.extend(client.batches.subscribe(batch_id))  # the sync face, in a thread

    subscribing = asyncio.create_task(asyncio.to_thread(subscribe))
    await wait_for_async(lambda: len(got) == 2, timeout=10)  # both snapshots
    env = await engine.environments.by_slug("dev")
    for run_id in run_ids:
        [claimed] = await engine.dequeue.claim(identity(served, engine, env.id), 1)
        assert claimed.claimed_attempt_id is not None
        await engine.attempts.start(claimed.id, claimed.claimed_attempt_id)
        await engine.attempts.succeed(claimed.id, claimed.claimed_attempt_id, run_id)
    await asyncio.wait_for(subscribing, 20)
    client.close()
    assert {e.run_id for e in got} == set(run_ids)
    final = [e for e in got if e.status == "COMPLETED"]
    assert sorted(e.data["output"] for e in final if e.kind == "status") == sorted(run_ids)


async def test_tag_subscription_sees_only_tagged_runs(served: Served, engine: Engine) -> None:
    client = Triggerfish(api_url=served.url, secret_key=served.key, socket=False)
    got: list[RealtimeEvent] = []

    async def subscribe() -> None:
        async for event in client.runs.subscribe_to_tag_async("user:7"):
            got.append(event)
            if event.kind == "created":
                return

    subscribing = asyncio.create_task(subscribe())
    await asyncio.sleep(0.2)  # connected (a missed create would only make this fail)
    await served.http.post("/api/v1/tasks/job/trigger", json={"payload": {}})
    tagged = await served.http.post(
        "/api/v1/tasks/job/trigger", json={"payload": {}, "options": {"tags": ["user:7"]}}
    )
    await asyncio.wait_for(subscribing, 10)
    await client.aclose()
    assert [(e.kind, e.run_id) for e in got] == [("created", tagged.json()["id"])]


async def test_bad_requests(served: Served) -> None:
    assert (await served.http.get("/api/v1/realtime/runs/run_missing")).status_code == 404
    assert (await served.http.get("/api/v1/realtime/batches/batch_missing")).status_code == 404
    r = await served.http.get("/api/v1/realtime/runs?tags=")
    assert r.status_code in (400, 422) and "tags" in r.text
    [run_id] = await Served.trigger(served, 1)
    r = await served.http.get(f"/api/v1/realtime/runs/{run_id}", headers={"Last-Event-ID": "x"})
    assert r.status_code in (400, 422) and "Last-Event-ID" in r.text
    assert json.loads(r.text)
    anonymous = await served.http.get(
        f"/api/v1/realtime/runs/{run_id}", headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401


async def test_the_shape_protocol_of_the_official_sdk(served: Served, engine: Engine) -> None:
    """WIRE.md §13: the first answer lists the run, later ones what changed, live ones
    wait for a change; every answer names its offset and handle."""
    [run_id] = await served.trigger(1)
    path = f"/realtime/v1/runs/{run_id}"
    first = await served.http.get(path, params={"offset": "-1", "log": "full"})
    assert first.status_code == 200, first.text
    assert {"electric-offset", "electric-handle", "electric-schema"} <= set(first.headers)
    [insert, control] = first.json()
    assert control == {"headers": {"control": "up-to-date"}}
    assert insert["headers"] == {"operation": "insert"}
    row = insert["value"]
    assert row["id"] == run_id and row["status"] == "PENDING" and row["runTags"] == []
    assert "T" not in row["createdAt"] and not row["createdAt"].endswith("Z")
    offset, handle = first.headers["electric-offset"], first.headers["electric-handle"]

    live = asyncio.create_task(
        served.http.get(
            path,
            params={"offset": offset, "handle": handle, "live": "true", "cursor": "0"},
            timeout=30,
        )
    )
    await asyncio.sleep(0.1)
    await run_to_completion(served, engine, run_id, {"answer": 42})
    woke = await asyncio.wait_for(live, 20)
    assert woke.status_code == 200 and "electric-cursor" in woke.headers
    assert woke.json()[-1] == {"headers": {"control": "up-to-date"}}
    # read on until the run shows completed: updates carry whole rows
    rows = [m["value"] for m in woke.json() if "value" in m]
    offset = woke.headers["electric-offset"]
    while not rows or rows[-1]["status"] != "COMPLETED_SUCCESSFULLY":
        more = await served.http.get(path, params={"offset": offset, "handle": handle})
        assert more.status_code == 200 and "electric-schema" in more.headers
        rows += [m["value"] for m in more.json() if "value" in m]
        assert more.headers["electric-offset"] != offset or rows
        offset = more.headers["electric-offset"]
    assert json.loads(rows[-1]["output"]) == {"answer": 42}
    assert json.loads(rows[-1]["metadata"]) == {"progress": 1}
    assert rows[-1]["completedAt"] is not None
    bad = await served.http.get(path, params={"offset": "soon"})
    assert bad.status_code in (400, 422) and "offset" in bad.text


async def test_a_runs_stream_is_stored_and_live(served: Served, engine: Engine) -> None:
    [run_id, other_id] = await served.trigger(2)
    env = await engine.environments.by_slug("dev")
    claimed = await engine.dequeue.claim(identity(served, engine, env.id), 2)
    attempts = {c.id: str(c.claimed_attempt_id) for c in claimed}
    for c in claimed:
        await engine.attempts.start(c.id, attempts[c.id])
    as_task = {
        "Authorization": f"Bearer {engine.environments.attempt_credential(attempts[run_id])}"
    }
    client = Triggerfish(api_url=served.url, secret_key=served.key, socket=False)
    live: list[RealtimeEvent] = []

    async def subscribe() -> None:
        async for event in client.runs.subscribe_async(run_id):
            live.append(event)
            if event.kind == "stream" and event.data["chunk"] == "!":
                return

    subscribing = asyncio.create_task(subscribe())
    await wait_for_async(lambda: bool(live), timeout=10)
    path = f"/api/v1/runs/{run_id}/streams/llm"
    for seq, chunks in ((0, ["Hel", "lo"]), (2, [" world"]), (1, ["lo", " world"]), (3, ["!"])):
        r = await served.http.post(path, json={"seq": seq, "chunks": chunks}, headers=as_task)
        assert r.status_code == 200, r.text
    await asyncio.wait_for(subscribing, 10)
    # a resent chunk (seq 1 and 2 again) is stored once and sent live once
    assert [e.data["chunk"] for e in live if e.kind == "stream"] == ["Hel", "lo", " world", "!"]
    assert await client.runs.read_stream_async(run_id, "llm") == ["Hel", "lo", " world", "!"]
    assert await client.runs.read_stream_async(run_id, "llm", after=1) == [" world", "!"]
    assert await client.runs.read_stream_async(run_id, "other") == []
    # only the run's own attempt writes its streams
    refused = [
        await served.http.post(path, json={"seq": 9, "chunks": ["x"]}),  # the secret key
        await served.http.post(
            f"/api/v1/runs/{other_id}/streams/llm",
            json={"seq": 0, "chunks": ["x"]},
            headers=as_task,
        ),
    ]
    assert [r.status_code for r in refused] == [403, 403]
    bad = await served.http.post(path, json={"seq": -1, "chunks": []}, headers=as_task)
    assert bad.status_code == 422 and "seq" in bad.text
    await engine.attempts.succeed(run_id, attempts[run_id], None)
    late = await served.http.post(path, json={"seq": 4, "chunks": ["late"]}, headers=as_task)
    assert late.status_code in (401, 403)
    await client.aclose()
