"""Scheduled tasks: one with a cron in code, one that gets schedules at run time.

With `triggerfish dev` running here, `triggerfish schedules list` shows
"weekday-digest"; give "customer-sync" a schedule with
`triggerfish schedules create --task customer-sync --cron "* * * * *" --external-id acme`.
"""

from __future__ import annotations

from triggerfish import logger, schedules


@schedules.task(id="weekday-digest", cron="0 9 * * MON-FRI", timezone="America/New_York")
def weekday_digest(payload: schedules.ScheduledPayload) -> dict:
    logger.info("digest", slot=payload.timestamp.isoformat(), next=payload.upcoming[0].isoformat())
    return {"for": payload.timestamp.date().isoformat()}


@schedules.task(id="customer-sync")
def customer_sync(payload: schedules.ScheduledPayload) -> dict:
    # external_id says which customer this schedule belongs to
    logger.info("syncing", customer=payload.external_id, previous=str(payload.last_timestamp))
    return {"customer": payload.external_id, "slot": payload.timestamp.isoformat()}
