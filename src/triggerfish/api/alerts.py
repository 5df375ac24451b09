"""Alert rules and deliveries over HTTP, and the channels that send alerts."""

from __future__ import annotations

import asyncio
import os
import smtplib
from email.message import EmailMessage
from typing import Any

import httpx
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from triggerfish.api.deps import EngineDep, EnvDep
from triggerfish.api.validated import StrictJsonRoute
from triggerfish.engine.alerts import RuleSpec
from triggerfish.errors import UserError

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"], route_class=StrictJsonRoute)


class RuleBody(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: str
    channel: str
    target: str = Field(min_length=1, max_length=512)
    config: dict[str, Any] = Field(default_factory=dict)
    throttle: float = 300.0


@router.post("")
async def add_rule(body: RuleBody, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    """Add a rule; a webhook's signing secret is in ``secret``, shown this once."""
    spec = RuleSpec(
        name=body.name,
        kind=body.kind.upper(),
        channel=body.channel.upper(),
        target=body.target,
        config=body.config,
        throttle=body.throttle,
    )
    rule, secret = await engine.alerts.add_rule(env.id, spec)
    return {**rule, "secret": secret} if secret else rule


@router.get("")
async def list_rules(engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    return {"data": await engine.alerts.rules(env.id)}


@router.get("/deliveries")
async def list_deliveries(
    engine: EngineDep, env: EnvDep, limit: int = Query(100, ge=1, le=1000)
) -> dict[str, Any]:
    return {"data": await engine.alerts.deliveries(env.id, limit)}


@router.delete("/{rule_id}")
async def delete_rule(rule_id: str, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    if not await engine.alerts.delete_rule(env.id, rule_id):
        raise UserError(f"rule_id: no alert rule {rule_id} in this environment")
    return {"id": rule_id, "deleted": True}


class Channels:
    """Sends alerts: webhooks and Slack over HTTP, email over SMTP
    (``TRIGGERFISH_SMTP_HOST``, ``_PORT``, ``_FROM``, ``_USER``, ``_PASSWORD``,
    ``_STARTTLS``)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout

    async def send(self, channel: str, target: str, body: bytes, headers: dict[str, str]) -> None:
        if channel in ("WEBHOOK", "SLACK"):
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                r = await http.post(target, content=body, headers=headers)
            if r.status_code >= 300:
                raise RuntimeError(f"{target} answered {r.status_code}")
            return
        if channel == "EMAIL":
            await asyncio.to_thread(self._mail, target, body)
            return
        raise RuntimeError(f"unknown channel {channel}")

    def _mail(self, to: str, body: bytes) -> None:
        import json

        payload = json.loads(body)
        message = EmailMessage()
        message["From"] = os.environ.get("TRIGGERFISH_SMTP_FROM", "triggerfish@localhost")
        message["To"] = to
        count = payload.get("count", 1)
        suffix = f" (x{count})" if count > 1 else ""
        message["Subject"] = f"[triggerfish] {payload.get('rule')}: {payload.get('kind')}{suffix}"
        message.set_content(
            f"{payload.get('summary', '')}\n\n{json.dumps(payload, indent=2, sort_keys=True)}\n"
        )
        host = os.environ.get("TRIGGERFISH_SMTP_HOST", "127.0.0.1")
        port = int(os.environ.get("TRIGGERFISH_SMTP_PORT", "25"))
        with smtplib.SMTP(host, port, timeout=self.timeout) as smtp:
            if os.environ.get("TRIGGERFISH_SMTP_STARTTLS", "").lower() in ("1", "true"):
                smtp.starttls()
            user = os.environ.get("TRIGGERFISH_SMTP_USER")
            if user:
                smtp.login(user, os.environ.get("TRIGGERFISH_SMTP_PASSWORD", ""))
            smtp.send_message(message)
