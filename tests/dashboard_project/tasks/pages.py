"""Tasks the dashboard's browser tests drive."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from triggerfish import Context, logger, retry, schedules, step, task, wait


class Greeting(BaseModel):
    name: str = "Ada"
    times: int = 1


@task(id="greet")
def greet(payload: Greeting) -> dict[str, Any]:
    logger.info("greeting someone", name=payload.name)
    logger.warning("a warning line")
    return {"message": " ".join([f"Hello {payload.name}"] * payload.times)}


def _first() -> int:
    return 1


def _second(fail: bool) -> int:
    if fail:
        raise RuntimeError("the second step failed on purpose")
    return 2


@task(id="two-steps", retry=retry(max_attempts=1))
def two_steps(payload: dict[str, Any]) -> dict[str, Any]:
    a = step.run("first", _first)
    b = step.run("second", _second, bool(payload.get("fail")))
    return {"sum": a + b}


@task(id="awaits-approval")
async def awaits_approval(payload: dict[str, Any]) -> dict[str, Any]:
    token = await wait.create_token(timeout="10m", tags=["approval"])
    result = await wait.for_token(token)
    return {"approved": result.output}


@schedules.task(id="tick")
def tick(payload: schedules.ScheduledPayload) -> str:
    return payload.timestamp.isoformat()


@task(id="ticker")
def ticker(payload: dict[str, Any]) -> int:
    """Logs a line every ``every`` seconds, ``lines`` times: live updates for the run page."""
    for i in range(int(payload.get("lines", 20))):
        logger.info("tick", i=i)
        time.sleep(float(payload.get("every", 0.1)))
    return int(payload.get("lines", 20))


def _flaky(ctx: Context) -> str:
    if ctx.step.attempt < 2:
        raise RuntimeError("the first try fails on purpose")
    return "ok"


@task(id="traced", retry=retry(max_attempts=1))
def traced(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """A step tried twice, a wait and a child run: each kind of bar the trace draws."""
    step.run("flaky", _flaky, ctx, retry=retry(max_attempts=3, min_delay=0, jitter=0))
    wait.for_(seconds=float(payload.get("wait", 0.5)))
    child = greet.trigger_and_wait(Greeting(name="child"))
    return {"child": child.id}
