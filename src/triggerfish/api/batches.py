"""Batch trigger: both 4.x shapes (one-shot ``/api/v2/tasks/batch`` and the
two-phase ``/api/v3/batches`` + NDJSON items) and batch retrieve (WIRE.md §4)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from triggerfish.api import serialize
from triggerfish.api.deps import EngineDep, EnvDep
from triggerfish.api.trigger_wire import (
    REQUEST_KEY_HEADER,
    TriggerBody,
    TriggerOptions,
    request_key,
    trigger_request,
)
from triggerfish.api.validated import Key, StrictJsonRoute
from triggerfish.engine.enqueue import MAX_BATCH_ITEMS, BatchEntry, ItemRefusal
from triggerfish.errors import UserError

router = APIRouter(tags=["batches"], route_class=StrictJsonRoute)


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    task: str = Field(min_length=1, max_length=128)
    payload: Any = None
    options: TriggerOptions = Field(default_factory=TriggerOptions)


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class CreateBatchBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    runCount: int = Field(gt=0, le=MAX_BATCH_ITEMS)
    idempotencyKey: Annotated[Key, Field(max_length=128)] | None = None


def _request(index: int, item: BatchItem, now: float) -> BatchEntry:
    """The item's trigger, or its refusal: a bad item does not sink its batch."""
    try:
        body = TriggerBody(payload=item.payload, options=item.options)
        req = trigger_request(item.task, body, now)
    except UserError as exc:
        return ItemRefusal(index, item.task, f"items[{index}].{exc}", "INVALID_OPTIONS")
    req.trigger_function = "batchTrigger"
    return req


async def _batch(
    body: BatchBody, engine: EngineDep, env: EnvDep, request: Request
) -> dict[str, Any]:
    now = engine.res.clock.now()
    requests = [_request(i, item, now) for i, item in enumerate(body.items)]
    key = request_key(request.headers.get(REQUEST_KEY_HEADER))
    result = await engine.enqueue.trigger_batch(env.id, requests, request_key=key)
    answer: dict[str, Any] = {"id": result.id, "runCount": len(requests), "runs": result.run_ids}
    if result.errors:
        answer["errors"] = [e.as_json() for e in result.errors]
    return answer


@router.post("/api/v2/tasks/batch")
async def batch_trigger(
    body: BatchBody, engine: EngineDep, env: EnvDep, request: Request
) -> dict[str, Any]:
    """Trigger up to 1,000 runs in one call and one transaction.

    Answers ``{"id": "batch_…", "runCount", "runs": ["run_…", …]}`` (runs in item order).
    A retry with the first try's ``x-trigger-request-idempotency-key`` answers the
    batch that try made.
    """
    return await _batch(body, engine, env, request)


@router.post("/api/v1/tasks/batch", include_in_schema=False)
async def batch_trigger_v1(
    body: BatchBody, engine: EngineDep, env: EnvDep, request: Request
) -> dict[str, Any]:
    return await _batch(body, engine, env, request)


@router.post("/api/v3/batches", status_code=202)
async def create_batch(
    body: CreateBatchBody, engine: EngineDep, env: EnvDep, request: Request
) -> dict[str, Any]:
    """Phase one of a streamed batch: reserve ``runCount`` items."""
    key = request_key(request.headers.get(REQUEST_KEY_HEADER))
    result = await engine.enqueue.create_batch(
        env.id, body.runCount, body.idempotencyKey, request_key=key
    )
    answer: dict[str, Any] = {
        "id": result.id,
        "runCount": body.runCount,
        "isCached": result.is_cached,
    }
    if body.idempotencyKey:
        answer["idempotencyKey"] = body.idempotencyKey
    return answer


@router.post("/api/v3/batches/{batch_id}/items")
async def stream_batch_items(
    batch_id: str, request: Request, engine: EngineDep, env: EnvDep
) -> Any:
    """Phase two: NDJSON lines ``{"index", "task", "payload", "options"}``; deduplicated
    by index, so a resent stream creates nothing twice."""
    content_type = request.headers.get("content-type", "")
    if "ndjson" not in content_type and "json" not in content_type:
        return JSONResponse(
            {"error": "send items as application/x-ndjson"},
            status_code=415,
            headers={"x-should-retry": "false"},
        )
    now = engine.res.clock.now()
    items: list[tuple[int, BatchEntry]] = []
    body = (await request.body()).decode()
    lines = [text for text in body.splitlines() if text.strip()]
    for n, line in enumerate(lines):
        try:
            raw = json.loads(line)
            index = int(raw["index"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"items line {n + 1}: not a valid item ({exc})") from None
        try:
            item = BatchItem.model_validate(raw)
        except ValidationError as exc:
            # an item with an index is refused alone; the stream's others go on
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            task = raw.get("task") if isinstance(raw.get("task"), str) else ""
            message = f"items[{index}].{where}: {first['msg']}"
            items.append((index, ItemRefusal(index, task, message, "INVALID_OPTIONS")))
            continue
        items.append((index, _request(index, item, now)))
    if not items:
        raise UserError("items: the stream held no items")
    accepted, deduplicated, sealed = await engine.enqueue.add_batch_items(env.id, batch_id, items)
    detail = await engine.batches.retrieve(env.id, batch_id)
    return {
        "id": batch_id,
        "itemsAccepted": accepted,
        "itemsDeduplicated": deduplicated,
        "sealed": sealed,
        "enqueuedCount": len(detail.run_ids),
        "expectedCount": detail.batch.run_count,
    }


@router.get("/api/v2/batches/{batch_id}")
async def retrieve_batch(batch_id: str, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    """A batch, its runs in item order, and how far they got.

    ``status`` is ``PENDING`` while items are arriving, ``PROCESSING`` while a run
    is unfinished, then ``COMPLETED``; ``counts`` (Triggerfish) has runs per status.
    """
    detail = await engine.batches.retrieve(env.id, batch_id)
    batch = detail.batch
    processing: dict[str, Any] = {"errors": detail.errors}
    if detail.status in ("COMPLETED", "PARTIAL_FAILED"):
        processing["completedAt"] = serialize.iso(batch.updated_at)
    data: dict[str, Any] = {
        "id": batch.id,
        "status": detail.status,
        "createdAt": serialize.iso(batch.created_at),
        "updatedAt": serialize.iso(batch.updated_at),
        "runCount": batch.run_count,
        "runs": detail.run_ids,
        "processing": processing,
        "counts": detail.counts,
        "finishedCount": detail.finished,
    }
    if batch.idempotency_key:
        data["idempotencyKey"] = batch.idempotency_key
    return data


@router.get("/api/v1/batches/{batch_id}", include_in_schema=False)
async def retrieve_batch_v1(batch_id: str, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    return await retrieve_batch(batch_id, engine, env)
