"""Schedules over HTTP, on Trigger.dev's paths and shapes (WIRE.md §7).

Every ``{ref}`` is a ``sched_…`` id or the schedule's deduplication key.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from triggerfish._domain.times import iso_from_epoch
from triggerfish.api.deps import EngineDep, EnvDep
from triggerfish.api.validated import StrictJsonRoute
from triggerfish.engine import Engine
from triggerfish.engine.environments import Environment
from triggerfish.engine.schedules import (
    ScheduleChanges,
    ScheduleInfo,
    ScheduleInput,
    Schedules,
    schedule_id_of,
)
from triggerfish.errors import ScheduleNotFound

router = APIRouter(tags=["schedules"], route_class=StrictJsonRoute)

_ENV_TYPES = {"dev": "DEVELOPMENT", "prod": "PRODUCTION", "staging": "STAGING"}


class UpdateScheduleBody(BaseModel):
    """``PUT /api/v1/schedules/{ref}``: a field left out keeps its value (the time
    zone and external id too); unknown fields (``window``) are ignored."""

    model_config = ConfigDict(extra="ignore")

    task: str | None = Field(default=None, min_length=1, max_length=128)
    cron: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    externalId: str | None = Field(default=None, max_length=512)


class CreateScheduleBody(UpdateScheduleBody):
    task: str = Field(min_length=1, max_length=128)
    cron: str = Field(min_length=1, max_length=200)
    deduplicationKey: str | None = Field(default=None, min_length=1, max_length=512)


def schedule_object(info: ScheduleInfo, env: Environment) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": info.id,
        "type": info.type.value,
        "task": info.task_id,
        "active": info.active,
        "deduplicationKey": info.deduplication_key,
        "externalId": info.external_id,
        "generator": {"type": "CRON", "expression": info.cron, "description": info.description},
        "timezone": info.timezone,
        "nextRun": iso_from_epoch(info.next_run) if info.next_run is not None else None,
        "environments": [{"id": env.id, "type": _ENV_TYPES.get(env.slug, env.slug.upper())}],
    }
    return {k: v for k, v in data.items() if v is not None}


async def run_schedule_field(
    engine: Engine, env: Environment, idempotency_key: str | None
) -> dict[str, Any] | None:
    """The ``schedule`` of a run object: the schedule that started the run, if any."""
    schedule_id = schedule_id_of(idempotency_key)
    if schedule_id is None:
        return None
    try:
        info = await engine.schedules.retrieve(env.id, schedule_id)
    except ScheduleNotFound:  # deleted since
        return None
    data = schedule_object(info, env)
    return {k: data[k] for k in ("id", "externalId", "deduplicationKey", "generator") if k in data}


def _changes(body: UpdateScheduleBody) -> ScheduleChanges:
    names = {"task": "task_id", "cron": "cron", "timezone": "timezone", "externalId": "external_id"}
    return ScheduleChanges(
        task_id=body.task,
        cron=body.cron,
        timezone=body.timezone,
        external_id=body.externalId,
        given=frozenset(names[f] for f in body.model_fields_set if f in names),
    )


def _input(body: CreateScheduleBody, dedup: str | None = None) -> ScheduleInput:
    return ScheduleInput(
        task_id=body.task,
        cron=body.cron,
        timezone=body.timezone,
        external_id=body.externalId,
        deduplication_key=dedup,
    )


@router.post("/api/v1/schedules")
async def create_schedule(
    body: CreateScheduleBody, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    """Create an imperative schedule; the same ``deduplicationKey`` updates that one."""
    info = await engine.schedules.create(env.id, _input(body, body.deduplicationKey))
    return schedule_object(info, env)


@router.get("/api/v1/schedules")
async def list_schedules(
    engine: EngineDep,
    env: EnvDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(alias="perPage", ge=1, le=100)] = 20,
    task: Annotated[str | None, Query(description="only this task's schedules")] = None,
) -> dict[str, Any]:
    """Declarative and imperative schedules, oldest first, in numbered pages."""
    infos, total = await engine.schedules.page(env.id, page=page, per_page=per_page, task_id=task)
    return {
        "data": [schedule_object(i, env) for i in infos],
        "pagination": {
            "currentPage": page,
            "totalPages": math.ceil(total / per_page),
            "count": total,
        },
    }


@router.get("/api/v1/timezones")
async def timezones(
    exclude_utc: Annotated[bool, Query(alias="excludeUtc")] = False,
) -> dict[str, list[str]]:
    """IANA time zones a schedule may use. Needs no API key."""
    return {"timezones": Schedules.timezones(exclude_utc=exclude_utc)}


@router.post("/api/v1/schedules/{ref:path}/activate")
async def activate_schedule(ref: str, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    return schedule_object(await engine.schedules.activate(env.id, ref), env)


@router.post("/api/v1/schedules/{ref:path}/deactivate")
async def deactivate_schedule(ref: str, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    return schedule_object(await engine.schedules.deactivate(env.id, ref), env)


@router.post("/api/v1/schedules/{ref:path}/trigger")
async def trigger_schedule(ref: str, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    """Run the schedule's task now, by hand (its timetable does not move); answers
    ``{"id": "run_…"}``. Works on declarative schedules too."""
    result = await engine.schedules.trigger_now(env.id, ref)
    return {"id": result.id}


@router.get("/api/v1/schedules/{ref:path}")
async def retrieve_schedule(ref: str, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    return schedule_object(await engine.schedules.retrieve(env.id, ref), env)


@router.put("/api/v1/schedules/{ref:path}")
async def update_schedule(
    ref: str, body: UpdateScheduleBody, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    """Change an imperative schedule (declarative ones change in code: 422)."""
    return schedule_object(await engine.schedules.update(env.id, ref, _changes(body)), env)


@router.delete("/api/v1/schedules/{ref:path}")
async def delete_schedule(ref: str, engine: EngineDep, env: EnvDep) -> dict[str, str]:
    """Remove an imperative schedule (declarative ones are removed in code: 422)."""
    return {"id": await engine.schedules.delete(env.id, ref)}
