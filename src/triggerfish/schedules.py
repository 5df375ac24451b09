"""Cron schedules: ``@schedules.task`` and the default client's schedule calls.

Import it as ``from triggerfish import schedules``::

    from triggerfish import schedules

    @schedules.task(id="daily-report", cron="0 9 * * *", timezone="America/New_York")
    def daily_report(payload: schedules.ScheduledPayload) -> None: ...

    @schedules.task(id="sync")   # no cron: schedules are given at run time
    def sync(payload: schedules.ScheduledPayload) -> None: ...

    s = schedules.create(task="sync", cron="*/15 * * * *", external_id="customer_42",
                         deduplication_key="customer_42-sync")
    schedules.deactivate(s.id)

Each call takes ``client=`` to use another :class:`~triggerfish.Triggerfish`
than the one made from ``TRIGGERFISH_API_URL`` / ``TRIGGERFISH_SECRET_KEY``, and
has an ``…_async`` twin.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from triggerfish.sdk._schedules import (
    Schedule,
    ScheduledPayload,
    SchedulePage,
    Schedules,
    _client,
    task,
)

if TYPE_CHECKING:
    from triggerfish.sdk._client import Triggerfish

__all__ = [
    "Schedule",
    "SchedulePage",
    "ScheduledPayload",
    "Schedules",
    "activate",
    "activate_async",
    "create",
    "create_async",
    "deactivate",
    "deactivate_async",
    "delete",
    "delete_async",
    "list",
    "list_async",
    "retrieve",
    "retrieve_async",
    "task",
    "timezones",
    "timezones_async",
    "update",
    "update_async",
]


def create(
    *,
    task: str,
    cron: str,
    timezone: str | None = None,
    external_id: str | None = None,
    deduplication_key: str | None = None,
    client: Triggerfish | None = None,
) -> Schedule:
    """Give a scheduled task a schedule (same ``deduplication_key``: update that one).

    Example: ``schedules.create(task="sync", cron="0 * * * *", deduplication_key="c42")``.
    """
    return _client(client).create(
        task=task,
        cron=cron,
        timezone=timezone,
        external_id=external_id,
        deduplication_key=deduplication_key,
    )


async def create_async(
    *,
    task: str,
    cron: str,
    timezone: str | None = None,
    external_id: str | None = None,
    deduplication_key: str | None = None,
    client: Triggerfish | None = None,
) -> Schedule:
    return await _client(client).create_async(
        task=task,
        cron=cron,
        timezone=timezone,
        external_id=external_id,
        deduplication_key=deduplication_key,
    )


def retrieve(schedule_id: str, *, client: Triggerfish | None = None) -> Schedule:
    """One schedule by id or deduplication key: ``schedules.retrieve("sched_…")``."""
    return _client(client).retrieve(schedule_id)


async def retrieve_async(schedule_id: str, *, client: Triggerfish | None = None) -> Schedule:
    return await _client(client).retrieve_async(schedule_id)


def list(
    *,
    page: int = 1,
    per_page: int = 20,
    task: str | None = None,
    client: Triggerfish | None = None,
) -> SchedulePage:
    """A page of schedules: ``schedules.list(page=2, per_page=50).data``."""
    return _client(client).list(page=page, per_page=per_page, task=task)


async def list_async(
    *,
    page: int = 1,
    per_page: int = 20,
    task: str | None = None,
    client: Triggerfish | None = None,
) -> SchedulePage:
    return await _client(client).list_async(page=page, per_page=per_page, task=task)


def update(
    schedule_id: str,
    *,
    task: str,
    cron: str,
    timezone: str | None = None,
    external_id: str | None = None,
    client: Triggerfish | None = None,
) -> Schedule:
    """Replace an imperative schedule's settings: ``schedules.update(id, task=…, cron=…)``."""
    return _client(client).update(
        schedule_id, task=task, cron=cron, timezone=timezone, external_id=external_id
    )


async def update_async(
    schedule_id: str,
    *,
    task: str,
    cron: str,
    timezone: str | None = None,
    external_id: str | None = None,
    client: Triggerfish | None = None,
) -> Schedule:
    return await _client(client).update_async(
        schedule_id, task=task, cron=cron, timezone=timezone, external_id=external_id
    )


def delete(schedule_id: str, *, client: Triggerfish | None = None) -> str:
    """Remove an imperative schedule: ``schedules.delete("customer_42-sync")``."""
    return _client(client).delete(schedule_id)


async def delete_async(schedule_id: str, *, client: Triggerfish | None = None) -> str:
    return await _client(client).delete_async(schedule_id)


def activate(schedule_id: str, *, client: Triggerfish | None = None) -> Schedule:
    """Fire again from the next slot after now: ``schedules.activate(id)``."""
    return _client(client).activate(schedule_id)


async def activate_async(schedule_id: str, *, client: Triggerfish | None = None) -> Schedule:
    return await _client(client).activate_async(schedule_id)


def deactivate(schedule_id: str, *, client: Triggerfish | None = None) -> Schedule:
    """Stop firing until activated: ``schedules.deactivate(id)``."""
    return _client(client).deactivate(schedule_id)


async def deactivate_async(schedule_id: str, *, client: Triggerfish | None = None) -> Schedule:
    return await _client(client).deactivate_async(schedule_id)


def timezones(
    *, exclude_utc: bool = False, client: Triggerfish | None = None
) -> builtins.list[str]:
    """IANA zone names a schedule may use: ``"America/New_York" in schedules.timezones()``."""
    return _client(client).timezones(exclude_utc=exclude_utc)


async def timezones_async(
    *, exclude_utc: bool = False, client: Triggerfish | None = None
) -> builtins.list[str]:
    return await _client(client).timezones_async(exclude_utc=exclude_utc)
