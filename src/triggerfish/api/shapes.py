"""The shape protocol of the official SDK's realtime calls (WIRE.md §13).

``runs.subscribeToRun``, ``subscribeToRunsWithTag`` and ``subscribeToBatch`` (and
the React hooks built on them) long-poll these routes the way an ElectricSQL
1.0 client reads a shape:

1. ``offset=-1``: the runs as they are now, one ``insert`` message each, then
   ``{"headers": {"control": "up-to-date"}}``;
2. ``handle=…&offset=…``: what changed since that offset;
3. ``live=true&cursor=…``: the same, held open until something changes (or
   ``LIVE_TIMEOUT`` seconds: then only ``up-to-date``).

An offset is ``<change id>_0``: the change feed's position (``engine/changes.py``),
so any server resumes a client. A changed run is sent whole as an ``update``
(a run new to a tag's shape as an ``insert``). Rows use the column names and
quirks the SDK parses: internal status names (``COMPLETED_SUCCESSFULLY`` …),
zone-less timestamps, payload, output and metadata as JSON text.

The runs an answer carries are read in one statement through the change feed's
gate (``ChangeFeed.snapshot``); one not admitted in time is a 503 with
``Retry-After``, which the SDK retries with the same offset: nothing is lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from triggerfish._domain.records import RunRecord
from triggerfish._domain.states import RunStatus
from triggerfish.api.deps import EngineDep, ReaderDep
from triggerfish.api.realtime import require_run, require_tags
from triggerfish.api.validated import StrictJsonRoute
from triggerfish.engine import Engine
from triggerfish.engine.environments import Environment
from triggerfish.engine.public_tokens import require
from triggerfish.errors import UserError

router = APIRouter(route_class=StrictJsonRoute)

#: seconds a live request is held open without changes
LIVE_TIMEOUT = 20.0
#: the most runs the first answer of a tag's or a batch's shape lists
SNAPSHOT_LIMIT = 1000
#: one handle for every shape: offsets are positions in the one change feed
HANDLE = "triggerfish-changes-1"

#: our status → the internal name the SDK's realtime rows carry
INTERNAL_STATUS = {
    RunStatus.PENDING_VERSION: "PENDING_VERSION",
    RunStatus.DELAYED: "DELAYED",
    RunStatus.QUEUED: "PENDING",
    RunStatus.DEQUEUED: "DEQUEUED",
    RunStatus.EXECUTING: "EXECUTING",
    RunStatus.WAITING: "WAITING_TO_RESUME",
    RunStatus.COMPLETED: "COMPLETED_SUCCESSFULLY",
    RunStatus.FAILED: "COMPLETED_WITH_ERRORS",
    RunStatus.CANCELED: "CANCELED",
    RunStatus.CRASHED: "CRASHED",
    RunStatus.SYSTEM_FAILURE: "SYSTEM_FAILURE",
    RunStatus.EXPIRED: "EXPIRED",
    RunStatus.TIMED_OUT: "TIMED_OUT",
}

_SCHEMA = json.dumps({"id": {"type": "text", "pk_index": 0}})
_UP_TO_DATE = {"headers": {"control": "up-to-date"}}


def _time(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if value is not None else None


def _packet(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def shape_row(row: RunRecord, tags: list[str], streams: Sequence[str] = ()) -> dict[str, Any]:
    """A run as a row of the SDK's realtime shape (``SubscribeRunRawShape``);
    ``streams``: the keys of its streams (``withStreams()`` reads each)."""
    error = row.error or None
    duration = 0
    if row.started_at is not None and row.finished_at is not None:
        duration = int((row.finished_at - row.started_at).total_seconds() * 1000)
    return {
        "id": row.id,
        "friendlyId": row.id,
        "taskIdentifier": row.task_identifier,
        "status": INTERNAL_STATUS.get(RunStatus(row.status), "PENDING"),
        "createdAt": _time(row.created_at),
        "updatedAt": _time(row.updated_at),
        "startedAt": _time(row.started_at),
        "delayUntil": _time(row.delayed_until),
        "queuedAt": _time(row.created_at),
        "expiredAt": _time(row.expired_at),
        "completedAt": _time(row.finished_at),
        "idempotencyKey": row.idempotency_key_raw or row.idempotency_key,
        "number": 0,
        "isTest": bool(row.is_test),
        "usageDurationMs": duration,
        "costInCents": 0,
        "baseCostInCents": 0,
        "ttl": row.ttl,
        "payload": _packet(row.payload),
        "payloadType": "application/json",
        "metadata": _packet(row.run_metadata),
        "metadataType": "application/json",
        "output": _packet(row.output),
        "outputType": "application/json",
        "runTags": tags,
        "error": None
        if error is None
        else {
            "type": "BUILT_IN_ERROR",
            "name": error.get("name") or "Error",
            "message": error.get("message", ""),
            "stackTrace": error.get("stack_trace") or "",
        },
        "realtimeStreams": list(streams),
    }


def _message(
    row: RunRecord, tags: list[str], operation: str, streams: Sequence[str]
) -> dict[str, Any]:
    return {
        "key": f'"public"."TaskRun"/"{row.id}"',
        "value": shape_row(row, tags, streams),
        "headers": {"operation": operation},
    }


def _offset(value: str) -> int | None:
    """``-1`` → None (from the start); ``<id>_<n>`` → the change id."""
    if value == "-1":
        return None
    head, _, _ = value.partition("_")
    try:
        position = int(head)
    except ValueError:
        raise UserError(
            f"offset: expected -1 or an offset this server gave, got {value!r}"
        ) from None
    if position < 0:
        raise UserError(f"offset: expected -1 or an offset this server gave, got {value!r}")
    return position


async def _answer(
    engine: Engine,
    env: Environment,
    *,
    run_id: str | None = None,
    tags: Sequence[str] = (),
    batch_id: str | None = None,
    offset: str,
    live: bool,
) -> JSONResponse:
    after = _offset(offset)
    feed = engine.changes
    found: list[tuple[RunRecord, str]] = []
    if after is None:
        after = await feed.position()  # before the runs are read: nothing in between lost
        if run_id is not None:
            found.append((await require_run(engine, env, run_id), "insert"))
        else:
            first = await feed.snapshot(env.id, tags=tags, batch_id=batch_id, limit=SNAPSHOT_LIMIT)
            found += [(r, "insert") for r in reversed(first.runs)]
    else:
        if run_id is not None:
            await require_run(engine, env, run_id)
        changes, position = await feed.read_page(
            env.id, after, run_id=run_id, tags=tags or None, batch_id=batch_id
        )
        if not changes and live:
            await feed.wait(position, LIVE_TIMEOUT)
            changes, position = await feed.read_page(
                env.id, position, run_id=run_id, tags=tags or None, batch_id=batch_id
            )
        after = position
        touched: dict[str, str] = {}
        for change in changes:
            if change.run_id is not None and change.kind != "log":
                created = change.kind == "created" and change.run_id not in touched
                touched.setdefault(change.run_id, "insert" if created else "update")
        if touched:
            now = await feed.snapshot(env.id, run_ids=list(touched), limit=len(touched))
            rows = {r.id: r for r in now.runs}
            found += [(rows[i], op) for i, op in touched.items() if i in rows]
    streams = await engine.streams.keys([row.id for row, _ in found])
    messages = [_message(r, sorted(r.tags or []), op, streams.get(r.id, [])) for r, op in found]
    messages.append(_UP_TO_DATE)
    headers = {
        "electric-offset": f"{after}_0",
        "electric-handle": HANDLE,
        "Cache-Control": "no-store",
    }
    if live:
        headers["electric-cursor"] = str(int(time.time()))
    else:
        headers["electric-schema"] = _SCHEMA
    return JSONResponse(messages, headers=headers)


Offset = Annotated[
    str, Query(description="-1 for the first request, then the last electric-offset")
]
Live = Annotated[bool, Query(description="hold the request open until something changes")]


@router.get("/realtime/v1/runs/{run_id}", tags=["realtime"])
async def shape_run(
    run_id: str, engine: EngineDep, env: ReaderDep, offset: Offset = "-1", live: Live = False
) -> JSONResponse:
    """One run as a shape (the official SDK's ``runs.subscribeToRun``)."""
    return await _answer(engine, env, run_id=run_id, offset=offset, live=live)


@router.get("/realtime/v1/runs", tags=["realtime"])
async def shape_tags(
    engine: EngineDep,
    env: ReaderDep,
    tags: Annotated[str, Query(description="comma-separated; runs with any of them")],
    offset: Offset = "-1",
    live: Live = False,
) -> JSONResponse:
    """The runs carrying any of ``tags`` (``runs.subscribeToRunsWithTag``)."""
    wanted = [t for t in tags.split(",") if t]
    if not wanted:
        raise UserError("tags: name at least one tag")
    require_tags(env, wanted)
    return await _answer(engine, env, tags=wanted, offset=offset, live=live)


@router.get("/realtime/v1/batches/{batch_id}", tags=["realtime"])
async def shape_batch(
    batch_id: str, engine: EngineDep, env: ReaderDep, offset: Offset = "-1", live: Live = False
) -> JSONResponse:
    """The runs of a batch (``runs.subscribeToBatch``)."""
    await engine.batches.retrieve(env.id, batch_id)
    require(env, "read:runs", "read:all", f"read:batch:{batch_id}")
    return await _answer(engine, env, batch_id=batch_id, offset=offset, live=live)
