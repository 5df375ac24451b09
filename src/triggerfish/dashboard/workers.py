"""Workers: who is online, with which version and tasks, and when last heard from."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from triggerfish.dashboard.web import DashboardRoute, Page, current_page

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)


@router.get("/workers", response_class=HTMLResponse)
async def workers_page(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    rows = await page.engine.workers.online_rows(page.env.id)
    now = page.engine.res.clock.now()
    return page.render("workers.html", workers=rows, now=now)
