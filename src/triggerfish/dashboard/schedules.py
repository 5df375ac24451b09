"""Schedules: list with each one's next five runs in its time zone; create, edit,
activate, deactivate, delete."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from triggerfish._validated import BadInput, Key, Name
from triggerfish.dashboard.web import (
    DashboardRoute,
    Page,
    action_page,
    back,
    current_page,
    form_text,
)
from triggerfish.engine.schedules import ScheduleChanges, ScheduleInfo, ScheduleInput
from triggerfish.errors import TriggerfishError, UserError

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)
#: slots shown per schedule
UPCOMING = 5


def upcoming(page: Page, info: ScheduleInfo) -> list[str]:
    """The next slots in the schedule's own time zone, as text."""
    if not info.active:
        return []
    spec = page.engine.schedules.spec(info.cron, info.timezone)
    zone = ZoneInfo(info.timezone)
    return [
        datetime.fromtimestamp(slot, UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        for slot in spec.upcoming(page.engine.res.clock.now(), UPCOMING)
    ]


@router.get("/schedules", response_class=HTMLResponse)
async def schedules_page(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    schedules, total = await page.engine.schedules.page(page.env.id, page=1, per_page=200)
    tasks = [
        t.id
        for t in await page.engine.workers.tasks(page.env.id)
        if isinstance(t.manifest.get("schedule"), dict)
    ]
    edit = page.request.query_params.get("edit")
    editing = next((s for s in schedules if s.id == edit), None)
    return page.render(
        "schedules.html",
        schedules=[(s, upcoming(page, s)) for s in schedules],
        total=total,
        tasks=tasks,
        editing=editing,
    )


async def _input(request: Request) -> ScheduleInput:
    task = await form_text(request, "task", kind=Name)
    cron = await form_text(request, "cron", kind=Name)
    if not task:
        raise UserError("task: pick a scheduled task")
    if not cron:
        raise UserError("cron: required, e.g. '0 9 * * 1-5'")
    return ScheduleInput(
        task_id=task,
        cron=cron,
        timezone=(await form_text(request, "timezone", kind=Name)) or "UTC",
        external_id=(await form_text(request, "external_id", kind=Key)) or None,
        deduplication_key=(await form_text(request, "deduplication_key", kind=Key)) or None,
    )


@router.post("/schedules")
async def create(request: Request, page: Annotated[Page, Depends(action_page)]) -> RedirectResponse:
    try:
        info = await page.engine.schedules.create(page.env.id, await _input(request))
    except BadInput:
        raise  # a 422 naming the field (DashboardRoute), not a notice
    except TriggerfishError as exc:
        return back("/schedules", error=str(exc))
    return back("/schedules", notice=f"created {info.id}")


@router.post("/schedules/{ref}/{action}")
async def change(
    ref: str, action: str, request: Request, page: Annotated[Page, Depends(action_page)]
) -> RedirectResponse:
    schedules, env_id = page.engine.schedules, page.env.id
    try:
        if action == "activate":
            await schedules.activate(env_id, ref)
        elif action == "deactivate":
            await schedules.deactivate(env_id, ref)
        elif action == "delete":
            await schedules.delete(env_id, ref)
        elif action == "edit":
            await schedules.update(env_id, ref, ScheduleChanges.replacing(await _input(request)))
        else:
            raise UserError(f"action: unknown action {action!r}")
    except BadInput:
        raise  # a 422 naming the field (DashboardRoute), not a notice
    except TriggerfishError as exc:
        return back("/schedules", error=str(exc))
    return back("/schedules", notice=f"{ref}: {action}d" if action != "edit" else f"{ref}: saved")
