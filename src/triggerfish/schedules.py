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

Each call has an ``…_async`` twin, made from the same definition as the
client's (``client.schedules.create``). Each takes ``client=`` to use another
:class:`~triggerfish.Triggerfish` than the one made from ``TRIGGERFISH_API_URL``
/ ``TRIGGERFISH_SECRET_KEY`` (``client.schedules.create(...)`` is the same call).
Each face's signature is declared below for type checkers (a ``ParamSpec``
cannot add the ``client`` keyword); the declarations are checked against the
definitions when this module is imported.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from triggerfish.sdk import _schedules as _calls
from triggerfish.sdk._calls import declared_face
from triggerfish.sdk._schedules import Schedule, ScheduledPayload, SchedulePage, Schedules, task

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

# -- the faces: each a declared signature, checked against its definition


@declared_face(_calls._create)
def create(
    *,
    task: str,
    cron: str,
    timezone: str | None = None,
    external_id: str | None = None,
    deduplication_key: str | None = None,
    client: Triggerfish | None = None,
) -> Schedule:
    raise NotImplementedError  # replaced by the face


@declared_face(_calls._create, is_async=True)
async def create_async(
    *,
    task: str,
    cron: str,
    timezone: str | None = None,
    external_id: str | None = None,
    deduplication_key: str | None = None,
    client: Triggerfish | None = None,
) -> Schedule:
    raise NotImplementedError  # replaced by the face


@declared_face(_calls._retrieve)
def retrieve(schedule_id: str, *, client: Triggerfish | None = None) -> Schedule:
    raise NotImplementedError  # replaced by the face


@declared_face(_calls._retrieve, is_async=True)
async def retrieve_async(schedule_id: str, *, client: Triggerfish | None = None) -> Schedule:
    raise NotImplementedError  # replaced by the face


@declared_face(_calls._list)
def list(
    *,
    page: int = 1,
    per_page: int = 20,
    task: str | None = None,
    client: Triggerfish | None = None,
) -> SchedulePage:
    raise NotImplementedError  # replaced by the face


@declared_face(_calls._list, is_async=True)
async def list_async(
    *,
    page: int = 1,
    per_page: int = 20,
    task: str | None = None,
    client: Triggerfish | None = None,
) -> SchedulePage:
    raise NotImplementedError  # replaced by the face


@declared_face(_calls._update)
def update(
    schedule_id: str,
    *,
    task: str | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    external_id: str | None = None,
    client: Triggerfish | None = None,
) -> Schedule:
    raise NotImplementedError  # replaced by the face


@declared_face(_calls._update, is_async=True)
async def update_async(
    schedule_id: str,
    *,
    task: str | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    external_id: str | None = None,
    client: Triggerfish | None = None,
) -> Schedule:
    raise NotImplementedError  # replaced by the face


@declared_face(_calls._delete)
def delete(schedule_id: str, *, client: Triggerfish | None = None) -> str:
    raise NotImplementedError  # replaced by the face


@declared_face(_calls._delete, is_async=True)
async def delete_async(schedule_id: str, *, client: Triggerfish | None = None) -> str:
    raise NotImplementedError  # replaced by the face


@declared_face(_calls._activate)
def activate(schedule_id: str, *, client: Triggerfish | None = None) -> Schedule:
    raise NotImplementedError  # replaced by the face


@declared_face(_calls._activate, is_async=True)
async def activate_async(schedule_id: str, *, client: Triggerfish | None = None) -> Schedule:
    raise NotImplementedError  # replaced by the face


@declared_face(_calls._deactivate)
def deactivate(schedule_id: str, *, client: Triggerfish | None = None) -> Schedule:
    raise NotImplementedError  # replaced by the face


@declared_face(_calls._deactivate, is_async=True)
async def deactivate_async(schedule_id: str, *, client: Triggerfish | None = None) -> Schedule:
    raise NotImplementedError  # replaced by the face


@declared_face(_calls._timezones)
def timezones(
    *, exclude_utc: bool = False, client: Triggerfish | None = None
) -> builtins.list[str]:
    raise NotImplementedError  # replaced by the face


@declared_face(_calls._timezones, is_async=True)
async def timezones_async(
    *, exclude_utc: bool = False, client: Triggerfish | None = None
) -> builtins.list[str]:
    raise NotImplementedError  # replaced by the face
