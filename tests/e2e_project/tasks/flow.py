"""Tasks for the flow-control end-to-end tests: limited and keyed queues, a task
that reports metadata, and one that runs until it is canceled."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from triggerfish import Context, metadata, queue, task

limited = queue("e2e-limited", concurrency_limit=2)
keyed = queue("e2e-keyed", concurrency_limit=1)


def _mark(payload: dict[str, Any], name: str) -> None:
    folder = Path(payload["marks"])
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("a") as fh:
        fh.write(f"{os.getpid()} {time.time()}\n")


@task(id="flow-limited", queue=limited)
def flow_limited(payload: dict[str, Any], ctx: Context) -> str:
    _mark(payload, f"start-{ctx.run.id}")
    time.sleep(payload.get("seconds", 0.3))
    _mark(payload, f"end-{ctx.run.id}")
    return ctx.run.id


@task(id="flow-limited-too", queue=limited)
def flow_limited_too(payload: dict[str, Any], ctx: Context) -> str:
    _mark(payload, f"start-{ctx.run.id}")
    time.sleep(payload.get("seconds", 0.3))
    _mark(payload, f"end-{ctx.run.id}")
    return ctx.run.id


@task(id="flow-keyed", queue=keyed)
def flow_keyed(payload: dict[str, Any]) -> str:
    time.sleep(payload.get("seconds", 0.05))
    return str(payload.get("key"))


@task(id="flow-meta")
def flow_meta(payload: dict[str, Any]) -> dict[str, Any]:
    metadata.set("progress", 0.5)
    metadata.append("steps", "fetch")
    metadata.append("steps", "render")
    for _ in range(3):
        metadata.increment("tokens", 10)
    metadata.remove("steps", "fetch")
    return metadata.current()


@task(id="flow-forever")
def flow_forever(payload: dict[str, Any], ctx: Context) -> None:
    _mark(payload, f"pid-{ctx.run.id}")
    while True:
        time.sleep(0.05)
