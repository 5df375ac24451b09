"""Events: recent events with the runs they started or woke, rejections, a send form."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from triggerfish._validated import EventName, Key
from triggerfish.dashboard.web import (
    DashboardRoute,
    Page,
    action_page,
    back,
    current_page,
    form_json,
    form_text,
)
from triggerfish.errors import TriggerfishError

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)


@router.get("/events", response_class=HTMLResponse)
async def events_page(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    name = page.request.query_params.get("name") or None
    rows = await page.engine.events.recent(page.env.id, name, 100)
    return page.render("events.html", events=rows, name=name or "")


@router.post("/events")
async def send(request: Request, page: Annotated[Page, Depends(action_page)]) -> RedirectResponse:
    name = await form_text(request, "name", kind=EventName)
    if not name:
        return back("/events", error="name: required")
    try:
        payload = form_json("payload", await form_text(request, "payload") or "null")
    except ValueError as exc:
        return back("/events", error=f"payload: not JSON ({exc})")
    event_id = await form_text(request, "id", kind=Key) or None
    try:
        sent = await page.engine.events.send(page.env.id, name, payload, event_id)
    except TriggerfishError as exc:
        return back("/events", error=str(exc))
    return back(
        "/events",
        notice=f"sent {sent.id}: {len(sent.run_ids)} runs started, "
        f"{sent.waits_resolved} waits resolved",
    )
