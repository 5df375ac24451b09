"""Realtime: server-sent events of the change feed (``engine/changes.py``).

Three routes of our own, each an ``text/event-stream``:

- ``GET /api/v1/realtime/runs/{run_id}``: one run; ends once it is final
- ``GET /api/v1/realtime/runs?tags=a,b``: every run carrying any of the tags; never ends
- ``GET /api/v1/realtime/batches/{batch_id}``: the runs of a batch; ends once all are final

Events (``id:`` is the change feed's position; send it back as ``Last-Event-ID``
after a reconnect, and the stream goes on from there, nothing lost, nothing repeated)::

    id: 4512
    event: change
    data: {"id": 4512, "kind": "status", "runId": "run_…", "batchId": null,
           "data": {"status": "COMPLETED", "from": "EXECUTING", "output": {…}},
           "createdAt": 1765065600.123}

A fresh connection (no ``Last-Event-ID``) starts with one ``snapshot`` event per
run (``data`` is the run as ``runs.list`` shows it), whose ``id`` is the position
the changes then follow from; a final status change carries the run's
``output`` and ``error``. A stream that ends sends ``event: end`` first: a
stream cut without it was dropped, and the client reconnects. A comment line
every ``KEEPALIVE`` seconds keeps proxies from closing an idle stream.

The snapshot is read before the answer starts, in one statement through the
change feed's gate (``ChangeFeed.snapshot``): when too many subscribers connect
at once for this one to be admitted within ``realtime_admission_timeout``
seconds, the stream is only ``retry: <ms>`` and a comment, and ends (with
``Retry-After`` too): every ``EventSource`` connects again after that long,
with its ``Last-Event-ID``. (A 503 would make a browser's ``EventSource`` stop
for good; the shape routes of ``api/shapes.py``, read with ``fetch``, answer 503.)
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from triggerfish._domain.records import ChangeRecord, RunRecord
from triggerfish._domain.states import RunStatus, is_final
from triggerfish.api import serialize
from triggerfish.api.deps import EngineDep, EnvDep, ReaderDep
from triggerfish.api.validated import StrictJsonRoute
from triggerfish.engine import Engine
from triggerfish.engine.environments import Environment
from triggerfish.engine.public_tokens import require
from triggerfish.errors import PermissionDenied, RunNotFound, ServerBusy, UserError

router = APIRouter(route_class=StrictJsonRoute)

_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s\"]*")


class RedactQueryTokens(logging.Filter):
    """Access logs show ``?token=[redacted]``: a public token in a realtime URL
    (``EventSource`` sends no headers) is a credential while it lives."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_QUERY.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_QUERY.sub(r"\1[redacted]", record.msg)
        return True


def redact_access_logs() -> None:
    """Install :class:`RedactQueryTokens` on uvicorn's access log (once)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQueryTokens) for f in access.filters):
        access.addFilter(RedactQueryTokens())


#: seconds between keep-alive comments on an idle stream
KEEPALIVE = 15.0
#: the most runs a batch's snapshot lists
BATCH_SNAPSHOT_LIMIT = 1000

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class Subject:
    """What one stream follows, and how far each of its runs got."""

    run_id: str | None = None
    tags: Sequence[str] = ()
    batch_id: str | None = None
    #: run id → final yet (tags: never ends, so not tracked)
    final: dict[str, bool] = field(default_factory=dict)
    #: the changes up to here are reflected in ``final`` once read
    needed: int = 0

    @property
    def ends(self) -> bool:
        return not self.tags

    def done(self, position: int) -> bool:
        return (
            self.ends and position >= self.needed and bool(self.final) and all(self.final.values())
        )


async def require_run(engine: Engine, env: Environment, run_id: str) -> RunRecord:
    """The run as it is now (one statement, through the change feed's gate); 404 for
    an unknown run; 403 for a public token whose scopes do not cover it."""
    found = await engine.changes.snapshot(env.id, run_ids=[run_id], limit=1)
    if not found.runs:
        raise RunNotFound(run_id)
    require_run_scope(env, found.runs[0])
    return found.runs[0]


def require_run_scope(env: Environment, run: RunRecord) -> None:
    """403 for a public token whose scopes do not cover ``run`` (the run itself, one
    of its tags, its batch, or every run)."""
    if env.public is None:
        return
    wanted = ["read:runs", "read:all", f"read:runs:{run.id}"]
    wanted += [f"read:tags:{t}" for t in run.tags]
    if run.batch_id:
        wanted.append(f"read:batch:{run.batch_id}")
    require(env, *wanted)


def require_tags(env: Environment, tags: Sequence[str]) -> None:
    """A public token reads the runs of a tag only with that tag's scope (each tag)."""
    if env.public is None or env.public & {"read:runs", "read:all"}:
        return
    for tag in tags:
        require(env, f"read:tags:{tag}")


def _last_event_id(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        position = int(value)
    except ValueError:
        raise UserError(f"Last-Event-ID: expected a change id, got {value!r}") from None
    if position < 0:
        raise UserError(f"Last-Event-ID: expected a change id, got {value!r}")
    return position


def _event(event: str, event_id: int | None, data: Any) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def change_object(change: ChangeRecord, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    data = change.data if not extra else {**change.data, **extra}
    return {
        "id": change.id,
        "kind": change.kind,
        "runId": change.run_id,
        "batchId": change.batch_id,
        "data": data,
        "createdAt": change.created_at,
    }


async def _first_state(engine: Engine, env: Environment, subject: Subject) -> list[RunRecord]:
    """The subject's runs as they are now (and their finality noted): one statement
    through the feed's gate; 404 / 403 for a run that is not there / not readable."""
    if subject.run_id is not None:
        first = await engine.changes.snapshot(env.id, run_ids=[subject.run_id], limit=1)
        if not first.runs:
            raise RunNotFound(subject.run_id)
        require_run_scope(env, first.runs[0])
    else:
        first = await engine.changes.snapshot(
            env.id, tags=subject.tags, batch_id=subject.batch_id, limit=BATCH_SNAPSHOT_LIMIT
        )
    subject.needed = first.position
    if subject.ends:
        for row in first.runs:
            subject.final[row.id] = is_final(RunStatus(row.status))
    return first.runs


def _snapshot_events(env: Environment, rows: list[RunRecord], after: int) -> list[bytes]:
    out = []
    for row in rows:
        item = serialize.run_item(row, sorted(row.tags or []), env.slug, env.id)
        data = {
            "id": after,
            "kind": "snapshot",
            "runId": item["id"],
            "batchId": item.get("batchId"),
            "data": item,
        }
        out.append(_event("snapshot", after, data))
    return out


async def _final_fields(engine: Engine, env: Environment, run_id: str) -> dict[str, Any]:
    run = await engine.changes.final_run(env.id, run_id)
    if run is None:  # purged meanwhile
        return {"output": None, "error": None}
    return {"output": run.output, "error": serialize.error_object(run.error)}


async def stream_changes(
    engine: Engine, env: Environment, subject: Subject, after: int, first: list[bytes]
) -> AsyncIterator[bytes]:
    """The stream's bytes: ``first`` (the snapshot of a fresh connection), the
    changes after ``after``, ``end``."""
    feed = engine.changes
    for event in first:
        yield event
    while True:
        batch, after = await feed.read_page(
            env.id, after, run_id=subject.run_id, tags=subject.tags, batch_id=subject.batch_id
        )
        for change in batch:
            extra = None
            if change.kind in ("created", "status") and change.run_id is not None:
                final = is_final(RunStatus(change.data["status"]))
                if subject.ends:
                    subject.final[change.run_id] = final
                if final:
                    extra = await _final_fields(engine, env, change.run_id)
            yield _event("change", change.id, change_object(change, extra))
        if subject.done(after):
            yield _event("end", None, {})
            return
        if not batch and not await feed.wait(after, KEEPALIVE):
            yield b": keep-alive\n\n"


async def _response(
    engine: Engine, env: Environment, subject: Subject, last_event_id: str | None
) -> StreamingResponse:
    """The answer, once the subject's first state is read: an error (404, 403) is
    still an HTTP status then, not a stream cut short; a busy server's answer says
    when to come back."""
    after = _last_event_id(last_event_id)
    first: list[bytes] = []
    try:
        if after is None:
            after = await engine.changes.position()  # before the state: nothing in between lost
            first = _snapshot_events(env, await _first_state(engine, env, subject), after)
        elif subject.ends:
            await _first_state(engine, env, subject)  # which runs there are, for the end
    except ServerBusy as busy:
        return _come_back_later(busy)
    return StreamingResponse(
        stream_changes(engine, env, subject, after, first),
        media_type="text/event-stream",
        headers=_SSE_HEADERS,
    )


def _come_back_later(busy: ServerBusy) -> StreamingResponse:
    """A stream that only says when to connect again (``retry:``, in milliseconds),
    then ends: what a browser's ``EventSource`` follows, where a 503 would make it
    give up for good. ``Retry-After`` says the same to other clients."""
    reason = str(busy).replace("\n", " ").replace("\r", " ")
    body = f"retry: {busy.retry_after * 1000}\n: {reason}\n\n".encode()
    headers = {**_SSE_HEADERS, "Retry-After": str(busy.retry_after)}
    return StreamingResponse(iter([body]), media_type="text/event-stream", headers=headers)


LastEventId = Annotated[str | None, Header(alias="Last-Event-ID")]


@router.get("/api/v1/realtime/runs/{run_id}", tags=["realtime"])
async def subscribe_run(
    run_id: str, engine: EngineDep, env: ReaderDep, last_event_id: LastEventId = None
) -> StreamingResponse:
    """One run's changes as server-sent events, until it is final."""
    return await _response(engine, env, Subject(run_id=run_id), last_event_id)


@router.get("/api/v1/realtime/runs", tags=["realtime"])
async def subscribe_tags(
    engine: EngineDep,
    env: ReaderDep,
    tags: Annotated[str, Query(description="comma-separated; runs with any of them")],
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    """The changes of every run carrying any of ``tags``, as server-sent events."""
    wanted = [t for t in tags.split(",") if t]
    if not wanted:
        raise UserError("tags: name at least one tag")
    require_tags(env, wanted)
    return await _response(engine, env, Subject(tags=wanted), last_event_id)


@router.get("/api/v1/realtime/batches/{batch_id}", tags=["realtime"])
async def subscribe_batch(
    batch_id: str, engine: EngineDep, env: ReaderDep, last_event_id: LastEventId = None
) -> StreamingResponse:
    """The changes of a batch's runs as server-sent events, until all are final."""
    await engine.batches.retrieve(env.id, batch_id)  # 404 before the stream starts
    require(env, "read:runs", "read:all", f"read:batch:{batch_id}")
    return await _response(engine, env, Subject(batch_id=batch_id), last_event_id)


# -- run streams ----------------------------------------------------------------------


class StreamAppend(BaseModel):
    model_config = ConfigDict(extra="ignore")

    seq: int = Field(ge=0, description="the number of the first chunk (from 0 per stream)")
    chunks: list[Any] = Field(max_length=1000)


@router.post("/api/v1/runs/{run_id}/streams/{key}", tags=["realtime"])
async def append_stream(
    run_id: str, key: str, body: StreamAppend, engine: EngineDep, env: EnvDep
) -> dict[str, int]:
    """Chunks of a run's stream, sent by the task itself (its attempt credential)."""
    if env.attempt is None or env.attempt.run_id != run_id:
        raise PermissionDenied("only the run's own running attempt writes its streams")
    added = await engine.streams.append(env.id, run_id, key, body.seq, body.chunks)
    return {"added": added}


@router.get("/api/v1/runs/{run_id}/streams/{key}", tags=["realtime"])
async def read_stream(
    run_id: str,
    key: str,
    engine: EngineDep,
    env: ReaderDep,
    after: Annotated[int, Query(ge=-1, description="chunks after this number")] = -1,
) -> dict[str, Any]:
    """A run's stream as stored so far: ``{"data": [chunk, …], "next": seq}``."""
    await require_run(engine, env, run_id)
    rows = await engine.streams.read(env.id, run_id, key, after=after)
    return {"data": [chunk for _, chunk in rows], "next": rows[-1][0] if rows else after}
