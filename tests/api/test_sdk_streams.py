"""Run streams over the official SDK's routes (``/realtime/v1/streams``, protocol v1):
a task writes with the v1 writer's streamed NDJSON and ``append``; readers get SSE,
live, resumable, ending when the run is final. The same stored streams as the
Python SDK's ``streams.pipe``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx

from tests.api.conftest import Served
from tests.support import wait_for_async
from triggerfish import Triggerfish
from triggerfish.engine import Engine
from triggerfish.engine.dequeue import WorkerIdentity
from triggerfish.sdk._sse import Parser


async def started_runs(served: Served, engine: Engine, n: int) -> dict[str, str]:
    """``n`` runs claimed and executing: run id → attempt id."""
    ids = await served.trigger(n)
    env = await engine.environments.by_slug("dev")
    who = WorkerIdentity(served.worker_id, env.id, "v1", ("job",))
    claimed = await engine.dequeue.claim(who, n)
    attempts = {c.id: str(c.claimed_attempt_id) for c in claimed}
    for run_id in ids:
        await engine.attempts.start(run_id, attempts[run_id])
    return {run_id: attempts[run_id] for run_id in ids}


async def read_events(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], into: list[tuple[str, Any]]
) -> httpx.Response:
    """(id, chunk) of an SSE read until the server ends it."""
    parser = Parser()
    async with http.stream(
        "GET", path, headers={"Accept": "text/event-stream", **headers}, timeout=30
    ) as response:
        if response.status_code != 200:
            await response.aread()
            return response
        async for line in response.aiter_lines():
            event = parser.line(line)
            if event is not None:
                into.append((str(event.id), event.data))
    return response


async def test_the_v1_writer_streams_live_to_a_reader_until_the_run_ends(
    served: Served, engine: Engine
) -> None:
    attempts = await started_runs(served, engine, 1)
    [run_id] = attempts
    base = f"/realtime/v1/streams/{run_id}"
    got: list[tuple[str, Any]] = []
    reading = asyncio.create_task(read_events(served.http, f"{base}/llm", {}, got))

    created = await served.http.put(
        f"{base}/self/llm", headers={"x-trigger-realtime-streams-version": "v2"}
    )
    assert created.status_code == 200 and created.json() == {"version": "v1"}
    head = await served.http.head(f"{base}/self/llm")
    assert head.headers["X-Last-Chunk-Index"] == "-1"

    second_line = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield json.dumps({"text": "Hel"}).encode() + b"\n" + b'{"text": "lo'
        # the first chunk reaches the reader while the writer's request is still open
        await wait_for_async(lambda: len(got) >= 1, timeout=10, what="the first chunk live")
        yield b'"}\n'
        second_line.set()
        yield b'"!"\n'

    written = await served.http.post(
        f"{base}/self/llm", content=body(), headers={"X-Resume-From-Chunk": "0"}
    )
    assert written.status_code == 200 and written.json() == {"ok": True}
    assert second_line.is_set()
    head = await served.http.head(f"{base}/self/llm")
    assert head.headers["X-Last-Chunk-Index"] == "2"
    # a writer that resumes from chunk 2 resends it: stored once
    resent = await served.http.post(
        f"{base}/self/llm", content=b'"!"\n"?"\n', headers={"X-Resume-From-Chunk": "2"}
    )
    assert resent.status_code == 200
    appended = await served.http.post(f"{base}/self/llm/append", content=b"plain text")
    assert appended.json() == {"ok": True}
    await served.http.post(f"{base}/self/llm/append", content=b'{"done": true}')
    await wait_for_async(lambda: len(got) == 6, timeout=10, what="six chunks")
    assert not reading.done()  # the run goes on: so does the stream
    await engine.attempts.succeed(run_id, attempts[run_id], None)
    response = await asyncio.wait_for(reading, 10)  # ended by itself: the run is final
    assert response.headers["X-Stream-Version"] == "v1"
    chunks = [{"text": "Hel"}, {"text": "lo"}, "!", "?", "plain text", {"done": True}]
    assert got == [(str(i), c) for i, c in enumerate(chunks)]
    # the Python SDK reads the same stored stream
    client = Triggerfish(api_url=served.url, secret_key=served.key, socket=False)
    assert await client.runs.read_stream_async(run_id, "llm") == chunks
    await client.aclose()
    # a late reader gets it all from the start, then the end at once; resume and latest
    late: list[tuple[str, Any]] = []
    await read_events(served.http, f"{base}/llm", {}, late)
    assert [c for _, c in late] == chunks
    resumed: list[tuple[str, Any]] = []
    await read_events(served.http, f"{base}/llm", {"Last-Event-ID": "3"}, resumed)
    assert resumed == [("4", "plain text"), ("5", {"done": True})]
    latest: list[tuple[str, Any]] = []
    await read_events(served.http, f"{base}/llm", {"X-Trigger-Stream-Start": "latest"}, latest)
    assert latest == []
    # a final run's streams are closed
    closed = await served.http.post(f"{base}/self/llm/append", content=b"late")
    assert closed.status_code == 403


def has(got: list[tuple[str, Any]], n: int) -> bool:
    return len(got) >= n


async def test_python_pipes_and_the_sdk_reader_sees_it_live(served: Served, engine: Engine) -> None:
    attempts = await started_runs(served, engine, 1)
    [run_id] = attempts
    as_task = {
        "Authorization": f"Bearer {engine.environments.attempt_credential(attempts[run_id])}"
    }
    got: list[tuple[str, Any]] = []
    reading = asyncio.create_task(
        read_events(served.http, f"/realtime/v1/streams/{run_id}/llm", {}, got)
    )
    for seq, chunk in enumerate(["a", {"b": 1}, "c"]):
        r = await served.http.post(
            f"/api/v1/runs/{run_id}/streams/llm",
            json={"seq": seq, "chunks": [chunk]},
            headers=as_task,
        )
        assert r.status_code == 200
        await wait_for_async(partial(has, got, seq + 1), timeout=10, what=f"chunk {seq} live")
    await engine.attempts.succeed(run_id, attempts[run_id], None)
    await asyncio.wait_for(reading, 10)
    assert got == [("0", "a"), ("1", {"b": 1}), ("2", "c")]


async def test_an_idle_stream_ends_after_its_timeout(served: Served, engine: Engine) -> None:
    [run_id] = await started_runs(served, engine, 1)
    got: list[tuple[str, Any]] = []
    response = await asyncio.wait_for(
        read_events(
            served.http, f"/realtime/v1/streams/{run_id}/llm", {"Timeout-Seconds": "0.3"}, got
        ),
        10,
    )
    assert response.status_code == 200 and got == []


async def test_who_may_write_and_bad_requests(served: Served, engine: Engine) -> None:
    attempts = await started_runs(served, engine, 2)
    run_id, other_id = attempts
    base = f"/realtime/v1/streams/{run_id}"
    tf = Triggerfish(api_url=served.url, secret_key=served.key, socket=False)
    token = await tf.auth.create_public_token_async(scopes={"read": {"runs": [run_id]}})
    await tf.aclose()
    public = {"Authorization": f"Bearer {token}"}
    other_task = {
        "Authorization": f"Bearer {engine.environments.attempt_credential(attempts[other_id])}"
    }
    # a public token reads, never writes; another run's attempt writes nothing here
    assert (await served.http.put(f"{base}/self/llm", headers=public)).status_code == 403
    assert (
        await served.http.post(f"{base}/self/llm/append", content=b"x", headers=public)
    ).status_code == 403
    assert (await served.http.put(f"{base}/self/llm", headers=other_task)).status_code == 403
    read_other: list[tuple[str, Any]] = []
    refused = await read_events(
        served.http, f"/realtime/v1/streams/{other_id}/llm", public, read_other
    )
    assert refused.status_code == 403
    # the task's own attempt writes
    own = {"Authorization": f"Bearer {engine.environments.attempt_credential(attempts[run_id])}"}
    assert (await served.http.put(f"{base}/self/llm", headers=own)).status_code == 200
    for method, path, content, headers, field in (
        ("PUT", f"{base}/sideways/llm", None, {}, "target"),
        ("PUT", f"{base}/input/llm", None, {}, "target"),
        ("PUT", f"{base}/parent/llm", None, {}, "parent"),
        ("POST", f"{base}/self/llm", b"{not json\n", {}, "chunk 0"),
        (
            "POST",
            f"{base}/self/llm",
            b'"x"\n',
            {"X-Resume-From-Chunk": "soon"},
            "X-Resume-From-Chunk",
        ),
        ("GET", f"{base}/llm", None, {"Last-Event-ID": "x"}, "Last-Event-ID"),
        ("GET", f"{base}/llm", None, {"Timeout-Seconds": "-1"}, "Timeout-Seconds"),
        ("GET", "/realtime/v1/streams/run_missing/llm", None, {}, "run_missing"),
    ):
        r = await served.http.request(method, path, content=content, headers=headers)
        assert 400 <= r.status_code < 500 and field in r.text, (path, r.status_code, r.text)
