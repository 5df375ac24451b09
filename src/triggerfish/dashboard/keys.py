"""API keys: list, create (the key is shown once), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from triggerfish._validated import Name
from triggerfish.dashboard.web import (
    DashboardRoute,
    Page,
    action_page,
    back,
    current_page,
    form_text,
)
from triggerfish.errors import TriggerfishError

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)


@router.get("/keys", response_class=HTMLResponse)
async def keys_page(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    keys = await page.engine.environments.list_keys()
    return page.render("keys.html", keys=keys, new_key=None)


@router.post("/keys", response_class=HTMLResponse, response_model=None)
async def create(
    request: Request, page: Annotated[Page, Depends(action_page)]
) -> HTMLResponse | object:
    name = await form_text(request, "name", kind=Name) or "dashboard"
    slug = await form_text(request, "env", kind=Name) or page.env.slug
    try:
        key, _record = await page.engine.environments.create_key(slug, name)
    except TriggerfishError as exc:
        return back("/keys", error=str(exc))
    keys = await page.engine.environments.list_keys()
    # rendered in the answer to the POST, never stored nor put in a URL: shown once
    return page.render("keys.html", keys=keys, new_key=key)


@router.post("/keys/{key_id}/revoke")
async def revoke(key_id: str, page: Annotated[Page, Depends(action_page)]) -> object:
    if not await page.engine.environments.revoke_key(key_id):
        return back("/keys", error=f"no active key {key_id}")
    return back("/keys", notice=f"revoked {key_id}")
