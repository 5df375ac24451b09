"""Environment variables of the selected environment: list (values masked), set, delete.

Through the engine's ``EnvVars`` (``engine/envvars.py``), like the API's
``/api/v1/envvars`` routes: values are sealed by the keyring at rest, names
task processes never get and values shaped like an API key are refused. A
secret's value never reaches the browser; other values are masked until shown.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from triggerfish._validated import BadInput, Name
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


@router.get("/envvars", response_class=HTMLResponse)
async def envvars_page(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    variables = await page.engine.envvars.all(page.env.id)
    return page.render("envvars.html", variables=variables)


@router.post("/envvars")
async def set_var(
    request: Request, page: Annotated[Page, Depends(action_page)]
) -> RedirectResponse:
    """Create or replace a variable (the API's ``PUT /api/v1/envvars/{name}``)."""
    name = await form_text(request, "name", kind=Name)
    form = await request.form()
    raw = form.get("value")
    value = raw if isinstance(raw, str) else ""  # kept as typed: spaces may matter
    secret = form.get("secret") == "on"
    try:
        await page.engine.envvars.create(page.env.id, name, value, secret=secret, replace=True)
    except BadInput:
        raise  # a 422 naming the field (DashboardRoute)
    except TriggerfishError as exc:
        return back("/envvars", error=str(exc))
    return back("/envvars", notice=f"{name} set in {page.env.slug}")


@router.post("/envvars/{name}/delete")
async def delete_var(name: str, page: Annotated[Page, Depends(action_page)]) -> RedirectResponse:
    try:
        await page.engine.envvars.delete(page.env.id, page.env.slug, name)
    except TriggerfishError as exc:
        return back("/envvars", error=str(exc))
    return back("/envvars", notice=f"{name} deleted from {page.env.slug}")
