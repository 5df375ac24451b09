"""Queues: running and queued counts, limits, pause and resume, the environment's limit."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

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
from triggerfish.engine.queues import QueueRef
from triggerfish.errors import TriggerfishError, UserError

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)


def _int_or_none(field: str, text: str) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{field}: expected a whole number, got {text!r}") from None


def dom_id(name: str) -> str:
    """An HTML id for a queue's cells (queue names hold ``/`` and more)."""
    return "q-" + hashlib.sha256(name.encode()).hexdigest()[:12]


async def _values(page: Page) -> dict[str, Any]:
    queues, total = await page.engine.queues.page(page.env.id, page=1, per_page=500)
    env_limit, running = await page.engine.queues.environment_limit(page.env.id)
    return {
        "queues": queues,
        "total": total,
        "env_limit": env_limit,
        "running": running,
        "dom_id": dom_id,
    }


@router.get("/queues", response_class=HTMLResponse)
async def queues_page(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    live_after = await page.engine.changes.position()  # before reading: nothing slips between
    return page.render("queues.html", **await _values(page), live_after=live_after)


@router.get("/queues/counts", response_class=HTMLResponse)
async def queue_counts(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    """Each queue's running and queued counts and state, as out-of-band swaps
    (``hx-swap-oob``): the change feed updates those cells in place, never the forms
    (a limit being typed stays as it is)."""
    return page.render("_queue_counts.html", **await _values(page))


@router.post("/queues/{name:path}/edit")
async def edit_queue(
    name: str, request: Request, page: Annotated[Page, Depends(action_page)]
) -> RedirectResponse:
    """One form per queue: the button pressed says what to change."""
    ref, env_id, queues = QueueRef("custom", name), page.env.id, page.engine.queues
    action = await form_text(request, "action")
    try:
        if action == "pause":
            await queues.pause(env_id, ref)
        elif action == "resume":
            await queues.resume(env_id, ref)
        elif action == "limits":
            limit = _int_or_none("limit", await form_text(request, "limit", kind=Name))
            if limit is None:
                await queues.reset_limit(env_id, ref)
            else:
                await queues.override_limit(env_id, ref, limit)
            count = _int_or_none("rate_count", await form_text(request, "rate_count", kind=Name))
            period_text = await form_text(request, "rate_period", kind=Name)
            try:
                period = float(period_text) if period_text else None
            except ValueError:
                raise UserError(f"rate_period: expected seconds, got {period_text!r}") from None
            await queues.set_rate_limit(env_id, ref, count, period)
        else:
            raise UserError(f"action: unknown action {action!r}")
    except BadInput:
        raise  # a 422 naming the field (DashboardRoute), not a notice
    except TriggerfishError as exc:
        return back("/queues", error=str(exc))
    return back("/queues", notice=f"queue {name}: {action} done")


@router.post("/queues-environment")
async def environment_limit(
    request: Request, page: Annotated[Page, Depends(action_page)]
) -> RedirectResponse:
    try:
        limit = _int_or_none("limit", await form_text(request, "limit", kind=Name))
        await page.engine.queues.set_environment_limit(page.env.id, limit)
    except BadInput:
        raise  # a 422 naming the field (DashboardRoute), not a notice
    except TriggerfishError as exc:
        return back("/queues", error=str(exc))
    return back("/queues", notice="environment limit saved")
