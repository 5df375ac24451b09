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
/ ``TRIGGERFISH_SECRET_KEY`` (``client.schedules.create(...)`` is the same call,
and the one type checkers know).
"""

from __future__ import annotations

from triggerfish.sdk import _schedules as _calls
from triggerfish.sdk._calls import default_faces
from triggerfish.sdk._schedules import Schedule, ScheduledPayload, SchedulePage, Schedules, task

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

create, create_async = default_faces(_calls._create)
retrieve, retrieve_async = default_faces(_calls._retrieve)
list, list_async = default_faces(_calls._list)
update, update_async = default_faces(_calls._update)
delete, delete_async = default_faces(_calls._delete)
activate, activate_async = default_faces(_calls._activate)
deactivate, deactivate_async = default_faces(_calls._deactivate)
timezones, timezones_async = default_faces(_calls._timezones)
