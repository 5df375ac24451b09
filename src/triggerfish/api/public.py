"""The public REST API, on Trigger.dev's paths and with its JSON shapes (WIRE.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from triggerfish._domain.filters import RunFilter
from triggerfish._domain.states import RunStatus
from triggerfish._domain.times import to_datetime
from triggerfish._durations import parse_duration
from triggerfish.api import serialize
from triggerfish.api.deps import EngineDep, EnvDep, TriggerEnvDep, bearer, engine_of
from triggerfish.api.schedules import run_schedule_field
from triggerfish.api.trigger_wire import (
    REQUEST_KEY_HEADER,
    TriggerBody,
    request_key,
    trigger_answer,
    trigger_request,
)
from triggerfish.api.validated import (
    MAX_SECONDS,
    Duration,
    EventName,
    Id,
    Key,
    NonNegativeInt64,
    StrictJsonRoute,
)
from triggerfish.errors import UserError

router = APIRouter(route_class=StrictJsonRoute)


@router.post("/api/v1/tasks/{task_id:path}/trigger", tags=["tasks"])
async def trigger_task(
    task_id: str, body: TriggerBody, env: TriggerEnvDep, request: Request
) -> JSONResponse:
    """Queue a run of a task. Answers ``{"id": "run_…", "isCached"?: true}``."""
    # the engine straight from the app, not as a dependency: this is the
    # hottest route, and each dependency costs FastAPI tens of microseconds
    # (api/trigger_lane.py answers well-formed triggers before they reach this
    # route; what it leaves to the app, this answers)
    engine = engine_of(request)
    trigger = trigger_request(
        task_id,
        body,
        engine.res.clock.now(),
        request.headers.get("traceparent"),
        request_key(request.headers.get(REQUEST_KEY_HEADER)),
    )
    result = await engine.enqueue.trigger(env.id, trigger)
    return JSONResponse(
        trigger_answer(result), headers=run_token_header(engine, env, request, result.id)
    )


def run_token_header(engine: Any, env: Any, request: Request, run_id: str) -> dict[str, str]:
    """``x-trigger-jwt`` for the official SDK (it sends ``trigger-version``): a public
    token reading the new run, signed with the caller's key (WIRE.md §10)."""
    key = bearer(request)
    if "trigger-version" not in request.headers or key is None or env.public is not None:
        return {}
    return {"x-trigger-jwt": engine.public_tokens.sign(env, key, [f"read:runs:{run_id}"], 3600)}


@router.get("/api/v1/tasks", tags=["tasks"])
async def list_tasks(engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    """The tasks workers registered in this environment, newest version's settings
    first: file, queue, retry policy, machine, schedule, and every version."""
    return {"data": [serialize.task_object(t) for t in await engine.workers.registered(env.id)]}


@router.get("/api/v3/runs/{run_id}", tags=["runs"])
async def retrieve_run(
    run_id: str, request: Request, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    detail = await engine.runs.retrieve(env.id, run_id)
    reasons = await engine.queues.explain(env.id, [detail.run])
    body = serialize.run_object(detail, env.slug, env.id, reasons.get(run_id))
    # Triggerfish extensions: what a WAITING run waits for, and its durable steps
    waiting = detail.run.status == "WAITING"
    body["waitingFor"] = (await engine.waitpoints.waiting_for([run_id]))[run_id] if waiting else []
    body["steps"] = [serialize.journal_entry(e) for e in detail.steps]
    schedule = await run_schedule_field(engine, env, detail.run.idempotency_key)
    if schedule is not None:
        body["schedule"] = schedule
    return serialize.for_v3_client(body) if serialize.is_v3_client(request.headers) else body


def _csv(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


def _epoch_ms(field: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        raise UserError(f"{field}: expected epoch milliseconds, got {value!r}") from None


@router.get("/api/v1/runs", tags=["runs"])
async def list_runs(
    request: Request,
    engine: EngineDep,
    env: EnvDep,
    page_size: Annotated[int, Query(alias="page[size]", ge=1, le=100)] = 25,
    page_after: Annotated[str | None, Query(alias="page[after]")] = None,
    page_before: Annotated[str | None, Query(alias="page[before]")] = None,
) -> dict[str, Any]:
    """Runs, newest first, with cursor pagination and Trigger.dev's filters."""
    q = request.query_params
    statuses = _csv(q.get("filter[status]"))
    for status in statuses:
        if status not in RunStatus.__members__:
            raise UserError(f"filter[status]: unknown status {status!r}")
    created_from = _epoch_ms("filter[createdAt][from]", q.get("filter[createdAt][from]"))
    period = q.get("filter[createdAt][period]")
    if period and created_from is None:
        try:
            seconds = parse_duration(period)
        except ValueError as exc:
            raise UserError(f"filter[createdAt][period]: {exc}") from None
        # a period reaching before year 1 means "all of them"
        seconds = min(seconds, engine.res.clock.now() + MAX_SECONDS)
        created_from = to_datetime(engine.res.clock.now()) - timedelta(seconds=seconds)
    is_test = q.get("filter[isTest]")
    flt = RunFilter(
        statuses=statuses,
        task_ids=_csv(q.get("filter[taskIdentifier]")),
        tags=_csv(q.get("filter[tag]")),
        versions=_csv(q.get("filter[version]")),
        queues=_csv(q.get("filter[queue]")),
        machines=_csv(q.get("filter[machine]")),
        batch_id=q.get("filter[batch]"),
        schedule_id=q.get("filter[schedule]"),
        is_test=None if is_test is None else is_test == "true",
        created_from=created_from,
        created_to=_epoch_ms("filter[createdAt][to]", q.get("filter[createdAt][to]")),
    )
    rows, tags, more = await engine.runs.page(
        env.id, flt, size=page_size, after=None if page_before else page_after, before=page_before
    )
    reasons = await engine.queues.explain(env.id, rows)
    pagination: dict[str, str] = {}
    if rows:
        if more or page_before:
            pagination["next"] = rows[-1].id
        if page_after or (page_before and more):
            pagination["previous"] = rows[0].id
    data = [serialize.run_item(r, tags[r.id], env.slug, env.id, reasons.get(r.id)) for r in rows]
    if serialize.is_v3_client(request.headers):
        data = [serialize.for_v3_client(item) for item in data]
    return {"data": data, "pagination": pagination}


@router.post("/api/v2/runs/{run_id}/cancel", tags=["runs"])
async def cancel_run(run_id: str, engine: EngineDep, env: EnvDep) -> dict[str, str]:
    """Cancel a run. Finished runs are left as they are; the answer is the same."""
    await engine.runs.cancel(env.id, run_id)
    return {"id": run_id}


@router.get("/api/v1/runs/{run_id}/logs", tags=["runs"])
async def run_logs(
    run_id: str,
    engine: EngineDep,
    env: EnvDep,
    after: Annotated[NonNegativeInt64, Query(description="return lines after this log id")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> dict[str, Any]:
    """Log lines of a run (Triggerfish extension), oldest first; poll with ``after``."""
    rows = await engine.runs.logs(env.id, run_id, after_id=after, limit=limit)
    return {"data": [serialize.log_object(r) for r in rows]}


@router.get("/api/v1/runs/{run_id}/events", tags=["runs"])
async def run_events(run_id: str, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    """Status history of a run (Triggerfish extension)."""
    rows = await engine.runs.events(env.id, run_id)
    return {
        "data": [
            {
                "from": r.from_status,
                "to": r.to_status,
                "at": serialize.iso(r.at),
                **({"attemptId": r.attempt_id} if r.attempt_id else {}),
                **({"reason": r.reason} if r.reason else {}),
            }
            for r in rows
        ]
    }


@router.get("/api/v2/whoami", tags=["auth"])
async def whoami(env: EnvDep) -> dict[str, Any]:
    return {
        "project": {"ref": env.project_ref},
        "environment": {"id": env.id, "slug": env.slug},
    }


# -- durable extensions: replay, events, key-value store ----------------------------


class EventBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: EventName
    payload: Any = None
    id: Id | None = None


@router.post("/api/v1/events", tags=["events"])
async def send_event(body: EventBody, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    """Start the tasks subscribed to ``name`` and resolve matching event waits."""
    sent = await engine.events.send(env.id, body.name, body.payload, body.id)
    return {
        "id": sent.id,
        "runs": sent.run_ids,
        "waitsResolved": sent.waits_resolved,
        "isCached": sent.is_cached,
    }


@router.get("/api/v1/events", tags=["events"])
async def list_events(
    engine: EngineDep,
    env: EnvDep,
    name: EventName | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    sent = await engine.events.recent(env.id, name, limit)
    return {
        "data": [
            {
                "id": e.id,
                "name": e.name,
                "payload": e.payload,
                "runs": e.run_ids,
                "errors": e.errors,
                "createdAt": serialize.iso(e.created_at),
            }
            for e in sent
        ]
    }


class KvPutBody(BaseModel):
    value: Any = None
    ttl: Duration | None = None


@router.get("/api/v1/kv/{key:path}", tags=["kv"])
async def kv_get(key: Key, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    found, value = await engine.events.kv_get(env.id, key)
    return {"key": key, "found": found, "value": value}


@router.put("/api/v1/kv/{key:path}", tags=["kv"])
async def kv_put(key: Key, body: KvPutBody, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    try:
        ttl = parse_duration(body.ttl) if body.ttl is not None else None
    except ValueError as exc:
        raise UserError(f"ttl: {exc}") from None
    await engine.events.kv_set(env.id, key, body.value, ttl)
    return {"key": key, "ok": True}


@router.delete("/api/v1/kv/{key:path}", tags=["kv"])
async def kv_delete(key: Key, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    return {"key": key, "deleted": await engine.events.kv_delete(env.id, key)}
