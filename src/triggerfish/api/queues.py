"""Queues over HTTP: Trigger.dev's ``queues.*`` paths (WIRE.md §12), plus
Triggerfish's own extensions (rate limits, per-key limits, the environment
limit, doctor) under their own paths."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import unquote

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from triggerfish._durations import parse_duration
from triggerfish.api.deps import EngineDep, EnvDep
from triggerfish.api.serialize import iso
from triggerfish.api.validated import BadInput, Duration, StrictJsonRoute, text_problem
from triggerfish.engine.queues import QueueInfo, QueueRef
from triggerfish.errors import UserError

router = APIRouter(tags=["queues"], route_class=StrictJsonRoute)

QueueTypeName = Literal["id", "task", "custom"]
#: the longest rate-limit period: a week
MAX_RATE_PERIOD = 7 * 24 * 3600


def queue_object(info: QueueInfo) -> dict[str, Any]:
    """A queue as Trigger.dev's SDK reads it, plus ``concurrencyKeyLimit`` and ``rateLimit``."""
    queue = info.queue
    data: dict[str, Any] = {
        "id": queue.id,
        "name": queue.name.removeprefix("task/") if info.kind == "task" else queue.name,
        "type": info.kind,
        "running": info.running,
        "queued": info.queued,
        "paused": bool(queue.paused),
        "concurrencyLimit": info.limit,
        "concurrency": {
            "current": info.limit,
            "base": queue.concurrency_limit,
            "override": queue.concurrency_limit_override,
            "overriddenAt": iso(queue.overridden_at),
            "overriddenBy": None,
        },
        "concurrencyKeyLimit": queue.concurrency_key_limit,
        "rateLimit": (
            {"limit": queue.rate_limit_count, "period": queue.rate_limit_period}
            if queue.rate_limit_count and queue.rate_limit_period
            else None
        ),
    }
    return data


def _ref(value: str, type_: str | None) -> QueueRef:
    value = unquote(value)  # the SDK sends "/" as %252F
    problem = text_problem(value)
    if problem is not None or len(value) > 256:
        raise BadInput(f"queue: {problem or 'at most 256 characters'}")
    if type_ is None:
        type_ = "id" if value.startswith("queue_") else "custom"
    if type_ not in ("id", "task", "custom"):
        raise UserError(f"type: expected id, task or custom, got {type_!r}")
    if type_ == "custom" and value.startswith("task/"):
        return QueueRef("task", value.removeprefix("task/"))
    return QueueRef(type_, value)  # type: ignore[arg-type]


class TypeBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: QueueTypeName | None = None


class PauseBody(TypeBody):
    action: Literal["pause", "resume"] = "pause"


class OverrideBody(TypeBody):
    concurrencyLimit: int = Field(ge=0, le=100_000)


class KeyLimitBody(TypeBody):
    concurrencyKeyLimit: int | None = Field(default=None, ge=0, le=100_000)


class RateLimitBody(TypeBody):
    """``limit`` starts per ``period``; both null removes the rate limit."""

    #: starts per period, 1 to 1,000,000
    limit: int | None = Field(default=None, ge=1, le=1_000_000)
    #: seconds (or "1m"), more than 0 and at most a week
    period: Duration | None = None


class EnvLimitBody(BaseModel):
    concurrencyLimit: int | None = Field(default=None, ge=0, le=1_000_000)


@router.get("/api/v1/queues")
async def list_queues(
    engine: EngineDep,
    env: EnvDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(alias="perPage", ge=1, le=100)] = 25,
) -> dict[str, Any]:
    """Queues of the environment, by name, with running/queued counts (offset pages)."""
    infos, total = await engine.queues.page(env.id, page=page, per_page=per_page)
    return {
        "data": [queue_object(i) for i in infos],
        "pagination": {
            "currentPage": page,
            "totalPages": max(1, -(-total // per_page)),
            "count": total,
        },
    }


@router.post("/api/v1/queues/{value:path}/pause")
async def pause_queue(
    value: str, body: PauseBody, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    """Pause (the queue keeps accepting runs, starts none) or resume a queue."""
    ref = _ref(value, body.type)
    if body.action == "pause":
        info = await engine.queues.pause(env.id, ref)
    else:
        info = await engine.queues.resume(env.id, ref)
    return queue_object(info)


@router.post("/api/v1/queues/{value:path}/concurrency/override")
async def override_concurrency(
    value: str, body: OverrideBody, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    """Set the queue's concurrency limit at run time; wins over code until reset."""
    info = await engine.queues.override_limit(env.id, _ref(value, body.type), body.concurrencyLimit)
    return queue_object(info)


@router.post("/api/v1/queues/{value:path}/concurrency/reset")
async def reset_concurrency(
    value: str, body: TypeBody, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    """Go back to the concurrency limit declared in code."""
    return queue_object(await engine.queues.reset_limit(env.id, _ref(value, body.type)))


@router.post("/api/v1/queues/{value:path}/concurrency/key-limit")
async def set_key_limit(
    value: str, body: KeyLimitBody, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    """Slots each concurrency key may hold (Triggerfish); null: the queue's limit."""
    info = await engine.queues.set_key_limit(
        env.id, _ref(value, body.type), body.concurrencyKeyLimit
    )
    return queue_object(info)


@router.post("/api/v1/queues/{value:path}/rate-limit")
async def set_rate_limit(
    value: str, body: RateLimitBody, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    """At most ``limit`` starts per ``period`` (Triggerfish); both null removes it."""
    period: float | None = None
    if body.period is not None:
        try:
            period = parse_duration(body.period)
        except ValueError as exc:
            raise UserError(f"period: {exc}") from None
        if not 0 < period <= MAX_RATE_PERIOD:
            raise BadInput(f"period: must be more than 0 and at most {MAX_RATE_PERIOD} seconds")
    info = await engine.queues.set_rate_limit(env.id, _ref(value, body.type), body.limit, period)
    return queue_object(info)


@router.get("/api/v1/queues/{value:path}")
async def retrieve_queue(
    value: str,
    engine: EngineDep,
    env: EnvDep,
    type_: Annotated[QueueTypeName | None, Query(alias="type")] = None,
) -> dict[str, Any]:
    return queue_object(await engine.queues.retrieve(env.id, _ref(value, type_)))


@router.get("/api/v1/environment/concurrency")
async def environment_concurrency(engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    """The environment-wide concurrency limit (Triggerfish) and runs holding a slot."""
    limit, running = await engine.queues.environment_limit(env.id)
    return {"concurrencyLimit": limit, "running": running}


@router.put("/api/v1/environment/concurrency")
async def set_environment_concurrency(
    body: EnvLimitBody, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    """Cap the runs holding a slot across every queue; null removes the cap."""
    await engine.queues.set_environment_limit(env.id, body.concurrencyLimit)
    limit, running = await engine.queues.environment_limit(env.id)
    return {"concurrencyLimit": limit, "running": running}


@router.delete("/api/v1/environment/concurrency")
async def reset_environment_concurrency(engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    """Drop the limit set at run time: the project configuration's default applies again."""
    await engine.queues.reset_environment_limit(env.id)
    limit, running = await engine.queues.environment_limit(env.id)
    return {"concurrencyLimit": limit, "running": running}


class RetentionBody(BaseModel):
    #: days finished runs are kept, 1 to 36,500; null: the server's default
    days: int | None = Field(default=None, ge=1, le=36_500)


@router.get("/api/v1/environment/retention")
async def environment_retention(engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    """Days finished runs (with their logs, journal and events) are kept (Triggerfish)."""
    days, own = await engine.maintenance.retention(env.id)
    return {"days": days, "default": not own}


@router.put("/api/v1/environment/retention")
async def set_environment_retention(
    body: RetentionBody, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    """Keep this environment's finished runs ``days`` days; null: the server's default."""
    await engine.maintenance.set_retention(env.id, body.days)
    days, own = await engine.maintenance.retention(env.id)
    return {"days": days, "default": not own}


@router.get("/api/v1/doctor")
async def doctor(engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    """What could hold runs back: limits, paused queues, workers online, oldest queued run."""
    report = await engine.queues.doctor(env.id)
    report["environment"]["slug"] = env.slug
    return report
