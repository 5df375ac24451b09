"""The home page: what ``triggerfish doctor`` finds, in the browser."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from triggerfish.dashboard.web import DashboardRoute, Page, current_page

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)


@router.get("/", response_class=HTMLResponse)
async def home(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    doctor = await page.engine.queues.doctor(page.env.id)
    paused = [q for q in doctor["queues"] if q["paused"]]
    findings: list[str] = []
    if not doctor["workers"]:
        findings.append("No worker is online: queued runs will not start.")
    for q in paused:
        findings.append(f"Queue {q['name']} is paused with {q['queued']} runs queued.")
    oldest = doctor["oldestQueuedRun"]
    if oldest and oldest["reason"]:
        findings.append(f"The oldest queued run waits because: {oldest['reason']['message']}")
    return page.render("home.html", doctor=doctor, findings=findings)
