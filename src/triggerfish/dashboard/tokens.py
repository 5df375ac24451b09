"""Waitpoint tokens: the pending ones, and completing one with JSON."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

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


@router.get("/tokens", response_class=HTMLResponse)
async def tokens_page(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    status = page.request.query_params.get("status") or "PENDING"
    rows, more = await page.engine.waitpoints.list_tokens(
        page.env.id,
        statuses=[status] if status != "ALL" else [],
        idempotency_key=None,
        tags=[],
        size=100,
        after=None,
    )
    return page.render("tokens.html", tokens=rows, more=more, status=status)


@router.post("/tokens/{token_id}/complete")
async def complete(
    token_id: str, request: Request, page: Annotated[Page, Depends(action_page)]
) -> RedirectResponse:
    target = await form_text(request, "back") or "/tokens"
    if not target.startswith("/") or target.startswith("//"):
        target = "/tokens"
    text = await form_text(request, "data")
    try:
        data = form_json("data", text or "null")
    except ValueError as exc:
        return back(target, error=f"data: not JSON ({exc})")
    try:
        await page.engine.waitpoints.complete_token(page.env.id, token_id, data)
    except TriggerfishError as exc:
        return back(target, error=str(exc))
    return back(target, notice=f"completed {token_id}")
