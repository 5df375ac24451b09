"""Tasks used by the end-to-end tests. Side effects go to files under the
directory in the payload's "marks" field so that tests can count them."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from triggerfish import AbortTaskRunError, Context, ErrorDecision, logger, retry, task


def _mark(payload: dict[str, Any], name: str) -> None:
    folder = Path(payload["marks"])
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("a") as fh:
        fh.write(f"{os.getpid()}\n")


@task(id="hello")
async def hello(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    print("printing to stdout", ctx.run.id)
    print("printing to stderr", file=sys.stderr)
    logger.info("greeting", who=payload.get("who"), attempt=ctx.attempt.number)
    return {
        "message": f"Hello {payload.get('who', 'Stranger')}",
        "attempt": ctx.attempt.number,
        "env": ctx.environment.slug,
        "machine": ctx.machine.name,
        "tags": ctx.run.tags,
    }


@task(id="sync-hello")
def sync_hello(payload: dict[str, Any]) -> str:
    return f"hi {payload.get('who')}"


@task(id="flaky", retry=retry(max_attempts=4, factor=1, min_delay=0.05, max_delay=0.1))
def flaky(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    if ctx.attempt.number < payload["succeed_on"]:
        raise ConnectionError(f"attempt {ctx.attempt.number} failed")
    return {"attempt": ctx.attempt.number}


@task(id="always-fails", retry=retry(max_attempts=2, min_delay=0.05, max_delay=0.05))
def always_fails(payload: dict[str, Any]) -> None:
    raise ValueError("this never works")


@task(id="aborts", retry=retry(max_attempts=5, min_delay=0.05, max_delay=0.05))
def aborts(payload: dict[str, Any]) -> None:
    raise AbortTaskRunError("not worth retrying")


def _skip_value_errors(payload: object, error: BaseException, ctx: object) -> ErrorDecision | None:
    if isinstance(error, KeyError):
        return ErrorDecision.skip(output={"skipped": str(error)})
    if isinstance(error, PermissionError):
        return ErrorDecision.fail()
    return None


@task(
    id="hooked",
    retry=retry(max_attempts=3, min_delay=0.05, max_delay=0.05),
    catch_error=_skip_value_errors,
)
def hooked(payload: dict[str, Any]) -> None:
    if payload["raise"] == "key":
        raise KeyError("missing")
    raise PermissionError("denied")


@task(id="exits", retry=retry(max_attempts=1))
def exits(payload: dict[str, Any]) -> None:
    sys.exit(3)


@task(id="segfaults", retry=retry(max_attempts=1))
def segfaults(payload: dict[str, Any]) -> None:
    os.abort()


@task(id="too-slow", max_duration=1, retry=retry(max_attempts=3))
def too_slow(payload: dict[str, Any]) -> None:
    time.sleep(60)


@task(id="memory-hog", machine="micro", retry=retry(max_attempts=1))
def memory_hog(payload: dict[str, Any]) -> int:
    hog = bytearray(700 * 1024 * 1024)
    return len(hog)


@task(id="not-json", retry=retry(max_attempts=1))
def not_json(payload: dict[str, Any]) -> object:
    return object()


class Signup(BaseModel):
    email: str = Field(pattern=r"^[^@]+@[^@]+$")
    plan: int


@task(id="typed")
def typed(payload: Signup) -> dict[str, Any]:
    return {"email": payload.email, "plan_type": type(payload).__name__}


@task(id="blocks", retry=retry(max_attempts=3, min_delay=0.05, max_delay=0.05))
def blocks(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Marks its start, then waits until the test drops a 'go' file (or a timeout)."""
    _mark(payload, f"started-{ctx.attempt.number}")
    go = Path(payload["marks"]) / "go"
    deadline = time.time() + payload.get("max_wait", 60)
    while not go.exists() and time.time() < deadline:
        time.sleep(0.02)
    _mark(payload, "finished")
    return {"attempt": ctx.attempt.number, "pid": os.getpid()}


@task(id="counts")
def counts(payload: dict[str, Any], ctx: Context) -> int:
    _mark(payload, f"ran-{ctx.run.id}")
    return ctx.attempt.number


@task(id="leaks-secret")
def leaks_secret(payload: dict[str, Any]) -> None:
    print("the key is", payload["secret"])
    logger.info("key in a field", key=payload["secret"])
