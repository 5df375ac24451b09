"""Scheduled tasks for the schedules end-to-end tests."""

from __future__ import annotations

from triggerfish import schedules, task


@schedules.task(id="tick")
def tick(payload: schedules.ScheduledPayload) -> dict[str, object]:
    # the payload arrives parsed: slot times are datetimes
    return {
        "slot": payload.timestamp.isoformat(),
        "previous": payload.last_timestamp.isoformat() if payload.last_timestamp else None,
        "external_id": payload.external_id,
        "upcoming": len(payload.upcoming),
    }


@schedules.task(id="daily-report", cron="0 9 * * *", timezone="America/New_York")
def daily_report(payload: schedules.ScheduledPayload) -> str:
    return f"report for {payload.timestamp.date()}"


@task(id="plain")
def plain(payload: dict[str, object]) -> None:
    return None
