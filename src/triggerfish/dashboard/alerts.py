"""Alerts: the environment's rules (what is watched, which channel it goes to),
adding and removing rules, and the recent deliveries with their status, tries
and last error.

A new webhook rule's signing secret is rendered once, in the answer to the POST
that made it (as a new API key is), never stored in the page nor put in a URL.
Slack and webhook targets are shown without their path's secret parts: a Slack
incoming-webhook URL is a credential.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from triggerfish.dashboard.web import (
    DashboardRoute,
    Page,
    action_page,
    back,
    current_page,
    form_text,
)
from triggerfish.engine.alerts import CHANNELS, KINDS, RuleSpec
from triggerfish.errors import TriggerfishError, UserError

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)

#: the form's optional fields: (name, what they are, a number?)
CONFIG_FIELDS = (
    ("threshold", "FAILURE_RATE: failed share, 0 to 1", True),
    ("window", "FAILURE_RATE: seconds", True),
    ("min_runs", "FAILURE_RATE: runs needed", True),
    ("queue", "QUEUE_AGE: the queue (empty: any)", False),
    ("max_age", "QUEUE_AGE: seconds", True),
)


def shown_target(channel: str, target: str) -> str:
    """A rule's target as the page shows it: an email address whole, a URL as its
    origin (a Slack or webhook URL's path and query may be its secret)."""
    if channel == "EMAIL":
        return target
    parts = urlsplit(target)
    if not parts.scheme or not parts.netloc:
        return "(hidden)"
    return f"{parts.scheme}://{parts.netloc}/…" if parts.path not in ("", "/") else target


async def _render(page: Page, *, new_secret: str | None = None) -> HTMLResponse:
    rules = await page.engine.alerts.rules(page.env.id)
    deliveries = await page.engine.alerts.deliveries(page.env.id, 50)
    names = {r["id"]: r["name"] for r in rules}
    for d in deliveries:  # ISO strings from the engine, times for the page
        d["createdAt"] = _when(d["createdAt"])
        d["sentAt"] = _when(d["sentAt"])
    for r in rules:
        r["shown_target"] = shown_target(r["channel"], r["target"])
    return page.render(
        "alerts.html",
        rules=rules,
        deliveries=deliveries,
        rule_names=names,
        kinds=KINDS,
        channels=CHANNELS,
        config_fields=CONFIG_FIELDS,
        new_secret=new_secret,
    )


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    return await _render(page)


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.removesuffix("Z")) if value else None


def _number(field: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise UserError(f"{field}: a number, not {raw!r}") from None


@router.post("/alerts", response_class=HTMLResponse, response_model=None)
async def add(request: Request, page: Annotated[Page, Depends(action_page)]) -> object:
    form = {k: v.strip() for k, v in (await request.form()).items() if isinstance(v, str)}
    config: dict[str, Any] = {
        "tasks": [t.strip() for t in form.get("tasks", "").split(",") if t.strip()]
    }
    try:
        for field, _help, numeric in CONFIG_FIELDS:
            raw = form.get(field, "")
            if raw:
                value = _number(field, raw) if numeric else raw
                config[field] = int(value) if field == "min_runs" else value
        throttle = _number("throttle", form["throttle"]) if form.get("throttle") else 300.0
        spec = RuleSpec(
            name=await form_text(request, "name"),
            kind=form.get("kind", "").upper(),
            channel=form.get("channel", "").upper(),
            target=form.get("target", ""),
            config=config,
            throttle=throttle,
        )
        if not spec.name:
            raise UserError("name: required")
        rule, secret = await page.engine.alerts.add_rule(page.env.id, spec)
    except TriggerfishError as exc:
        return back("/alerts", error=str(exc))
    if secret is None:
        return back("/alerts", notice=f"added alert rule {rule['name']}")
    # rendered in the answer to the POST, never stored nor put in a URL: shown once
    return await _render(page, new_secret=secret)


@router.post("/alerts/{rule_id}/delete")
async def delete(rule_id: str, page: Annotated[Page, Depends(action_page)]) -> object:
    if not await page.engine.alerts.delete_rule(page.env.id, rule_id):
        return back("/alerts", error=f"no alert rule {rule_id} in this environment")
    return back("/alerts", notice=f"deleted alert rule {rule_id}")
