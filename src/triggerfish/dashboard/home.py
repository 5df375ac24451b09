"""The home page: what ``triggerfish doctor`` finds, in the browser, kept live."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from triggerfish.dashboard.web import DashboardRoute, Page, current_page

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)


async def _values(page: Page) -> dict[str, Any]:
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
    import_errors = await page.engine.workers.import_errors(page.env.id)
    for problem in import_errors:
        findings.append(f"Task file {problem.file} failed to import: its tasks are not served.")
    return {"doctor": doctor, "findings": findings, "import_errors": import_errors}


@router.get("/", response_class=HTMLResponse)
async def home(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    live_after = await page.engine.changes.position()  # before reading: nothing slips between
    return page.render("home.html", **await _values(page), live_after=live_after)


@router.get("/home/live", response_class=HTMLResponse)
async def home_live(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    """The home page's body alone: what the change feed (and a slow timer, for the
    workers' heartbeats and the oldest run's wait) swaps in."""
    return page.render("_home_live.html", **await _values(page))
