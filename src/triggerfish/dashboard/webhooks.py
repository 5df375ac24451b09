"""Webhooks: the environment's endpoints, their refused deliveries, and each
endpoint's recent deliveries with the runs they started.

Read-only here: endpoints are made with ``triggerfish webhooks create`` or the
API, because a new endpoint's secret is shown once and belongs in the sending
service's settings, not in a browser's history.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from triggerfish.dashboard.web import DashboardRoute, Page, current_page
from triggerfish.errors import TriggerfishError

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)


@router.get("/webhook-endpoints", response_class=HTMLResponse)
async def endpoints_page(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    rows = await page.engine.webhooks.endpoints(page.env.id)
    return page.render("webhooks.html", endpoints=rows)


@router.get("/webhook-endpoints/{endpoint_id}", response_class=HTMLResponse)
async def deliveries_page(
    endpoint_id: str, page: Annotated[Page, Depends(current_page)]
) -> HTMLResponse:
    try:
        endpoint = await page.engine.webhooks.get(page.env.id, endpoint_id)
        deliveries = await page.engine.webhooks.deliveries(page.env.id, endpoint_id, 100)
    except TriggerfishError:
        return page.render(
            "not_found.html", status_code=404, message=f"no webhook endpoint {endpoint_id!r}"
        )
    return page.render("webhook_deliveries.html", endpoint=endpoint, deliveries=deliveries)
