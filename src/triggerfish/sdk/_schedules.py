"""``schedules``: scheduled tasks, and the client for schedules created at run time.

Declarative: the cron lives in the code, and the schedule follows the code each
time a worker registers::

    from triggerfish import schedules

    @schedules.task(id="daily-report", cron="0 9 * * *", timezone="America/New_York")
    def daily_report(payload: schedules.ScheduledPayload) -> None:
        print("report for", payload.timestamp, "next:", payload.upcoming[0])

Imperative: a scheduled task without a cron gets schedules at run time, one per
customer for example (the same ``deduplication_key`` updates instead of adding)::

    @schedules.task(id="sync")
    def sync(payload: schedules.ScheduledPayload) -> None:
        sync_customer(payload.external_id)

    schedules.create(task="sync", cron="*/15 * * * *", timezone="Europe/Paris",
                     external_id="customer_42", deduplication_key="customer_42-sync")
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from triggerfish._cron import CronError, check_timezone, parse_cron
from triggerfish.errors import InvalidTaskOptions
from triggerfish.sdk._calls import Call, Namespace, faces
from triggerfish.sdk._task import RunHandle, Task, TaskDecorator
from triggerfish.sdk._task import task as _plain_task


class ScheduledPayload(BaseModel):
    """What a scheduled run receives. Annotate the task's payload with it.

    ``timestamp`` is the slot the run is for (not when it started);
    ``last_timestamp`` the previous slot this schedule ran; ``upcoming`` the next
    five slots.
    """

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    schedule_id: str = Field(alias="scheduleId")
    type: Literal["DECLARATIVE", "IMPERATIVE"]
    timestamp: datetime
    last_timestamp: datetime | None = Field(default=None, alias="lastTimestamp")
    external_id: str | None = Field(default=None, alias="externalId")
    timezone: str
    upcoming: list[datetime] = Field(default_factory=list)


class Generator(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    expression: str
    description: str = ""


class Schedule(BaseModel):
    """A schedule as the API returns it."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    type: Literal["DECLARATIVE", "IMPERATIVE"]
    task: str
    active: bool
    deduplication_key: str | None = Field(default=None, alias="deduplicationKey")
    external_id: str | None = Field(default=None, alias="externalId")
    generator: Generator
    timezone: str
    next_run: datetime | None = Field(default=None, alias="nextRun")

    @property
    def cron(self) -> str:
        return self.generator.expression


class SchedulePage(BaseModel):
    data: list[Schedule]
    current_page: int
    total_pages: int
    count: int


def task(
    *,
    id: str,
    cron: str | None = None,
    timezone: str = "UTC",
    **options: Any,
) -> TaskDecorator:
    """Declare a scheduled task; ``cron`` (optional) gives it a declarative schedule.

    The cron expression and time zone are checked here, when the module is
    imported: a bad one fails the worker's start naming the task. Other options
    are those of :func:`triggerfish.task` (``retry``, ``queue``, ``machine``, …).

    Example::

        @schedules.task(id="hourly-sync", cron="0 * * * *")
        async def hourly_sync(payload: schedules.ScheduledPayload) -> None: ...
    """
    try:
        if cron is not None:
            spec = parse_cron(cron, timezone)
            cron, timezone = spec.expression, spec.timezone
        else:
            check_timezone(timezone)
    except CronError as exc:
        raise InvalidTaskOptions(f"task {id!r}: {exc}") from None
    make = _plain_task(id=id, **options)

    def decorate(fn: Callable[..., Any]) -> Task[Any, Any]:
        made = make(fn)
        made.schedule = {"cron": cron, "timezone": timezone}
        return made

    return decorate


def _schedule_body(
    task: str,
    cron: str,
    timezone: str | None,
    external_id: str | None,
    deduplication_key: str | None = None,
) -> dict[str, Any]:
    body = {
        "task": task,
        "cron": cron,
        "timezone": timezone,
        "externalId": external_id,
        "deduplicationKey": deduplication_key,
    }
    return {k: v for k, v in body.items() if v is not None}


def _parse_page(body: dict[str, Any]) -> SchedulePage:
    p = body["pagination"]
    return SchedulePage(
        data=[Schedule.model_validate(s) for s in body["data"]],
        current_page=int(p["currentPage"]),
        total_pages=int(p["totalPages"]),
        count=int(p["count"]),
    )


def _path(schedule_id: str, action: str = "") -> str:
    return f"/api/v1/schedules/{quote(schedule_id, safe='')}{action}"


# -- the calls: each defined once; Schedules and triggerfish.schedules make their faces


def _create(
    *,
    task: str,
    cron: str,
    timezone: str | None = None,
    external_id: str | None = None,
    deduplication_key: str | None = None,
) -> Call[Schedule]:
    """Give the scheduled task ``task`` a schedule; same deduplication key: update it.

    Example::

        s = schedules.create(task="sync", cron="0 * * * *",
                             deduplication_key="customer_42-sync")
    """
    body = _schedule_body(task, cron, timezone, external_id, deduplication_key)
    return Call("POST", "/api/v1/schedules", Schedule.model_validate, json=body)


def _retrieve(schedule_id: str) -> Call[Schedule]:
    """One schedule, by ``sched_…`` id or deduplication key."""
    return Call("GET", _path(schedule_id), Schedule.model_validate)


def _list(*, page: int = 1, per_page: int = 20, task: str | None = None) -> Call[SchedulePage]:
    """The environment's schedules, oldest first, ``per_page`` (≤ 100) at a time."""
    params: dict[str, Any] = {"page": page, "perPage": per_page}
    if task:
        params["task"] = task
    return Call("GET", "/api/v1/schedules", _parse_page, params=params)


def _update(
    schedule_id: str,
    *,
    task: str | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    external_id: str | None = None,
) -> Call[Schedule]:
    """Change an imperative schedule: only what is given; the rest (the time zone
    and external id included) keeps its value.

    Example: ``client.schedules.update("sched_…", cron="0 10 * * *")``.
    """
    body = {
        "task": task,
        "cron": cron,
        "timezone": timezone,
        "externalId": external_id,
    }
    body = {k: v for k, v in body.items() if v is not None}
    return Call("PUT", _path(schedule_id), Schedule.model_validate, json=body)


def _trigger(schedule_id: str) -> Call[RunHandle]:
    """Run the schedule's task now, by hand, with the payload a slot now would get
    (``scheduleId``, ``timestamp``, ``externalId``…); its timetable does not move.

    Example: ``client.runs.poll(client.schedules.trigger("sched_…").id)``.
    """
    return Call(
        "POST", _path(schedule_id, "/trigger"), lambda b: RunHandle(id=str(b["id"])), json={}
    )


def _delete(schedule_id: str) -> Call[str]:
    """Remove an imperative schedule; returns its id."""
    return Call("DELETE", _path(schedule_id), lambda b: str(b["id"]))


def _activate(schedule_id: str) -> Call[Schedule]:
    """Fire again, from the next slot after now."""
    return Call("POST", _path(schedule_id, "/activate"), Schedule.model_validate)


def _deactivate(schedule_id: str) -> Call[Schedule]:
    """Stop firing until activated again; slots in between never run."""
    return Call("POST", _path(schedule_id, "/deactivate"), Schedule.model_validate)


def _timezones(*, exclude_utc: bool = False) -> Call[builtins.list[str]]:
    """The IANA time zone names a schedule may use."""
    params = {"excludeUtc": "true"} if exclude_utc else {}
    return Call(
        "GET", "/api/v1/timezones", lambda b: [str(z) for z in b["timezones"]], params=params
    )


class Schedules(Namespace):
    """``client.schedules``: create, read, change and remove schedules over the API.

    Every method has an ``…_async`` twin. Schedules are addressed by their
    ``sched_…`` id or by their deduplication key.
    """

    create, create_async = faces(_create)
    retrieve, retrieve_async = faces(_retrieve)
    list, list_async = faces(_list)
    update, update_async = faces(_update)
    delete, delete_async = faces(_delete)
    activate, activate_async = faces(_activate)
    deactivate, deactivate_async = faces(_deactivate)
    timezones, timezones_async = faces(_timezones)
    trigger, trigger_async = faces(_trigger)
