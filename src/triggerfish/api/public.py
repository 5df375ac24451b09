"""The public REST API, on Trigger.dev's paths and with its JSON shapes (WIRE.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from triggerfish._domain.machines import MACHINE_MEMORY_MB
from triggerfish._domain.states import RunStatus
from triggerfish._domain.times import to_datetime
from triggerfish._durations import parse_duration
from triggerfish.api import serialize
from triggerfish.api.deps import EngineDep, EnvDep, engine_of
from triggerfish.api.schedules import run_schedule_field
from triggerfish.engine.enqueue import MAX_TAGS, Debounce, TriggerRequest, TriggerResult
from triggerfish.errors import InvalidTaskOptions, UserError
from triggerfish.store.runs import RunFilter

router = APIRouter()


class QueueOption(BaseModel):
    name: str = Field(min_length=1, max_length=128)


class DebounceOption(BaseModel):
    """``options.debounce``: collapse a burst of triggers with one key into one run."""

    model_config = ConfigDict(extra="ignore")

    key: str = Field(min_length=1, max_length=512)
    delay: str | int
    mode: Literal["leading", "trailing"] = "trailing"
    maxDelay: str | int | None = None


class TriggerOptions(BaseModel):
    """``options`` of a trigger request; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    queue: QueueOption | None = None
    concurrencyKey: str | int | None = None
    payloadType: str | None = None
    idempotencyKey: str | None = Field(default=None, max_length=128)
    idempotencyKeyTTL: str | None = None
    idempotencyKeyOptions: dict[str, Any] | None = None
    delay: str | datetime | None = None
    ttl: str | int | None = None
    tags: str | list[str] | None = None
    maxAttempts: int | None = Field(default=None, ge=1, le=100)
    maxDuration: float | None = Field(default=None, gt=0)
    metadata: dict[str, Any] | None = None
    machine: str | None = None
    priority: float | None = Field(default=None, ge=0)
    test: bool | None = None
    debounce: DebounceOption | None = None

    @field_validator("machine")
    @classmethod
    def _known_machine(cls, value: str | None) -> str | None:
        if value is not None and value not in MACHINE_MEMORY_MB:
            raise ValueError(
                f"unknown machine {value!r}; use one of {', '.join(MACHINE_MEMORY_MB)}"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _few_short_tags(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        tags = [value] if isinstance(value, str) else value
        if len(tags) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags per run, got {len(tags)}")
        for tag in tags:
            if not 0 < len(tag) <= 128:
                raise ValueError(f"each tag must be 1 to 128 characters, got {len(tag)}")
        return tags


class TriggerBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    payload: Any = None
    context: Any = None
    options: TriggerOptions = Field(default_factory=TriggerOptions)


def decode_payload(payload: Any, payload_type: str | None) -> Any:
    """The JSON value of a payload packet (WIRE.md §2)."""
    if payload_type == "application/super+json":
        if not isinstance(payload, str):
            raise UserError("payload: a super+json payload must be a string")
        try:
            return json.loads(payload).get("json")
        except (ValueError, AttributeError):
            raise UserError("payload: not a valid super+json packet") from None
    if payload_type == "application/store":
        raise UserError("payload: offloaded payloads (application/store) are not supported yet")
    return payload


def trigger_request(task_id: str, body: TriggerBody, now: float) -> TriggerRequest:
    opts = body.options
    try:
        return TriggerRequest(
            task_id=task_id,
            payload=decode_payload(body.payload, opts.payloadType),
            payload_type="application/json",
            tags=list(opts.tags or []),
            metadata=opts.metadata,
            idempotency_key=opts.idempotencyKey,
            idempotency_key_raw=(opts.idempotencyKeyOptions or {}).get("key"),
            idempotency_key_ttl=_seconds("idempotencyKeyTTL", opts.idempotencyKeyTTL),
            machine=opts.machine,
            max_attempts=opts.maxAttempts,
            max_duration=opts.maxDuration,
            queue=opts.queue.name if opts.queue else None,
            concurrency_key=str(opts.concurrencyKey) if opts.concurrencyKey is not None else None,
            delay_until=_delay_until(opts.delay, now),
            ttl=_seconds("ttl", opts.ttl),
            ttl_text=str(opts.ttl) if opts.ttl is not None else None,
            priority=opts.priority or 0.0,
            is_test=bool(opts.test),
            debounce=_debounce(opts.debounce),
        )
    except ValueError as exc:
        raise InvalidTaskOptions(str(exc)) from None


def _debounce(option: DebounceOption | None) -> Debounce | None:
    if option is None:
        return None
    delay = _seconds("debounce.delay", option.delay) or 0.0
    max_delay = _seconds("debounce.maxDelay", option.maxDelay)
    if delay <= 0:
        raise ValueError("options.debounce.delay: must be more than 0 seconds")
    if max_delay is not None and max_delay < delay:
        raise ValueError("options.debounce.maxDelay: must be at least the delay")
    return Debounce(option.key, delay, option.mode, max_delay)


#: the longest a duration option may be (a delay, a TTL, a debounce): far enough
#: for any schedule, and short of dates the store cannot hold
MAX_OPTION_SECONDS = 100 * 365 * 24 * 3600


def _seconds(field: str, value: str | int | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"options.{field}: {exc}") from None
    return _bounded(field, value, seconds)


def _bounded(field: str, value: object, seconds: float) -> float:
    if seconds > MAX_OPTION_SECONDS:
        raise ValueError(f"options.{field}: {value} is more than 100 years away")
    return seconds


def _delay_until(value: str | datetime | None, now: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        at = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        _bounded("delay", value.isoformat(), at - now)
        return at
    try:
        seconds = parse_duration(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"options.delay: {value!r} is neither a duration like '1h30m' nor an ISO date"
            ) from None
        return _delay_until(parsed, now)
    return now + _bounded("delay", value, seconds)


@router.post("/api/v1/tasks/{task_id:path}/trigger", tags=["tasks"])
async def trigger_task(
    task_id: str, body: TriggerBody, env: EnvDep, request: Request
) -> dict[str, Any]:
    """Queue a run of a task. Answers ``{"id": "run_…", "isCached"?: true}``."""
    # the engine straight from the app, not as a dependency: this is the
    # hottest route, and each dependency costs FastAPI tens of microseconds
    # (api/trigger_lane.py answers well-formed triggers before they reach this
    # route; what it leaves to the app, this answers)
    engine = engine_of(request)
    trigger = trigger_request(task_id, body, engine.res.clock.now())
    return trigger_answer(await engine.enqueue.trigger(env.id, trigger))


def trigger_answer(result: TriggerResult) -> dict[str, Any]:
    """A trigger's answer body: ``{"id": "run_…"}``, and ``isCached`` / ``debounced``."""
    answer: dict[str, Any] = {"id": result.id}
    if result.is_cached:
        answer["isCached"] = True
    if result.debounced:
        answer["debounced"] = True  # Triggerfish: joined a waiting debounced run
    return answer


@router.get("/api/v3/runs/{run_id}", tags=["runs"])
async def retrieve_run(run_id: str, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
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
    return body


def _csv(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


def _epoch_ms(field: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC).replace(tzinfo=None)
    except ValueError:
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
    return {
        "data": [
            serialize.run_item(r, tags[r.id], env.slug, env.id, reasons.get(r.id)) for r in rows
        ],
        "pagination": pagination,
    }


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
    after: Annotated[int, Query(ge=0, description="return lines after this log id")] = 0,
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

    name: str = Field(min_length=1, max_length=256)
    payload: Any = None
    id: str | None = Field(default=None, min_length=1, max_length=128)


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
    name: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    rows = await engine.events.recent(env.id, name, limit)
    return {
        "data": [
            {
                "id": r.id,
                "name": r.name,
                "payload": r.payload,
                "runs": r.run_ids,
                "errors": r.errors,
                "createdAt": serialize.iso(r.created_at),
            }
            for r in rows
        ]
    }


class KvPutBody(BaseModel):
    value: Any = None
    ttl: str | float | None = None


@router.get("/api/v1/kv/{key:path}", tags=["kv"])
async def kv_get(key: str, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    found, value = await engine.events.kv_get(env.id, key)
    return {"key": key, "found": found, "value": value}


@router.put("/api/v1/kv/{key:path}", tags=["kv"])
async def kv_put(key: str, body: KvPutBody, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    try:
        ttl = parse_duration(body.ttl) if body.ttl is not None else None
    except ValueError as exc:
        raise UserError(f"ttl: {exc}") from None
    await engine.events.kv_set(env.id, key, body.value, ttl)
    return {"key": key, "ok": True}


@router.delete("/api/v1/kv/{key:path}", tags=["kv"])
async def kv_delete(key: str, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    return {"key": key, "deleted": await engine.events.kv_delete(env.id, key)}
