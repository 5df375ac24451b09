"""Tasks the task-process pool tests run directly on an ``ExecutorPool``."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from triggerfish import Context, ErrorDecision, logger, metadata, step, task


@task(id="chatty")
def chatty(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    print("out 1")
    logger.info("log 2", n=2)
    print("err 3", file=sys.stderr)
    sys.stdout.write("partial 4")
    metadata.set("progress", 0.5)
    return {"run": ctx.run.id, "attempt": ctx.attempt.number, "machine": ctx.machine.name}


@task(id="stepper")
def stepper(payload: dict[str, Any]) -> int:
    return int(step.run("double", lambda: payload["n"] * 2))


@task(id="sleeper")
def sleeper(payload: dict[str, Any]) -> str:
    time.sleep(payload["seconds"])
    return "woke"


@task(id="hog")
def hog(payload: dict[str, Any]) -> int:
    block = bytearray(payload["mb"] * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(5)
    return len(block)


@task(id="crasher")
def crasher(payload: dict[str, Any]) -> None:
    os._exit(7)


@task(id="pid")
def pid(payload: dict[str, Any]) -> int:
    return os.getpid()


@task(id="fails")
def fails(payload: dict[str, Any]) -> None:
    raise ValueError("bad input")


def _skip_with_attempt(payload: object, error: BaseException, ctx: Context) -> ErrorDecision:
    return ErrorDecision.skip(output={"skipped": str(error), "attempt": ctx.attempt.number})


@task(id="hooked", catch_error=_skip_with_attempt)
def hooked(payload: dict[str, Any]) -> None:
    raise KeyError("missing")


@task(id="not-a-number")
def not_a_number(payload: dict[str, Any]) -> float:
    return float("nan")
