"""Example tasks: run `triggerfish dev` in this folder, then trigger them."""

from __future__ import annotations

import random

from pydantic import BaseModel, Field

from triggerfish import AbortTaskRunError, Context, logger, retry, task


@task(
    id="hello-world",
    retry=retry(max_attempts=3, factor=2, min_delay=1, max_delay=30),
    max_duration=300,
)
async def hello_world(payload: dict, ctx: Context) -> dict:
    logger.info("greeting", who=payload.get("who"), attempt=ctx.attempt.number)
    return {"message": f"Hello {payload.get('who', 'Stranger')}"}


class WelcomeEmail(BaseModel):
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", description="an email address")
    name: str


@task(id="send-welcome-email", machine="micro")
def send_welcome_email(payload: WelcomeEmail) -> dict:
    """A typed payload: triggering with a bad address is refused with HTTP 422."""
    print(f"sending a welcome email to {payload.to}")
    return {"sent_to": payload.to}


@task(id="flaky-sync", retry=retry(max_attempts=5, min_delay=0.5, max_delay=2))
def flaky_sync(payload: dict, ctx: Context) -> dict:
    """Fails now and then; the retry policy brings it home."""
    if random.random() < 0.5 and ctx.attempt.number < 5:
        raise ConnectionError("upstream hiccup")
    return {"synced": True, "attempts": ctx.attempt.number}


@task(id="charge-card")
def charge_card(payload: dict) -> dict:
    if payload.get("amount", 0) <= 0:
        raise AbortTaskRunError("amount must be positive; not retrying")
    return {"charged": payload["amount"]}
