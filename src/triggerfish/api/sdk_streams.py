"""Run streams as the official TypeScript SDK (4.8.3) writes and reads them.

The pinned SDK asks for its "v2" streams (``x-trigger-realtime-streams-version:
v2``), but v2 hands writers credentials for a third-party stream store; when the
answer to ``PUT`` says ``{"version": "v1"}`` (or carries no such credentials) it
falls back to v1, which speaks to the server alone. So Triggerfish answers v1,
on top of the same stored streams as the Python SDK's ``streams.pipe``
(``engine/streams.py``): a chunk written either way is read either way.

Writers (a task's ``streams.pipe`` / ``metadata.stream`` / ``streams.append``)::

    PUT  /realtime/v1/streams/{run_id}/{target}/{key}          -> {"version": "v1"}
    POST /realtime/v1/streams/{run_id}/{target}/{key}          body: one JSON chunk a line
         (X-Resume-From-Chunk: the number of the first line; chunks stored as they arrive)
    HEAD /realtime/v1/streams/{run_id}/{target}/{key}          -> X-Last-Chunk-Index
    POST /realtime/v1/streams/{run_id}/{target}/{key}/append   body: one chunk (text)

``target`` is ``self`` (the run in the path), ``parent`` or ``root``. A writer
holds the environment's secret key or the run's own attempt credential; a
public access token never writes.

Readers (``streams.read``, ``runs.fetchStream``, ``subscribeToRun().withStreams()``)::

    GET  /realtime/v1/streams/{run_id}/{key}                   text/event-stream

One event per chunk, ``id:`` its number (from 0), ``data:`` the chunk as JSON,
header ``X-Stream-Version: v1``. ``Last-Event-ID: n`` starts after chunk ``n``;
``X-Trigger-Stream-Start: latest`` (without it) starts after the last chunk
stored. The response ends, cleanly, once the run is final and every chunk was
sent, or after ``Timeout-Seconds`` (default 60, at most 600) without a chunk.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse

from triggerfish._domain.states import RunStatus, is_final
from triggerfish.api.deps import EngineDep, ReaderDep
from triggerfish.api.realtime import KEEPALIVE, require_run
from triggerfish.api.validated import StrictJsonRoute, loads
from triggerfish.engine import Engine
from triggerfish.engine.environments import Environment
from triggerfish.engine.streams import MAX_CHUNK_BYTES, MAX_CHUNKS, check_key
from triggerfish.errors import PermissionDenied, RunNotFound, UserError

router = APIRouter(route_class=StrictJsonRoute)

#: seconds a reader's response waits for a chunk without ``Timeout-Seconds``
IDLE_TIMEOUT = 60.0
#: the longest ``Timeout-Seconds`` honoured
MAX_IDLE_TIMEOUT = 600.0
#: chunks read from the store per step
READ_STEP = 1000

_TARGETS = ("self", "parent", "root")
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Stream-Version": "v1"}


async def _writer_run(engine: Engine, env: Environment, run_id: str, target: str, key: str) -> str:
    """The run a write lands on, after checking who writes."""
    check_key(key)
    if target == "input":
        raise UserError("target: input streams are not supported by this server")
    if target not in _TARGETS:
        raise UserError(f"target: expected one of {', '.join(_TARGETS)}, got {target!r}")
    if env.public is not None:
        raise PermissionDenied("a public access token cannot write a run's streams")
    if env.attempt is not None and env.attempt.run_id != run_id:
        raise PermissionDenied("an attempt credential writes only its own run's streams")
    run = (await engine.runs.retrieve(env.id, run_id)).run
    if target == "self":
        return run_id
    found = run.parent_run_id if target == "parent" else (run.root_run_id or run_id)
    if found is None:
        raise RunNotFound(f"{run_id} has no parent run")
    return found


WriterPath = "/realtime/v1/streams/{run_id}/{target}/{key}"


@router.put(WriterPath, tags=["realtime"])
async def create_stream(
    run_id: str, target: str, key: str, engine: EngineDep, env: ReaderDep
) -> dict[str, str]:
    """Open a stream for writing (the SDK's ``createStream``): always protocol v1."""
    await _writer_run(engine, env, run_id, target, key)
    return {"version": "v1"}


@router.head(WriterPath, tags=["realtime"])
async def last_chunk(
    run_id: str, target: str, key: str, engine: EngineDep, env: ReaderDep
) -> Response:
    """The number of the last chunk stored (``X-Last-Chunk-Index``; -1: none), from
    which an interrupted writer resumes."""
    found = await _writer_run(engine, env, run_id, target, key)
    last = await engine.streams.last_seq(env.id, found, key)
    return Response(headers={"X-Last-Chunk-Index": str(last)})


def _chunk(line: bytes, number: int) -> Any:
    if len(line) > MAX_CHUNK_BYTES:
        raise UserError(f"chunk {number}: larger than {MAX_CHUNK_BYTES} bytes")
    try:
        return loads(line, where=f"chunk {number}")
    except json.JSONDecodeError as e:
        raise UserError(f"chunk {number}: not JSON ({e.msg})") from None


@router.post(
    WriterPath,
    tags=["realtime"],
    openapi_extra={
        "requestBody": {
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
            "description": "one JSON chunk a line, sent as they come",
        }
    },
)
async def write_stream(
    run_id: str,
    target: str,
    key: str,
    request: Request,
    engine: EngineDep,
    env: ReaderDep,
    resume_from: Annotated[str, Header(alias="X-Resume-From-Chunk")] = "0",
) -> dict[str, bool]:
    """A task's stream as it comes (the SDK's v1 writer): each line a chunk, stored
    and live as soon as its line arrives; a resent number is stored once."""
    found = await _writer_run(engine, env, run_id, target, key)
    try:
        seq = int(resume_from)
    except ValueError:
        raise UserError(f"X-Resume-From-Chunk: expected a number, got {resume_from!r}") from None
    if seq < 0:
        raise UserError(f"X-Resume-From-Chunk: expected a number from 0, got {seq}")
    pending = b""
    async for piece in request.stream():
        pending += piece
        *lines, pending = pending.split(b"\n")
        if len(pending) > MAX_CHUNK_BYTES:
            raise UserError(f"chunk {seq + len(lines)}: larger than {MAX_CHUNK_BYTES} bytes")
        chunks = [_chunk(line, seq + i) for i, line in enumerate(lines) if line.strip()]
        for start in range(0, len(chunks), MAX_CHUNKS):
            part = chunks[start : start + MAX_CHUNKS]
            await engine.streams.append(env.id, found, key, seq, part)
            seq += len(part)
    if pending.strip():
        await engine.streams.append(env.id, found, key, seq, [_chunk(pending, seq)])
    return {"ok": True}


@router.post(
    WriterPath + "/append",
    tags=["realtime"],
    openapi_extra={
        "requestBody": {"content": {"text/plain": {"schema": {"type": "string"}}}},
    },
)
async def append_chunk(
    run_id: str, target: str, key: str, request: Request, engine: EngineDep, env: ReaderDep
) -> dict[str, bool]:
    """One chunk after the stream's last (the SDK's ``streams.append``). A body that
    is JSON is stored as its value (readers of the SDK parse it back the same way),
    any other text as a string."""
    found = await _writer_run(engine, env, run_id, target, key)
    body = await request.body()
    if len(body) > MAX_CHUNK_BYTES:
        raise UserError(f"body: a chunk is at most {MAX_CHUNK_BYTES} bytes")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise UserError("body: expected UTF-8 text") from None
    chunk: Any
    try:
        chunk = loads(body, where="body")
    except json.JSONDecodeError:
        chunk = loads(json.dumps(text), where="body")  # the same checks on the text
    await engine.streams.append_next(env.id, found, key, chunk)
    return {"ok": True}


def _event(seq: int, chunk: Any) -> bytes:
    return f"id: {seq}\ndata: {json.dumps(chunk, separators=(',', ':'))}\n\n".encode()


async def stream_chunks(
    engine: Engine,
    env: Environment,
    run_id: str,
    key: str,
    after: int,
    idle: float,
    *,
    position: int,
    final: bool,
) -> AsyncIterator[bytes]:
    """The chunks after ``after``: stored ones, then live ones, until the run is
    final (and all were sent) or ``idle`` seconds pass without one. ``position``:
    the change feed's, taken before ``final`` (the run's) was read."""
    feed = engine.changes
    loop = asyncio.get_running_loop()

    async def stored() -> AsyncIterator[bytes]:
        nonlocal after
        while True:
            rows = await engine.streams.read(env.id, run_id, key, after=after, limit=READ_STEP)
            for seq, chunk in rows:
                after = seq
                yield _event(seq, chunk)
            if len(rows) < READ_STEP:
                return

    async for event in stored():
        yield event
    if final:  # a final run's streams are closed: all is stored
        return
    deadline = loop.time() + idle
    while True:
        changes, position = await feed.read_page(
            env.id, position, run_id=run_id, kinds=("stream", "status")
        )
        ended = False
        for change in changes:
            data = change.data
            if change.kind == "status":
                ended = ended or is_final(RunStatus(data["status"]))
            elif data.get("key") == key and int(data["seq"]) > after:
                if int(data["seq"]) == after + 1:
                    after += 1
                    yield _event(after, data["chunk"])
                else:  # resent or out of order: the store has them in order
                    async for event in stored():
                        yield event
                deadline = loop.time() + idle
        if ended:
            async for event in stored():
                yield event
            return
        if changes:
            continue
        left = deadline - loop.time()
        if left <= 0:
            return
        if not await feed.wait(position, min(left, KEEPALIVE)):
            yield b": keep-alive\n\n"


def _number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"{name}: expected a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise UserError(f"{name}: expected a number, got {value!r}")
    return number


@router.get(
    "/realtime/v1/streams/{run_id}/{key}",
    tags=["realtime"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def read_stream_events(
    run_id: str,
    key: str,
    engine: EngineDep,
    env: ReaderDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    start: Annotated[str | None, Header(alias="X-Trigger-Stream-Start")] = None,
    timeout: Annotated[str | None, Header(alias="Timeout-Seconds")] = None,
) -> StreamingResponse:
    """A run's stream as server-sent events, stored chunks first, then live ones."""
    check_key(key)
    feed_position = await engine.changes.position()  # before the run: nothing in between lost
    run = await require_run(engine, env, run_id)  # 404 / 403 / 503 before the stream starts
    if last_event_id:
        after = _number("Last-Event-ID", last_event_id)
        if after < -1 or after != int(after):
            raise UserError(f"Last-Event-ID: expected a chunk number, got {last_event_id!r}")
        chunk_after = int(after)
    elif start == "latest":
        chunk_after = await engine.streams.last_seq(env.id, run_id, key)
    else:
        chunk_after = -1
    idle = IDLE_TIMEOUT
    if timeout:
        idle = _number("Timeout-Seconds", timeout)
        if idle <= 0:
            raise UserError(f"Timeout-Seconds: expected more than 0, got {timeout!r}")
        idle = min(idle, MAX_IDLE_TIMEOUT)
    return StreamingResponse(
        stream_chunks(
            engine,
            env,
            run_id,
            key,
            chunk_after,
            idle,
            position=feed_position,
            final=is_final(RunStatus(run.status)),
        ),
        media_type="text/event-stream",
        headers=_SSE_HEADERS,
    )
